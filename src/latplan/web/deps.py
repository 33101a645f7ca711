"""What every router needs: the app's state, the request context, access checks, responses.

Access rules: every page but /login needs a session; a case exists for a user only if the
user is a member of the case's board (others get the same 404 as for a case that does not
exist, and an audit ``denied`` event). Roles: upload = admin/coordinator; plan = all but
viewer; decide = admin/physician/coordinator; export (JSON/FHIR/SEG, report PDF, volume and
mesh downloads) = all but viewer; audit log and users = admin, within the admin's boards.
Every refusal of a role is an audit ``denied`` event; every read of patient data (case page,
report, viewer files) an audit ``view``/``read`` event.
"""

from __future__ import annotations

import contextlib
import html
import json
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.templating import Jinja2Templates
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from latplan.errors import LatplanError
from latplan.store import accounts, audit
from latplan.store import cases as case_store
from latplan.store.blobs import BlobStore
from latplan.store.config import StoreSettings
from latplan.store.models import CaseRecord, Job, User
from latplan.web.plan_view import options_and_strategies, strategy_label
from latplan.web.security import PAGE_CSP, PRE_COOKIE, SESSION_COOKIE, check_csrf, cookie_name, csrf_token
from latplan.web.uploads import UploadLimits

CAN_UPLOAD = {"admin", "coordinator"}
CAN_PLAN = {"admin", "coordinator", "physicist", "physician"}
CAN_DECIDE = {"admin", "physician", "coordinator"}
CAN_EXPORT = {"admin", "coordinator", "physicist", "physician"}

#: a path or query id: 1 … 2³¹−1 (a larger number is a 422, never a database overflow)
IdParam = Annotated[int, PathParam(ge=1, le=case_store.MAX_ID)]


class LoginRequiredError(LatplanError):
    """No valid session: log in."""


class ForbiddenError(LatplanError):
    """Logged in, but the role does not allow this."""


class NotFoundError(LatplanError):
    """No such object (or not visible to this user)."""


class QuotaError(LatplanError):
    """Too many requests of a kind (HTTP 429)."""


@dataclass(frozen=True)
class PlanView:
    """What the case page shows of one finished job: built once, then served from memory.

    A done job's result folder (``results/<job key>``) is written once, in the transaction that
    marks the job done, and never changed, so its parsed plan, the choices per scope, the
    rendered plan section and which report/viewer files exist are the same on every view.
    The plan document is shared between requests: read it, never change it.
    """

    plan: dict[str, Any] | None
    allowed: dict[str, list[str]]
    top: dict[str, list[str]]
    #: the rendered plan section (autoescaped when rendered; the page inserts it with ``|safe``)
    plan_html: str
    has_report: bool
    has_pdf: bool
    has_patient: bool
    has_viewer: bool


class PlanViews:
    """An LRU of :class:`PlanView` per result folder, keyed by folder, job key and plan.json's
    size and mtime (a folder replaced outside latplan is read again)."""

    def __init__(self, max_items: int = 64) -> None:
        self.max_items = max_items
        self._items: OrderedDict[tuple[str, str, int, int], PlanView] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, store: BlobStore, templates: Jinja2Templates, job: Job | None) -> PlanView:
        rd = result_dir(store, job)
        if rd is None or job is None:
            return _empty_view()
        try:
            st = (rd / "plan.json").stat()
            stamp = (st.st_size, st.st_mtime_ns)
        except FileNotFoundError:
            stamp = (-1, -1)
        key = (str(rd), job.job_key, *stamp)
        with self._lock:
            view = self._items.get(key)
            if view is not None:
                self._items.move_to_end(key)
                return view
        view = _build_view(store, templates, job, rd)
        with self._lock:
            self._items[key] = view
            while len(self._items) > self.max_items:
                self._items.popitem(last=False)
        return view


def _render_plan(templates: Jinja2Templates, plan: dict[str, Any] | None) -> str:
    if plan is None:
        return ""
    # autoescaped like every page (Jinja2Templates turns autoescape on)
    return templates.get_template("_plan.html").render(plan=plan, strategy_label=strategy_label)


def _empty_view() -> PlanView:
    allowed, top = options_and_strategies(None)
    return PlanView(None, allowed, top, "", False, False, False, False)


def _build_view(store: BlobStore, templates: Jinja2Templates, job: Job, rd: Path) -> PlanView:
    plan = load_plan(store, job)
    allowed, top = options_and_strategies(plan)
    return PlanView(plan, allowed, top, _render_plan(templates, plan), has_report=report_path(rd) is not None,
                    has_pdf=(rd / "report" / "report.pdf").is_file(),
                    has_patient=(rd / "report" / "patient.html").is_file(),
                    has_viewer=(rd / "viewer" / "index.json").is_file())


@dataclass
class AppState:
    """Built once by ``create_app``; routers reach it through ``request.app.state.latplan``."""

    settings: StoreSettings
    engine: Engine
    factory: sessionmaker[Session]
    store: BlobStore
    templates: Jinja2Templates
    limits: UploadLimits
    login_policy: accounts.LoginPolicy
    #: group commit of the events that are a request's only write (views, reads, denials)
    audit_writer: audit.GroupWriter = field(default_factory=audit.GroupWriter)
    #: the case page's view of each finished job, built once per process
    plan_views: PlanViews = field(default_factory=PlanViews)


def state_of(request: Request) -> AppState:
    st: AppState = request.app.state.latplan
    return st


def is_https(request: Request) -> bool:
    return state_of(request).settings.cookie_secure or request.url.scheme == "https"


def session_cookie(request: Request) -> str:
    return cookie_name(SESSION_COOKIE, is_https(request))


def pre_cookie(request: Request) -> str:
    return cookie_name(PRE_COOKIE, is_https(request))


def client_ip(request: Request) -> str:
    return request.client.host if request.client else "?"


class Ctx:
    """What a request handler needs: the DB session, the user, and the CSRF token of the page."""

    def __init__(self, request: Request, db: Session, user: User, token: str, csrf: str) -> None:
        self.request, self.db, self.user, self.token, self.csrf = request, db, user, token, csrf

    @property
    def ip(self) -> str:
        return client_ip(self.request)

    @property
    def app(self) -> AppState:
        return state_of(self.request)


def get_db(request: Request) -> Iterator[Session]:
    with state_of(request).factory() as s:
        yield s


def wants_json(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return "application/json" in accept and "text/html" not in accept


def ctx_dep(request: Request, db: Session = Depends(get_db)) -> Ctx:
    st = state_of(request)
    token = request.cookies.get(session_cookie(request))
    found = accounts.session_user(db, token, st.settings.session_idle_s)
    if db.dirty:  # an idle session was ended, or last_seen_at refreshed
        db.commit()
    if found is None or token is None:
        raise LoginRequiredError("please log in.")
    user, ws = found
    return Ctx(request, db, user, token, csrf_token(st.settings.secret_key, ws.token_sha256))


async def csrf_dep(request: Request) -> None:
    presented = request.headers.get("x-csrf-token")
    if presented is None:
        ctype = request.headers.get("content-type", "")
        if "form" in ctype:
            form = await request.form(max_files=1, max_fields=50)
            value = form.get("csrf_token")
            presented = value if isinstance(value, str) else None
    token = request.cookies.get(session_cookie(request))
    binding = accounts.token_digest(token) if token else None
    if request.url.path == "/login":
        pre = request.cookies.get(pre_cookie(request))
        binding = ("pre:" + pre) if pre else None
    check_csrf(state_of(request).settings.secret_key, binding, presented)


async def form_fields(request: Request) -> dict[str, str]:
    """The text fields of a urlencoded/multipart form (empty for other bodies)."""
    if "form" not in request.headers.get("content-type", ""):
        return {}
    form = await request.form(max_files=1, max_fields=50)
    return {k: v for k, v in form.items() if isinstance(v, str)}


def page(request: Request, name: str, context: dict[str, Any], status_code: int = 200) -> HTMLResponse:
    resp = state_of(request).templates.TemplateResponse(request, name, context, status_code=status_code)
    resp.headers["Content-Security-Policy"] = PAGE_CSP
    return resp


def scrub(request: Request, message: str) -> str:
    """A message without the server's folders (data folder, temporary folders)."""
    data_dir = str(state_of(request).settings.data_dir)
    return message.replace(data_dir + "/", "").replace(data_dir, "the data folder")


def error_response(request: Request, status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    message = scrub(request, message)
    if request.headers.get("hx-request"):
        return HTMLResponse(f'<div class="error" role="alert">{html.escape(message)}</div>', status_code=status,
                            headers=headers)
    if wants_json(request):
        return JSONResponse({"error": message}, status_code=status, headers=headers)
    resp = page(request, "error.html", {"message": message, "status": status, "user": None}, status)
    for k, v in (headers or {}).items():
        resp.headers[k] = v
    return resp


@contextlib.contextmanager
def tx(db: Session) -> Iterator[None]:
    """Commit what the block did (the request's session may have autobegun already)."""
    try:
        yield
        db.commit()
    except BaseException:
        db.rollback()
        raise


def log_event(ctx: Ctx, action: str, object_type: str | None, object_id: str | int | None,
              detail: dict[str, Any] | None = None) -> None:
    """Audit an event that is the request's only write (a view, a read, a denial): committed, through
    the app's group commit (:class:`latplan.store.audit.GroupWriter`), before the handler goes on."""
    ctx.app.audit_writer.record(ctx.db, action, ctx.user, object_type, object_id, detail=detail, ip=ctx.ip)


def require(ctx: Ctx, roles: set[str], what: str, case_id: int | None = None) -> None:
    """Refuse (403, audited ``denied``) a user whose role may not do ``what``."""
    if ctx.user.role in roles:
        return
    log_event(ctx, "denied", "case" if case_id else "route", case_id or ctx.request.url.path,
              detail={"reason": "role", "role": ctx.user.role, "what": what})
    raise ForbiddenError(f"your role ({ctx.user.role}) may not {what}; ask an administrator.")


def case_for(ctx: Ctx, case_id: int) -> CaseRecord:
    case, exists = case_store.visible_case(ctx.db, ctx.user, case_id)
    if case is None:
        if exists:
            log_event(ctx, "denied", "case", case_id, detail={"reason": "board"})
        raise NotFoundError(f"case {case_id} does not exist or is not shared with your boards.")
    return case


def result_dir(store: BlobStore, job: Job | None) -> Path | None:
    if job is None or job.status != "done" or not job.result_dir:
        return None
    return store.data_dir / job.result_dir


def load_plan(store: BlobStore, job: Job | None) -> dict[str, Any] | None:
    """plan.json of a finished job (the web layer shows the document as the planner wrote it)."""
    rd = result_dir(store, job)
    if rd is None or not (rd / "plan.json").is_file():
        return None
    doc: dict[str, Any] = json.loads((rd / "plan.json").read_text())
    return doc


def job_dict(job: Job | None) -> dict[str, Any] | None:
    if job is None:
        return None
    return {"key": job.job_key, "status": job.status, "progress": job.progress, "message": job.message,
            "attempts": job.attempts, "parameters": job.parameters}


def report_path(rd: Path) -> Path | None:
    for cand in (rd / "report" / "report.html", rd / "report.html"):
        if cand.is_file():
            return cand
    return None


def idempotency_key(request: Request) -> str | None:
    key = request.headers.get("idempotency-key", "").strip()
    return key[:128] or None
