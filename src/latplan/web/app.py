"""The tumor-board web app (FastAPI + Jinja2 + htmx; niivue viewer).

``create_app(settings)`` builds the app: migrations are applied on start, uploads are
parsed in a subprocess, planning runs in a separate worker process (started by the app's
lifespan unless ``settings.start_worker`` is False) and the pages poll its progress.

Access rules: every page but /login needs a session; a case exists for a user only if the
user is a member of the case's board (others get the same 404 as for a case that does not
exist, and an audit ``denied`` event). Roles: upload = admin/coordinator; plan = all but
viewer; decide = admin/physician/coordinator; export = all but viewer; audit log = admin.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, File, Form, Request, UploadFile
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from latplan.board.preferences import CRITERIA
from latplan.errors import InvalidInputError, LatplanError, NotAvailableError
from latplan.store import accounts, audit
from latplan.store import decisions as decision_store
from latplan.store.blobs import BlobStore
from latplan.store.config import StoreSettings
from latplan.store.db import make_engine, migrate, session_factory
from latplan.store.models import ROLES, Board, BoardMember, CaseRecord, Job, Meeting, User
from latplan.web import export as exporter
from latplan.web import jobs
from latplan.web.security import (
    PAGE_CSP,
    PRE_COOKIE,
    REPORT_CSP,
    SESSION_COOKIE,
    BodyLimitMiddleware,
    CsrfError,
    check_csrf,
    csrf_token,
)
from latplan.web.uploads import (
    UploadLimits,
    UploadRejectedError,
    extract_zip,
    parse_in_subprocess,
    save_stream,
)

log = logging.getLogger(__name__)

CAN_UPLOAD = {"admin", "coordinator"}
CAN_PLAN = {"admin", "coordinator", "physicist", "physician"}
CAN_DECIDE = {"admin", "physician", "coordinator"}
CAN_EXPORT = {"admin", "coordinator", "physicist", "physician"}


class LoginRequiredError(LatplanError):
    """No valid session: log in."""


class ForbiddenError(LatplanError):
    """Logged in, but the role does not allow this."""


class NotFoundError(LatplanError):
    """No such object (or not visible to this user)."""


class Ctx:
    """What a request handler needs: the DB session, the user, and the CSRF token of the page."""

    def __init__(self, request: Request, db: Session, user: User, token: str, csrf: str) -> None:
        self.request, self.db, self.user, self.token, self.csrf = request, db, user, token, csrf

    @property
    def ip(self) -> str:
        return self.request.client.host if self.request.client else "?"


def create_app(settings: StoreSettings | None = None) -> FastAPI:
    settings = settings or StoreSettings.from_env()
    engine = make_engine(settings.database_url)
    migrate(engine)
    factory = session_factory(engine)
    store = BlobStore(settings.data_dir)
    for entry in store.tmp.glob("up-*"):  # uploads interrupted by a crash
        shutil.rmtree(entry, ignore_errors=True)
    limits = UploadLimits.from_settings(settings)
    templates = Jinja2Templates(directory=str(resources.files("latplan.web") / "templates"))
    templates.env.globals["deviation_reasons"] = decision_store.DEVIATION_REASONS
    templates.env.globals["sorted_options"] = sorted_options
    templates.env.globals["preference_criteria"] = preference_criteria

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> Any:
        stop = threading.Event()
        supervisor = None
        if settings.start_worker:
            def start() -> subprocess.Popen[bytes]:
                return subprocess.Popen([sys.executable, "-m", "latplan.web.worker"],
                                        env={**os.environ, **settings.to_env()})

            _app.state.worker = start()
            _app.state.worker_restarts = 0

            def supervise() -> None:
                # a worker that dies (crash, OOM kill) is started again; at its start it re-queues
                # the job it was running, so that job completes once
                while not stop.wait(2.0):
                    if _app.state.worker.poll() is not None:
                        log.warning("planning worker exited with %s; starting it again", _app.state.worker.returncode)
                        _app.state.worker = start()
                        _app.state.worker_restarts += 1

            supervisor = threading.Thread(target=supervise, name="latplan-worker-supervisor", daemon=True)
            supervisor.start()
        try:
            yield
        finally:
            stop.set()
            if supervisor is not None:
                supervisor.join(5)
                proc = _app.state.worker
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
            engine.dispose()

    app = FastAPI(title="latplan tumor board", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.settings, app.state.engine, app.state.factory, app.state.store = settings, engine, factory, store
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_upload_bytes + 1_000_000)
    app.mount("/static", StaticFiles(directory=str(resources.files("latplan.web") / "static")), name="static")

    # ------------------------------------------------------------------ plumbing
    def get_db() -> Iterator[Session]:
        with factory() as s:
            yield s

    def wants_json(request: Request) -> bool:
        return "application/json" in request.headers.get("accept", "") and "text/html" not in request.headers.get("accept", "")

    def ctx_dep(request: Request, db: Session = Depends(get_db)) -> Ctx:
        token = request.cookies.get(SESSION_COOKIE)
        found = accounts.session_user(db, token)
        if found is None or token is None:
            raise LoginRequiredError("please log in.")
        user, ws = found
        return Ctx(request, db, user, token, csrf_token(settings.secret_key, ws.token_sha256))

    async def csrf_dep(request: Request) -> None:
        presented = request.headers.get("x-csrf-token")
        if presented is None:
            ctype = request.headers.get("content-type", "")
            if "form" in ctype:
                form = await request.form(max_files=1, max_fields=50)
                value = form.get("csrf_token")
                presented = value if isinstance(value, str) else None
        token = request.cookies.get(SESSION_COOKIE)
        binding = accounts.token_digest(token) if token else None
        if request.url.path == "/login":
            pre = request.cookies.get(PRE_COOKIE)
            binding = ("pre:" + pre) if pre else None
        check_csrf(settings.secret_key, binding, presented)

    async def form_fields(request: Request) -> dict[str, str]:
        """The text fields of a urlencoded/multipart form (empty for other bodies)."""
        if "form" not in request.headers.get("content-type", ""):
            return {}
        form = await request.form(max_files=1, max_fields=50)
        return {k: v for k, v in form.items() if isinstance(v, str)}

    def page(request: Request, name: str, context: dict[str, Any], status_code: int = 200) -> HTMLResponse:
        resp = templates.TemplateResponse(request, name, context, status_code=status_code)
        resp.headers["Content-Security-Policy"] = PAGE_CSP
        resp.headers["X-Content-Type-Options"] = "nosniff"
        resp.headers["Referrer-Policy"] = "same-origin"
        resp.headers["Cache-Control"] = "no-store"
        return resp

    def error_response(request: Request, status: int, message: str) -> Response:
        if wants_json(request) or request.headers.get("hx-request"):
            if request.headers.get("hx-request"):
                return HTMLResponse(f'<div class="error" role="alert">{_esc(message)}</div>', status_code=status)
            return JSONResponse({"error": message}, status_code=status)
        return page(request, "error.html", {"message": message, "status": status, "user": None}, status)

    @app.exception_handler(LoginRequiredError)
    async def _login_required(request: Request, exc: LoginRequiredError) -> Response:
        if wants_json(request) or request.method != "GET":
            return JSONResponse({"error": "not logged in (or the session ended); log in again."}, status_code=401)
        return RedirectResponse("/login", status_code=303)

    @app.exception_handler(CsrfError)
    async def _csrf(request: Request, exc: CsrfError) -> Response:
        return error_response(request, 403, str(exc))

    @app.exception_handler(ForbiddenError)
    async def _forbidden(request: Request, exc: ForbiddenError) -> Response:
        return error_response(request, 403, str(exc))

    @app.exception_handler(NotFoundError)
    async def _not_found(request: Request, exc: NotFoundError) -> Response:
        return error_response(request, 404, str(exc))

    @app.exception_handler(InvalidInputError)
    async def _invalid(request: Request, exc: InvalidInputError) -> Response:
        return error_response(request, 422, str(exc))

    @app.exception_handler(NotAvailableError)
    async def _not_available(request: Request, exc: NotAvailableError) -> Response:
        return error_response(request, 501, str(exc))

    def require(ctx: Ctx, roles: set[str], what: str) -> None:
        if ctx.user.role not in roles:
            raise ForbiddenError(f"your role ({ctx.user.role}) may not {what}; ask an administrator.")

    def case_for(ctx: Ctx, case_id: int) -> CaseRecord:
        case = ctx.db.get(CaseRecord, case_id)
        member = case is not None and ctx.db.get(BoardMember, (case.board_id, ctx.user.id)) is not None
        if case is None or not member:
            if case is not None:
                with tx(ctx.db):
                    audit.record(ctx.db, "denied", ctx.user, "case", case_id, ip=ctx.ip)
            raise NotFoundError(f"case {case_id} does not exist or is not shared with your boards.")
        return case

    def job_of(db: Session, case: CaseRecord) -> Job | None:
        return db.scalar(select(Job).where(Job.job_key == case.job_key)) if case.job_key else None

    def result_dir(job: Job | None) -> Path | None:
        if job is None or job.status != "done" or not job.result_dir:
            return None
        return store.data_dir / job.result_dir

    def load_plan(job: Job | None) -> dict[str, Any] | None:
        rd = result_dir(job)
        if rd is None or not (rd / "plan.json").is_file():
            return None
        return json.loads((rd / "plan.json").read_text())

    # ------------------------------------------------------------------ login / logout
    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/", response_model=None)
    def root() -> RedirectResponse:
        return RedirectResponse("/cases", status_code=303)

    @app.get("/login", response_class=HTMLResponse)
    def login_form(request: Request) -> HTMLResponse:
        pre = request.cookies.get(PRE_COOKIE) or os.urandom(16).hex()
        resp = page(request, "login.html", {"csrf": csrf_token(settings.secret_key, "pre:" + pre), "user": None})
        resp.set_cookie(PRE_COOKIE, pre, httponly=True, samesite="strict", secure=settings.cookie_secure)
        return resp

    @app.post("/login", dependencies=[Depends(csrf_dep)], response_model=None)
    def login(request: Request, username: str = Form(...), password: str = Form(...),
              db: Session = Depends(get_db)) -> Response:
        ip = request.client.host if request.client else "?"
        try:
            with tx(db):
                user = accounts.authenticate(db, username, password, ip, settings.login_max_failures,
                                             settings.login_window_s)
                previous = request.cookies.get(SESSION_COOKIE)
                if previous:  # a new login ends the session this browser had
                    accounts.revoke_session(db, previous)
                token = accounts.open_session(db, user, settings.session_lifetime_s)
                audit.record(db, "login", user, ip=ip)
        except accounts.RateLimitedError as exc:
            with tx(db):
                audit.record(db, "login_failed", username=username[:80], ip=ip, detail={"reason": "rate limited"})
            return error_response(request, 429, str(exc))
        except accounts.AuthError as exc:
            with tx(db):
                accounts_fail = accounts.LoginAttempt(username=username[:80], ip=ip[:64], success=False)
                db.add(accounts_fail)
                audit.record(db, "login_failed", username=username[:80], ip=ip)
            pre = request.cookies.get(PRE_COOKIE) or ""
            return page(request, "login.html", {"csrf": csrf_token(settings.secret_key, "pre:" + pre),
                                                "error": str(exc), "user": None}, 401)
        resp: Response = RedirectResponse("/cases", status_code=303)
        if wants_json(request):
            resp = JSONResponse({"user": user.username, "role": user.role})
        resp.set_cookie(SESSION_COOKIE, token, httponly=True, samesite="strict", secure=settings.cookie_secure,
                        max_age=settings.session_lifetime_s)
        resp.delete_cookie(PRE_COOKIE)
        return resp

    @app.post("/logout", dependencies=[Depends(csrf_dep)], response_model=None)
    def logout(ctx: Ctx = Depends(ctx_dep)) -> Response:
        with tx(ctx.db):
            accounts.revoke_session(ctx.db, ctx.token)
            audit.record(ctx.db, "logout", ctx.user, ip=ctx.ip)
        resp = RedirectResponse("/login", status_code=303)
        resp.delete_cookie(SESSION_COOKIE)
        return resp

    @app.get("/api/csrf")
    def api_csrf(ctx: Ctx = Depends(ctx_dep)) -> dict[str, str]:
        """The CSRF token of this session (for API clients that post JSON/forms)."""
        return {"csrf_token": ctx.csrf}

    # ------------------------------------------------------------------ case list / upload
    def boards_of(ctx: Ctx) -> list[Board]:
        return list(ctx.db.scalars(select(Board).join(BoardMember, BoardMember.board_id == Board.id)
                                   .where(BoardMember.user_id == ctx.user.id).order_by(Board.name)))

    @app.get("/cases", response_model=None)
    def case_list(request: Request, ctx: Ctx = Depends(ctx_dep), meeting: int | None = None,
                  limit: int = 200, offset: int = 0) -> Response:
        boards = boards_of(ctx)
        board_ids = [b.id for b in boards]
        q = (select(CaseRecord, Meeting).outerjoin(Meeting, Meeting.id == CaseRecord.meeting_id)
             .where(CaseRecord.board_id.in_(board_ids)))
        if meeting is not None:
            q = q.where(CaseRecord.meeting_id == meeting)
        q = q.order_by(Meeting.date.desc().nulls_last(), CaseRecord.meeting_id, CaseRecord.order_index,
                       CaseRecord.id).limit(max(1, min(limit, 1000))).offset(max(0, offset))
        rows = ctx.db.execute(q).all()
        total = ctx.db.scalar(select(func.count()).select_from(CaseRecord).where(CaseRecord.board_id.in_(board_ids)))
        if wants_json(request):
            return JSONResponse({"total": total, "cases": [
                {"id": c.id, "patient_ref": c.patient_ref, "title": c.title, "status": c.status,
                 "board_id": c.board_id, "order": c.order_index,
                 "meeting": {"id": m.id, "date": m.date.isoformat(), "title": m.title} if m else None}
                for c, m in rows]})
        groups: dict[Any, list[CaseRecord]] = {}
        for c, m in rows:
            groups.setdefault(m, []).append(c)
        return page(request, "cases.html", {"user": ctx.user, "csrf": ctx.csrf, "groups": groups, "boards": boards,
                                            "total": total, "can_upload": ctx.user.role in CAN_UPLOAD,
                                            "board_names": {b.id: b.name for b in boards},
                                            "today": dt.date.today().isoformat()})

    @app.post("/cases", dependencies=[Depends(csrf_dep)], response_model=None)
    def upload_case(request: Request, ctx: Ctx = Depends(ctx_dep), upload: UploadFile = File(...),
                    board_id: int = Form(...), meeting_date: str = Form(""), order: int = Form(0),
                    title: str = Form("")) -> Response:
        require(ctx, CAN_UPLOAD, "upload cases")
        if ctx.db.get(BoardMember, (board_id, ctx.user.id)) is None:
            raise NotFoundError(f"board {board_id} does not exist or you are not a member.")
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > settings.max_upload_bytes + 1_000_000:
            raise UploadRejectedError(f"the upload is larger than the limit of {settings.max_upload_bytes / 2**20:.0f} MiB.")
        meeting_day: dt.date | None = None
        if meeting_date.strip():
            try:
                meeting_day = dt.date.fromisoformat(meeting_date.strip())
            except ValueError as exc:
                raise InvalidInputError(f"meeting date {meeting_date!r} is not a date (YYYY-MM-DD).") from exc
        tmp = store.new_tmp_dir("up")
        try:
            archive = tmp / "upload.bin"
            save_stream(upload.file, archive, settings.max_upload_bytes)
            folder = tmp / "case"
            folder.mkdir()
            extract_zip(archive, folder, limits)
            archive.unlink()
            parsed = parse_in_subprocess(folder, settings.parse_memory_bytes, settings.parse_timeout_s)
            digest = store.put_folder(folder)
        except UploadRejectedError as exc:
            with tx(ctx.db):
                audit.record(ctx.db, "upload_rejected", ctx.user, "upload", upload.filename,
                             detail={"reason": str(exc)[:500]}, ip=ctx.ip)
            raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        with tx(ctx.db):
            meeting = None
            if meeting_day is not None:
                meeting = ctx.db.scalar(select(Meeting).where(Meeting.board_id == board_id, Meeting.date == meeting_day))
                if meeting is None:
                    meeting = Meeting(board_id=board_id, date=meeting_day, title=None)
                    ctx.db.add(meeting)
                    ctx.db.flush()
            case = CaseRecord(board_id=board_id, meeting_id=meeting.id if meeting else None, order_index=order,
                              status="uploaded", patient_ref=parsed.patient_id, title=title.strip() or None,
                              content_sha256=digest, summary=parsed.to_dict(), uploaded_by=ctx.user.id)
            ctx.db.add(case)
            ctx.db.flush()
            audit.record(ctx.db, "upload", ctx.user, "case", case.id,
                         detail={"content_sha256": digest, "filename": upload.filename}, ip=ctx.ip)
        if wants_json(request):
            return JSONResponse({"id": case.id, "content_sha256": digest, "summary": parsed.to_dict()}, status_code=201)
        return RedirectResponse(f"/cases/{case.id}", status_code=303)

    # ------------------------------------------------------------------ case page
    def options_and_strategies(plan: dict[str, Any] | None) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
        """Allowed choices and top-ranked ones per scope (lesion ids and 'patient')."""
        allowed: dict[str, list[str]] = {}
        top: dict[str, list[str]] = {}
        for le in (plan or {}).get("lesions", []):
            opts = le.get("options") or []
            allowed[str(le["id"])] = [str(o["modality"]) for o in opts]
            top[str(le["id"])] = [str(o["modality"]) for o in opts if o.get("rank") == 1]
        strategies = (plan or {}).get("strategies", [])
        allowed["patient"] = [strategy_label(s) for s in strategies]
        top["patient"] = [strategy_label(s) for s in strategies if s.get("rank") == 1]
        return allowed, top

    @app.get("/cases/{case_id}", response_model=None)
    def case_page(request: Request, case_id: int, ctx: Ctx = Depends(ctx_dep)) -> Response:
        case = case_for(ctx, case_id)
        job = job_of(ctx.db, case)
        plan = load_plan(job)
        latest = decision_store.latest(ctx.db, case.id)
        hist = decision_store.history(ctx.db, case.id)
        users = {u.id: u.username for u in ctx.db.scalars(select(User).where(User.id.in_({d.recorded_by for d in hist})))}
        with tx(ctx.db):
            audit.record(ctx.db, "view", ctx.user, "case", case.id, ip=ctx.ip)
        rd = result_dir(job)
        allowed, top = options_and_strategies(plan)
        if wants_json(request):
            return JSONResponse({"id": case.id, "status": case.status, "patient_ref": case.patient_ref,
                                 "job": job_dict(job), "plan": plan,
                                 "decisions": [exporter.decision_dict(d, users.get(d.recorded_by)) for d in hist]})
        return page(request, "case.html", {
            "user": ctx.user, "csrf": ctx.csrf, "case": case, "job": job, "plan": plan,
            "has_report": bool(rd and report_path(rd)),
            "has_pdf": bool(rd and (rd / "report" / "report.pdf").is_file()),
            "has_patient": bool(rd and (rd / "report" / "patient.html").is_file()), "has_viewer": bool(rd and (rd / "viewer" / "index.json").is_file()),
            "latest": latest, "history": hist, "usernames": users, "allowed": allowed, "top": top,
            "can_plan": ctx.user.role in CAN_PLAN, "can_decide": ctx.user.role in CAN_DECIDE,
            "can_export": ctx.user.role in CAN_EXPORT, "strategy_label": strategy_label,
        })

    def job_dict(job: Job | None) -> dict[str, Any] | None:
        if job is None:
            return None
        return {"key": job.job_key, "status": job.status, "progress": job.progress, "message": job.message,
                "attempts": job.attempts, "parameters": job.parameters}

    @app.post("/cases/{case_id}/plan", dependencies=[Depends(csrf_dep)], response_model=None)
    def plan_case_route(request: Request, case_id: int, ctx: Ctx = Depends(ctx_dep),
                        form: dict[str, str] = Depends(form_fields)) -> Response:
        require(ctx, CAN_PLAN, "start planning")
        case = case_for(ctx, case_id)
        parameters = planning_parameters(form)
        with tx(ctx.db):
            job = jobs.enqueue(ctx.db, case, parameters, settings.planner)
            audit.record(ctx.db, "plan", ctx.user, "case", case.id, detail={"job_key": job.job_key}, ip=ctx.ip)
        if request.headers.get("hx-request"):
            return page(request, "_job.html", {"job": job, "case": case, "polled": True})
        if wants_json(request):
            return JSONResponse(job_dict(job), status_code=202)
        return RedirectResponse(f"/cases/{case.id}", status_code=303)

    @app.get("/cases/{case_id}/job", response_model=None)
    def job_status(request: Request, case_id: int, ctx: Ctx = Depends(ctx_dep)) -> Response:
        case = case_for(ctx, case_id)
        job = job_of(ctx.db, case)
        if wants_json(request):
            return JSONResponse(job_dict(job) or {"status": "none"})
        resp = page(request, "_job.html", {"job": job, "case": case, "polled": True})
        if job is not None and job.status in ("done", "failed") and request.headers.get("hx-request") \
                and request.query_params.get("poll") == "1":
            resp.headers["HX-Refresh"] = "true"
        return resp

    def report_path(rd: Path) -> Path | None:
        for cand in (rd / "report" / "report.html", rd / "report.html"):
            if cand.is_file():
                return cand
        return None

    @app.get("/cases/{case_id}/report", response_model=None)
    def report(case_id: int, ctx: Ctx = Depends(ctx_dep)) -> Response:
        case = case_for(ctx, case_id)
        rd = result_dir(job_of(ctx.db, case))
        path = report_path(rd) if rd else None
        if path is None:
            raise NotFoundError("this case has no report yet; run planning first.")
        return FileResponse(path, media_type="text/html", headers={
            "Content-Security-Policy": REPORT_CSP, "X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"})

    @app.get("/cases/{case_id}/patient", response_model=None)
    def patient_grid(case_id: int, ctx: Ctx = Depends(ctx_dep)) -> Response:
        """[E]'s plain-language option grid for the patient (patient.html)."""
        case = case_for(ctx, case_id)
        rd = result_dir(job_of(ctx.db, case))
        path = rd / "report" / "patient.html" if rd else None
        if path is None or not path.is_file():
            raise NotFoundError("this case has no patient option grid yet; run planning first.")
        return FileResponse(path, media_type="text/html", headers={
            "Content-Security-Policy": REPORT_CSP, "X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"})

    @app.get("/cases/{case_id}/report.pdf", response_model=None)
    def report_pdf(case_id: int, ctx: Ctx = Depends(ctx_dep)) -> Response:
        case = case_for(ctx, case_id)
        rd = result_dir(job_of(ctx.db, case))
        path = rd / "report" / "report.pdf" if rd else None
        if path is None or not path.is_file():
            raise NotFoundError("this case has no PDF report (planning not finished, or the PDF was not written).")
        with tx(ctx.db):
            audit.record(ctx.db, "export", ctx.user, "case", case.id, detail={"format": "report-pdf"}, ip=ctx.ip)
        return FileResponse(path, media_type="application/pdf", filename=f"case-{case.id}-report.pdf",
                            headers={"Cache-Control": "no-store"})

    @app.get("/cases/{case_id}/viewer/{name}", response_model=None)
    def viewer_file(case_id: int, name: str, ctx: Ctx = Depends(ctx_dep)) -> Response:
        case = case_for(ctx, case_id)
        rd = result_dir(job_of(ctx.db, case))
        if rd is None or "/" in name or name.startswith(".") or not (name.endswith((".nii.gz", ".gii")) or name == "index.json"):
            raise NotFoundError("no such viewer file.")
        path = rd / "viewer" / name
        if not path.is_file():
            raise NotFoundError("no such viewer file.")
        media = "application/json" if name == "index.json" else "application/octet-stream"
        return FileResponse(path, media_type=media, headers={"Cache-Control": "private, no-cache"})  # revalidated: auth runs each time

    # ------------------------------------------------------------------ decisions
    @app.post("/cases/{case_id}/decisions", dependencies=[Depends(csrf_dep)], response_model=None)
    def decide(request: Request, case_id: int, ctx: Ctx = Depends(ctx_dep), scope: str = Form(...),
               chosen: str = Form(...), rationale: str = Form(""), attendees: str = Form(""),
               patient_preference: str = Form(""), deviation_code: str = Form(""),
               deviation_text: str = Form("")) -> Response:
        require(ctx, CAN_DECIDE, "record decisions")
        case = case_for(ctx, case_id)
        job = job_of(ctx.db, case)
        plan = load_plan(job)
        if plan is None:
            raise InvalidInputError("this case has no finished planning yet; plan it before recording a decision.")
        allowed, top = options_and_strategies(plan)
        if scope not in allowed:
            raise InvalidInputError(f"{scope!r} is neither a lesion of this case nor 'patient'.")
        d = decision_store.DecisionInput(
            scope=scope, chosen_kind="strategy" if scope == "patient" else "option", chosen=chosen,
            rationale=rationale, attendees=decision_store.parse_attendees(attendees),
            patient_preference=patient_preference, deviation_code=deviation_code or None,
            deviation_text=deviation_text or None)
        deviates = decision_store.validate(d, allowed[scope], top[scope])
        user, ip = ctx.user, ctx.ip
        ctx.db.close()

        def _audit(s: Session, row: Any) -> None:
            audit.record(s, "decide", user, "case", case_id,
                         detail={"decision_id": row.id, "scope": row.scope, "version": row.version}, ip=ip)
            s.execute(CaseRecord.__table__.update().where(CaseRecord.id == case_id).values(status="decided"))

        row = decision_store.record_decision(factory, case_id, d, deviates, top[scope], user.id,
                                             job.job_key if job else None, on_commit=_audit)
        if wants_json(request):
            return JSONResponse(exporter.decision_dict(row, user.username), status_code=201)
        return RedirectResponse(f"/cases/{case_id}", status_code=303)

    # ------------------------------------------------------------------ exports
    def export_payload(ctx: Ctx, case: CaseRecord) -> tuple[dict[str, Any] | None, list[dict[str, Any]], Job | None]:
        job = job_of(ctx.db, case)
        hist = decision_store.history(ctx.db, case.id)
        users = {u.id: u.username for u in ctx.db.scalars(select(User).where(User.id.in_({d.recorded_by for d in hist})))}
        return load_plan(job), [exporter.decision_dict(d, users.get(d.recorded_by)) for d in hist], job

    @app.get("/cases/{case_id}/export.json", response_model=None)
    def export_json(case_id: int, ctx: Ctx = Depends(ctx_dep)) -> Response:
        require(ctx, CAN_EXPORT, "export")
        case = case_for(ctx, case_id)
        plan, decs, job = export_payload(ctx, case)
        with tx(ctx.db):
            audit.record(ctx.db, "export", ctx.user, "case", case.id, detail={"format": "json"}, ip=ctx.ip)
        body = exporter.export_json(case, plan, decs, job_dict(job), ctx.user.username)
        return JSONResponse(body, headers={"Content-Disposition": f'attachment; filename="case-{case.id}.json"'})

    @app.get("/cases/{case_id}/export.fhir.json", response_model=None)
    def export_fhir(case_id: int, ctx: Ctx = Depends(ctx_dep)) -> Response:
        require(ctx, CAN_EXPORT, "export")
        case = case_for(ctx, case_id)
        plan, decs, _job = export_payload(ctx, case)
        latest_ids = {d.id for d in decision_store.latest(ctx.db, case.id).values()}
        with tx(ctx.db):
            audit.record(ctx.db, "export", ctx.user, "case", case.id, detail={"format": "fhir"}, ip=ctx.ip)
        body = exporter.fhir_bundle(case, plan, [d for d in decs if d["id"] in latest_ids])
        return JSONResponse(body, media_type=exporter.FHIR_MEDIA_TYPE,
                            headers={"Content-Disposition": f'attachment; filename="case-{case.id}-fhir.json"'})

    @app.get("/cases/{case_id}/export.seg.zip", response_model=None)
    def export_seg(case_id: int, ctx: Ctx = Depends(ctx_dep)) -> Response:
        require(ctx, CAN_EXPORT, "export")
        case = case_for(ctx, case_id)
        rd = result_dir(job_of(ctx.db, case))
        extra: dict[str, Any] = {}
        if rd is not None and (rd / "viewer" / "index.json").is_file():
            import nibabel as nib
            import numpy as np

            for layer in json.loads((rd / "viewer" / "index.json").read_text())["layers"]:
                if layer["kind"] == "zone":
                    arr = np.asarray(nib.load(str(rd / "viewer" / layer["url"])).dataobj)
                    extra[f"zone {layer['lesion_id']} {layer['modality']}"] = np.transpose(arr, (2, 1, 0)) > 0
        with tempfile.TemporaryDirectory(dir=store.tmp) as work:
            data = exporter.seg_zip(store.folder_path(case.content_sha256), Path(work), extra)
        with tx(ctx.db):
            audit.record(ctx.db, "export", ctx.user, "case", case.id, detail={"format": "dicom-seg"}, ip=ctx.ip)
        return Response(data, media_type="application/zip",
                        headers={"Content-Disposition": f'attachment; filename="case-{case.id}-seg.zip"'})

    # ------------------------------------------------------------------ admin
    @app.get("/admin/audit", response_model=None)
    def audit_log(request: Request, ctx: Ctx = Depends(ctx_dep), action: str | None = None) -> Response:
        require(ctx, {"admin"}, "read the audit log")
        events = audit.recent(ctx.db, 500, action)
        if wants_json(request):
            return JSONResponse({"events": [
                {"id": e.id, "at": e.at.isoformat(), "username": e.username, "action": e.action,
                 "object_type": e.object_type, "object_id": e.object_id, "detail": e.detail, "ip": e.ip}
                for e in events]})
        return page(request, "audit.html", {"user": ctx.user, "csrf": ctx.csrf, "events": events})

    @app.get("/admin/users", response_model=None)
    def admin_users(request: Request, ctx: Ctx = Depends(ctx_dep)) -> Response:
        require(ctx, {"admin"}, "manage users")
        users = list(ctx.db.scalars(select(User).order_by(User.username)))
        boards = list(ctx.db.scalars(select(Board).order_by(Board.name)))
        members: dict[int, list[str]] = {}
        names = {b.id: b.name for b in boards}
        for m in ctx.db.scalars(select(BoardMember)):
            members.setdefault(m.user_id, []).append(names.get(m.board_id, str(m.board_id)))
        if wants_json(request):
            return JSONResponse({"users": [{"username": u.username, "role": u.role, "active": u.active,
                                            "boards": sorted(members.get(u.id, []))} for u in users]})
        return page(request, "users.html", {"user": ctx.user, "csrf": ctx.csrf, "users": users, "members": members,
                                            "roles": ROLES, "boards": boards})

    @app.post("/admin/users", dependencies=[Depends(csrf_dep)], response_model=None)
    def admin_add_user(request: Request, ctx: Ctx = Depends(ctx_dep), username: str = Form(...),
                       password: str = Form(...), role: str = Form(...), full_name: str = Form(""),
                       specialty: str = Form(""), boards: str = Form("")) -> Response:
        """Create a user (admin only); ``boards`` is a comma-separated list, created when absent."""
        require(ctx, {"admin"}, "manage users")
        board_names = [b.strip() for b in boards.split(",") if b.strip()]
        with tx(ctx.db):
            new = accounts.create_user(ctx.db, username, password, role, full_name.strip() or None,
                                       specialty.strip() or None, board_names)
            audit.record(ctx.db, "user_add", ctx.user, "user", new.username, ip=ctx.ip,
                         detail={"role": role, "boards": board_names})
        if wants_json(request):
            return JSONResponse({"username": new.username, "role": new.role, "boards": board_names}, status_code=201)
        return RedirectResponse("/admin/users", status_code=303)

    @app.post("/admin/users/{username}/deactivate", dependencies=[Depends(csrf_dep)], response_model=None)
    def admin_deactivate(request: Request, username: str, ctx: Ctx = Depends(ctx_dep)) -> Response:
        """Disable an account and revoke its sessions at once (accounts are never deleted: audit)."""
        require(ctx, {"admin"}, "manage users")
        target = ctx.db.scalar(select(User).where(User.username == username))
        if target is None:
            raise NotFoundError(f"no user {username!r}.")
        if target.id == ctx.user.id:
            raise InvalidInputError("you cannot deactivate your own account; ask another administrator.")
        with tx(ctx.db):
            target.active = False
            n = accounts.revoke_all_sessions(ctx.db, target)
            audit.record(ctx.db, "user_deactivate", ctx.user, "user", username, ip=ctx.ip,
                         detail={"sessions_revoked": n})
        if wants_json(request):
            return JSONResponse({"username": username, "active": False, "sessions_revoked": n})
        return RedirectResponse("/admin/users", status_code=303)

    return app


@contextlib.contextmanager
def tx(db: Session) -> Iterator[None]:
    """Commit what the block did (the request's session may have autobegun already)."""
    try:
        yield
        db.commit()
    except BaseException:
        db.rollback()
        raise


def preference_criteria() -> tuple[str, ...]:
    """The board's preference criteria (``latplan.board.preferences.CRITERIA``)."""
    return tuple(CRITERIA)


def planning_parameters(form: Any) -> dict[str, Any]:
    """Job parameters from the plan form: ``pref_<criterion>`` weights 0–5 (blank = from case.yaml);
    ``quick=1`` → ``simulate: False`` (a rules-only preview without the physics simulations)."""
    prefs: dict[str, float] = {}
    for c in preference_criteria():
        raw = str(form.get(f"pref_{c}", "") or "").strip()
        if not raw:
            continue
        try:
            value = float(raw)
        except ValueError as exc:
            raise InvalidInputError(f"the weight of {c.replace('_', ' ')} ({raw!r}) is not a number; use 0 to 5.") from exc
        if not 0.0 <= value <= 5.0:
            raise InvalidInputError(f"the weight of {c.replace('_', ' ')} is {value:g}; use 0 (unimportant) to 5 (most important).")
        prefs[c] = value
    params: dict[str, Any] = {"preferences": prefs} if prefs else {}
    if str(form.get("quick", "")) == "1":
        params["simulate"] = False  # rules, ranking and report only: seconds instead of minutes
    return params


def sorted_options(lesion: dict[str, Any]) -> list[dict[str, Any]]:
    """Ranked options first (1, 2, …), unranked (contraindicated) after, in plan order."""
    opts = list(lesion.get("options") or [])
    return sorted(opts, key=lambda o: (o.get("rank") is None, o.get("rank") or 0))


def strategy_label(s: dict[str, Any]) -> str:
    steps = sorted(s.get("steps") or [], key=lambda st: st.get("order", 0))
    body = " → ".join(f"{st.get('modality')}({','.join(map(str, st.get('lesion_ids') or []))})" for st in steps)
    return f"#{s.get('rank')} {body}"


def _esc(text: str) -> str:
    import html

    return html.escape(text)
