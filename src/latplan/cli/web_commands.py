"""CLI commands of the tumor-board web app: ``latplan serve``, ``latplan user add``, ``latplan audit verify``.

No logic here: settings come from the environment (LATPLAN_DATABASE_URL, LATPLAN_DATA_DIR,
LATPLAN_SECRET_KEY), the work is done by :mod:`latplan.web` and :mod:`latplan.store`.
"""

from __future__ import annotations

import os
import sys

import typer

from latplan.errors import InvalidInputError


def register(app: typer.Typer) -> None:
    """Add this module's commands to the main app."""
    user_app = typer.Typer(help="Manage tumor-board users (no default password exists).", no_args_is_help=True)
    app.add_typer(user_app, name="user")
    audit_app = typer.Typer(help="The tumor board's audit log.", no_args_is_help=True)
    app.add_typer(audit_app, name="audit")

    @app.command("serve")
    def serve(
        host: str = typer.Option("127.0.0.1", help="Address to listen on (127.0.0.1 = this machine only)."),
        port: int = typer.Option(8000, help="TCP port."),
        no_worker: bool = typer.Option(False, "--no-worker", help="Do not start the planning worker process."),
        forwarded_allow_ips: str = typer.Option(
            "", "--forwarded-allow-ips",
            help="Comma-separated addresses of reverse proxies whose X-Forwarded-For/-Proto are trusted "
                 "(default: none — the client address is the TCP peer)."),
    ) -> None:
        """Start the tumor-board web app (login at /login, cases at /cases); migrations run on start."""
        from latplan.store.config import StoreSettings
        from latplan.web.server import run_server

        os.umask(0o077)  # files the server writes (database, blobs, results) are owner-only
        settings = StoreSettings.from_env(start_worker=not no_worker)
        typer.echo(f"latplan tumor board on http://{host}:{port}/ (data in {settings.data_dir})")
        run_server(settings, host, port, forwarded_allow_ips)

    @audit_app.command("verify")
    def audit_verify() -> None:
        """Recompute the audit log's hash chain; exit 1 naming each edited, deleted or reordered row."""
        from latplan.store import audit
        from latplan.store.config import StoreSettings
        from latplan.store.db import make_engine, migrate, session_factory

        settings = StoreSettings.from_env()
        engine = make_engine(settings.database_url)
        migrate(engine)
        with session_factory(engine)() as s:
            report = audit.verify(s)
        engine.dispose()
        for problem in report.problems:
            typer.echo(f"BROKEN: {problem}", err=True)
        if not report.ok:
            typer.echo(f"audit log: {len(report.problems)} problem(s) in {report.rows} events", err=True)
            raise typer.Exit(1)
        typer.echo(f"audit log intact: {report.rows} events, head {report.head_hash}")

    @user_app.command("add")
    def user_add(
        username: str = typer.Argument(..., help="Login name (no spaces)."),
        role: str = typer.Option(..., help="admin | physicist | physician | coordinator | viewer"),
        full_name: str = typer.Option(None, help="Name shown on pages."),
        specialty: str = typer.Option(None, help="Specialty (e.g. interventional radiology)."),
        board: list[str] = typer.Option([], help="Board(s) the user joins (created when absent)."),
        password_stdin: bool = typer.Option(False, "--password-stdin", help="Read the password from standard input."),
    ) -> None:
        """Create a user; the password is prompted (twice) or read from stdin, never given on the command line."""
        from latplan.store import accounts, audit
        from latplan.store.config import StoreSettings
        from latplan.store.db import make_engine, migrate, session_factory, transaction

        if password_stdin:
            password = sys.stdin.readline().rstrip("\n")
        else:
            password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
        if not password:
            raise InvalidInputError("no password given; type one at the prompt or pipe it with --password-stdin.")
        settings = StoreSettings.from_env()
        engine = make_engine(settings.database_url)
        migrate(engine)
        with transaction(session_factory(engine)) as s:
            user = accounts.create_user(s, username, password, role, full_name, specialty, list(board))
            audit.record(s, "user_add", None, "user", user.username, username="cli",
                         detail={"role": role, "boards": list(board)})
        engine.dispose()
        typer.echo(f"user {username} ({role}) created" + (f", member of {', '.join(board)}" if board else ""))
