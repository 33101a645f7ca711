"""Serving the app with uvicorn: who is trusted to name the client's address.

uvicorn trusts ``X-Forwarded-For``/``X-Forwarded-Proto`` from 127.0.0.1 by default, so any
local process (or a proxy that passes the header through) could choose the address the login
limit and the audit log see. Here proxy headers are off unless ``forwarded_allow_ips`` names
the proxies (``latplan serve --forwarded-allow-ips 10.0.0.5``).
"""

from __future__ import annotations

import uvicorn
from fastapi import FastAPI

from latplan.store.config import StoreSettings
from latplan.web.app import create_app


def server_config(app: FastAPI, host: str, port: int, forwarded_allow_ips: str = "") -> uvicorn.Config:
    trusted = ",".join(p.strip() for p in forwarded_allow_ips.split(",") if p.strip())
    return uvicorn.Config(app, host=host, port=port, log_level="info", access_log=False,
                          proxy_headers=bool(trusted), forwarded_allow_ips=trusted or None)


def run_server(settings: StoreSettings, host: str, port: int, forwarded_allow_ips: str = "") -> None:
    uvicorn.Server(server_config(create_app(settings), host, port, forwarded_allow_ips)).run()
