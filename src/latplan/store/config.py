"""Settings of the tumor-board app, read once from environment variables.

Why a frozen dataclass: the web app, the planning worker (another process) and the CLI must
agree on the same database, data folder and secret; they all build it with
:meth:`StoreSettings.from_env` and pass it down, never re-reading the environment.

Variables: ``LATPLAN_DATABASE_URL`` (default: SQLite file ``<data dir>/latplan.db``),
``LATPLAN_DATA_DIR`` (default ``./latplan-data``, created 0700), ``LATPLAN_SECRET_KEY`` (default:
generated on first start and kept in ``<data dir>/secret_key``, mode 0600),
``LATPLAN_JOB_LEASE_S`` (worker lease, default 30 s), ``LATPLAN_DASK_SCHEDULER`` (a Dask scheduler
address such as ``tcp://10.0.0.5:8786``: the planning worker runs each job's planner on that cluster;
unset or empty: in the worker's own process).
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, replace
from pathlib import Path

from latplan.errors import InvalidInputError

MIB = 1024 * 1024


@dataclass(frozen=True)
class StoreSettings:
    """Where and how the app stores its data, and the guards on uploads and logins."""

    database_url: str
    data_dir: Path
    secret_key: str
    max_upload_bytes: int = 1024 * MIB
    max_zip_entries: int = 5000
    max_uncompressed_bytes: int = 4096 * MIB
    max_expansion_ratio: float = 1000.0
    parse_timeout_s: float = 180.0
    parse_memory_bytes: int = 6144 * MIB
    login_max_failures: int = 5
    login_window_s: int = 300
    login_backoff_base_s: float = 15.0
    login_backoff_max_s: float = 300.0
    session_lifetime_s: int = 12 * 3600
    session_idle_s: int = 30 * 60
    #: body limit of every request except an authenticated planner's upload (checked before login)
    max_body_bytes: int = 1 * MIB
    job_lease_s: float = 30.0
    max_active_jobs_per_user: int = 3
    cookie_secure: bool = False
    start_worker: bool = True
    planner: str = "latplan.web.jobs:default_planner"
    worker_poll_s: float = 1.0
    #: threads that run the web app's (synchronous) handlers; the rest of the requests wait in
    #: order (``LATPLAN_WEB_THREADS``; docs/web.md, Performance: why fewer threads answer faster)
    web_threads: int = 4
    #: Dask scheduler address: the worker runs its planner there (:class:`latplan.web.jobs.DaskPlanner`)
    dask_scheduler: str | None = None

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: object) -> StoreSettings:
        """Build settings from ``env`` (default ``os.environ``), creating the data folder and secret."""
        env = dict(os.environ if env is None else env)
        data_dir = Path(env.get("LATPLAN_DATA_DIR", "latplan-data")).expanduser().resolve()
        make_private_dir(data_dir)
        url = env.get("LATPLAN_DATABASE_URL") or f"sqlite:///{data_dir / 'latplan.db'}"
        secret = env.get("LATPLAN_SECRET_KEY") or load_or_create_secret(data_dir)
        kwargs: dict[str, object] = {}
        if "LATPLAN_PLANNER" in env:
            kwargs["planner"] = env["LATPLAN_PLANNER"]
        if env.get("LATPLAN_COOKIE_SECURE") == "1":
            kwargs["cookie_secure"] = True
        if "LATPLAN_MAX_UPLOAD_MB" in env:
            kwargs["max_upload_bytes"] = int(float(env["LATPLAN_MAX_UPLOAD_MB"]) * MIB)
        if "LATPLAN_JOB_LEASE_S" in env:
            kwargs["job_lease_s"] = float(env["LATPLAN_JOB_LEASE_S"])
        if env.get("LATPLAN_WEB_THREADS", "").strip():
            kwargs["web_threads"] = _positive_int(env["LATPLAN_WEB_THREADS"], "LATPLAN_WEB_THREADS")
        if env.get("LATPLAN_DASK_SCHEDULER", "").strip():
            kwargs["dask_scheduler"] = env["LATPLAN_DASK_SCHEDULER"].strip()
        kwargs.update(overrides)
        return cls(database_url=url, data_dir=data_dir, secret_key=secret, **kwargs)  # type: ignore[arg-type]

    def with_(self, **changes: object) -> StoreSettings:
        return replace(self, **changes)  # type: ignore[arg-type]

    def to_env(self) -> dict[str, str]:
        """Environment for a child process (the planning worker) that must see the same store."""
        return {
            "LATPLAN_DATABASE_URL": self.database_url,
            "LATPLAN_DATA_DIR": str(self.data_dir),
            "LATPLAN_SECRET_KEY": self.secret_key,
            "LATPLAN_PLANNER": self.planner,
            "LATPLAN_JOB_LEASE_S": repr(self.job_lease_s),
            "LATPLAN_DASK_SCHEDULER": self.dask_scheduler or "",
            "LATPLAN_WEB_THREADS": str(self.web_threads),
        }


def _positive_int(text: str, name: str) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        value = 0
    if not 1 <= value <= 1000:
        raise InvalidInputError(f"{name}={text[:20]!r} is not a whole number from 1 to 1000; set it to e.g. 4.")
    return value


def make_private_dir(path: Path) -> None:
    """Create ``path`` (and parents) and make it owner-only (0700): it holds patient data."""
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)


def load_or_create_secret(data_dir: Path) -> str:
    """Read ``<data_dir>/secret_key`` or create it (256 random bits, file mode 0600)."""
    path = data_dir / "secret_key"
    if path.exists():
        text = path.read_text().strip()
        if len(text) < 32:
            raise InvalidInputError(
                f"{path} holds a secret key shorter than 32 characters; delete it to have a new one generated "
                "or set LATPLAN_SECRET_KEY."
            )
        return text
    secret = secrets.token_urlsafe(48)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, secret.encode())
    finally:
        os.close(fd)
    return secret
