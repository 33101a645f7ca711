"""The tumor-board web app (FastAPI + Jinja2 + htmx; niivue viewer).

``create_app(settings)`` builds the app: migrations are applied on start, uploads are
parsed in a subprocess, planning runs in a separate worker process (started by the app's
lifespan unless ``settings.start_worker`` is False) and the pages poll its progress.

The routes live in :mod:`latplan.web.routes` (auth, cases, jobs, decisions, exports, admin);
what they share (context, access checks, responses) in :mod:`latplan.web.deps`; their SQL in
:mod:`latplan.store`. Access rules: see :mod:`latplan.web.deps`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from importlib import resources

import anyio
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException as StarletteHTTPException

from latplan.errors import InvalidInputError, LatplanError, NotAvailableError
from latplan.store import accounts
from latplan.store import decisions as decision_store
from latplan.store.blobs import BlobStore
from latplan.store.config import StoreSettings
from latplan.store.db import make_engine, migrate, session_factory
from latplan.web.deps import (
    CAN_UPLOAD,
    AppState,
    ForbiddenError,
    LoginRequiredError,
    NotFoundError,
    QuotaError,
    client_ip,
    error_response,
    state_of,
    wants_json,
)
from latplan.web.plan_view import preference_criteria, sorted_options
from latplan.web.routes import admin, auth, cases, decisions, exports
from latplan.web.routes import jobs as job_routes
from latplan.web.security import (
    SESSION_COOKIE,
    BodyLimitMiddleware,
    CsrfError,
    SecurityHeadersMiddleware,
    cookie_name,
)
from latplan.web.uploads import UploadLimits

log = logging.getLogger(__name__)

__all__ = ["create_app"]


class WorkerSupervisor:
    """Starts the planning worker process, restarts it when it dies, stops it with the app.

    The worker gets this process's pid (``LATPLAN_WORKER_PARENT_PID``) and exits by itself when
    this process disappears (``kill -9`` of the server), see :func:`latplan.web.jobs.watch_parent`.
    """

    def __init__(self, settings: StoreSettings) -> None:
        self.settings = settings
        self.restarts = 0
        self._stop = threading.Event()
        self.proc = self._start()
        self._thread = threading.Thread(target=self._supervise, name="latplan-worker-supervisor", daemon=True)
        self._thread.start()

    def _start(self) -> subprocess.Popen[bytes]:
        env = {**os.environ, **self.settings.to_env(), "LATPLAN_WORKER_PARENT_PID": str(os.getpid())}
        return subprocess.Popen([sys.executable, "-m", "latplan.web.worker"], env=env)

    def _supervise(self) -> None:
        # a worker that dies (crash, OOM kill) is started again; the job it was running is
        # re-queued (its pid is gone) and completes once
        while not self._stop.wait(2.0):
            if self.proc.poll() is not None:
                log.warning("planning worker exited with %s; starting it again", self.proc.returncode)
                self.proc = self._start()
                self.restarts += 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def _upload_allowed(st: AppState) -> Callable[[dict], Awaitable[bool]]:
    """The body-limit middleware's test: a POST /cases with the session of a user who may upload."""

    def check(scope: dict) -> bool:
        if scope.get("method") != "POST" or scope.get("path") != "/cases":
            return False
        https = st.settings.cookie_secure or scope.get("scheme") == "https"
        name = cookie_name(SESSION_COOKIE, https).encode()
        raw = dict(scope.get("headers") or []).get(b"cookie", b"")
        token = None
        for part in raw.split(b";"):
            k, _, v = part.strip().partition(b"=")
            if k == name:
                token = v.decode("latin-1")
        if not token:
            return False
        with st.factory() as s:
            found = accounts.session_user(s, token, st.settings.session_idle_s)
            return found is not None and found[0].role in CAN_UPLOAD

    async def allow(scope: dict) -> bool:
        return await anyio.to_thread.run_sync(check, scope)

    return allow


def _status_handler(status: int, headers: dict[str, str] | None = None,
                    ) -> Callable[[Request, Exception], Awaitable[Response]]:
    """An exception handler answering ``status`` with the error's message (HTML page or JSON)."""
    async def handle(request: Request, exc: Exception) -> Response:
        return error_response(request, status, str(exc), headers=headers)
    return handle


def _exception_handlers(app: FastAPI) -> None:
    @app.exception_handler(LoginRequiredError)
    async def _login_required(request: Request, exc: LoginRequiredError) -> Response:
        if wants_json(request) or request.method != "GET":
            return JSONResponse({"error": "not logged in (or the session ended); log in again."}, status_code=401)
        return RedirectResponse("/login", status_code=303)

    @app.exception_handler(CsrfError)
    async def _csrf(request: Request, exc: CsrfError) -> Response:
        st = state_of(request)

        def _log() -> None:
            with st.factory() as s:
                st.audit_writer.record(s, "csrf_failed", object_type="route", object_id=request.url.path[:120],
                                       ip=client_ip(request), detail={"method": request.method})

        await anyio.to_thread.run_sync(_log)
        return error_response(request, 403, str(exc))

    # one handler per named error: its HTTP status (Starlette picks the most specific class by MRO)
    for exc_type, status, headers in ((ForbiddenError, 403, None), (NotFoundError, 404, None),
                                      (QuotaError, 429, {"Retry-After": "30"}), (InvalidInputError, 422, None),
                                      (NotAvailableError, 501, None), (LatplanError, 422, None)):
        app.add_exception_handler(exc_type, _status_handler(status, headers))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        parts = []
        for e in exc.errors()[:3]:
            where = ".".join(str(x) for x in e.get("loc", ())[1:]) or "request"
            parts.append(f"{where}: {e.get('msg', 'invalid')}")
        return error_response(request, 422, "the request is not valid (" + "; ".join(parts) + ").")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        return error_response(request, exc.status_code, str(exc.detail))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return error_response(request, 500, "the server could not answer this request; the error was logged.")


def create_app(settings: StoreSettings | None = None) -> FastAPI:
    settings = settings or StoreSettings.from_env()
    engine = make_engine(settings.database_url)
    migrate(engine)
    factory = session_factory(engine)
    store = BlobStore(settings.data_dir)
    for entry in store.tmp.glob("up-*"):  # uploads interrupted by a crash
        shutil.rmtree(entry, ignore_errors=True)
    templates = Jinja2Templates(directory=str(resources.files("latplan.web") / "templates"))
    templates.env.globals["deviation_reasons"] = decision_store.DEVIATION_REASONS
    templates.env.globals["sorted_options"] = sorted_options
    templates.env.globals["preference_criteria"] = preference_criteria
    policy = accounts.LoginPolicy(free_failures=settings.login_max_failures, window_s=settings.login_window_s,
                                  base_delay_s=settings.login_backoff_base_s, max_delay_s=settings.login_backoff_max_s)
    st = AppState(settings, engine, factory, store, templates, UploadLimits.from_settings(settings), policy)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # sync handlers run in anyio's pool (40 threads by default): with 20 requests at once,
        # 20 threads share one GIL and every request is as slow as all of them together; a
        # few threads serve requests one after the other, in arrival order (docs/web.md)
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.web_threads
        supervisor = WorkerSupervisor(settings) if settings.start_worker else None
        _app.state.supervisor = supervisor
        try:
            yield
        finally:
            if supervisor is not None:
                supervisor.stop()
            engine.dispose()

    app = FastAPI(title="latplan tumor board", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.latplan = st
    app.state.settings, app.state.engine, app.state.factory, app.state.store = settings, engine, factory, store
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes,
                       upload_bytes=settings.max_upload_bytes + 1_000_000, allow_upload=_upload_allowed(st))
    app.add_middleware(SecurityHeadersMiddleware, https=settings.cookie_secure)
    app.mount("/static", StaticFiles(directory=str(resources.files("latplan.web") / "static")), name="static")
    _exception_handlers(app)
    for module in (auth, cases, job_routes, decisions, exports, admin):
        app.include_router(module.router)
    return app

