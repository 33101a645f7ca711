"""The app's routers: auth, cases, jobs, decisions, exports, admin (``create_app`` includes them)."""
