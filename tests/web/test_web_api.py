"""API tests of the tumor-board app, on SQLite and PostgreSQL (parametrised ``db_url``).

Reference: issue 7 (Parts, Verification). Each test asserts the behaviour the issue asks for
(who can see what, idempotent planning, append-only records), no numbers involved.
"""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select, text
from webtest_helpers import login, upload

from latplan.store.db import make_engine, session_factory
from latplan.store.models import AuditEvent, Decision, Job, PlanOption
from latplan.web.fake_planner import failing_planner
from latplan.web.jobs import run_worker


def _plan_and_run(client, settings, csrf, case_id):
    r = client.post(f"/cases/{case_id}/plan", headers={"X-CSRF-Token": csrf, "accept": "application/json"})
    assert r.status_code == 202, r.text
    run_worker(settings, once=True)
    job = client.get(f"/cases/{case_id}/job", headers={"accept": "application/json"}).json()
    assert job["status"] == "done", job
    return job


def test_web_upload_plan_decide_export(app_client, settings, case_zip):
    """Upload → plan (fake planner in the worker) → case page → decision → JSON/FHIR exports."""
    csrf = login(app_client, "coord")
    r = upload(app_client, csrf, case_zip)
    assert r.status_code == 201, r.text
    case_id = r.json()["id"]
    assert r.json()["summary"]["lesion_ids"] == ["lesion_1"]
    job = _plan_and_run(app_client, settings, csrf, case_id)
    page = app_client.get(f"/cases/{case_id}")
    assert page.status_code == 200
    assert 'id="viewer-canvas"' in page.text and 'id="report-frame"' in page.text
    assert "Whole-patient strategies" in page.text
    rep = app_client.get(f"/cases/{case_id}/report")
    assert rep.status_code == 200 and "Stand-in report" in rep.text
    assert "default-src 'none'" in rep.headers["content-security-policy"]
    idx = app_client.get(f"/cases/{case_id}/viewer/index.json").json()
    kinds = {layer["kind"] for layer in idx["layers"]}
    assert {"image", "structure", "zone", "isodose"} <= kinds
    for layer in idx["layers"]:
        assert app_client.get(f"/cases/{case_id}/viewer/{layer['url']}").status_code == 200
    assert {"lesion", "structure", "zone", "isodose"} <= {m["kind"] for m in idx["meshes"]}
    for mesh in idx["meshes"]:  # the surfaces are served like the volumes (same access check)
        r = app_client.get(f"/cases/{case_id}/viewer/{mesh['url']}")
        assert r.status_code == 200 and b"<GIFTI" in r.content

    csrf = login(app_client, "doc")
    form = {"scope": "lesion_1", "chosen": "ibt", "rationale": "central location", "csrf_token": csrf,
            "attendees": "Dr Doc — interventional radiology\nDr Rad, radiation oncology",
            "patient_preference": "prefers a single session"}
    r = app_client.post(f"/cases/{case_id}/decisions", data=form, headers={"accept": "application/json"})
    assert r.status_code == 422 and "deviates from the top-ranked" in r.json()["error"]
    form |= {"deviation_code": "patient_preference"}
    r = app_client.post(f"/cases/{case_id}/decisions", data=form, headers={"accept": "application/json"})
    assert r.status_code == 201, r.text
    d = r.json()
    assert d["version"] == 1 and d["deviates"] and d["deviation"]["code"] == "patient_preference"
    assert d["attendees"][1] == {"name": "Dr Rad", "specialty": "radiation oncology"}
    # correction = new version, superseding the first
    form2 = {**form, "chosen": "mwa", "deviation_code": ""}
    d2 = app_client.post(f"/cases/{case_id}/decisions", data=form2, headers={"accept": "application/json"}).json()
    assert d2["version"] == 2 and d2["supersedes_id"] == d["id"] and not d2["deviates"]

    ex = app_client.get(f"/cases/{case_id}/export.json").json()
    assert ex["plan"]["lesions"][0]["id"] == "lesion_1" and len(ex["decisions"]) == 2
    assert ex["job"]["key"] == job["key"]
    fhir = app_client.get(f"/cases/{case_id}/export.fhir.json")
    assert fhir.headers["content-type"].startswith("application/fhir+json")
    from fhir.resources.R4B.bundle import Bundle

    bundle = Bundle.model_validate(fhir.json())  # round trip: the export parses back as a FHIR bundle
    types = [e.resource.get_resource_type() for e in bundle.entry]
    assert types.count("CarePlan") == 1 and "Condition" in types and "Patient" in types


def test_web_idempotent_job_key(app_client, settings, case_zip):
    """Planning the same content twice (even as two uploads) reuses one job row and one result."""
    csrf = login(app_client, "coord")
    a = upload(app_client, csrf, case_zip).json()["id"]
    b = upload(app_client, csrf, case_zip, order=2).json()["id"]
    _plan_and_run(app_client, settings, csrf, a)
    r = app_client.post(f"/cases/{b}/plan", headers={"X-CSRF-Token": csrf, "accept": "application/json"})
    assert r.json()["status"] == "done"  # same key: the finished result is reused at once
    eng = make_engine(settings.database_url)
    with session_factory(eng)() as s:
        assert s.scalar(select(func.count()).select_from(Job)) == 1
        n_opts = s.scalar(select(func.count()).select_from(PlanOption))
    plan = json.loads((settings.data_dir / "results").glob("*/plan.json").__next__().read_text())
    assert n_opts == sum(len(le["options"]) for le in plan["lesions"])
    eng.dispose()


def test_web_board_isolation(app_client, case_zip):
    """A user outside the case's board gets 404 on every case URL, and nothing of the case leaks."""
    csrf = login(app_client, "coord")
    case_id = upload(app_client, csrf, case_zip).json()["id"]
    csrf = login(app_client, "outsider")
    for url in (f"/cases/{case_id}", f"/cases/{case_id}/report", f"/cases/{case_id}/viewer/index.json",
                f"/cases/{case_id}/export.json", f"/cases/{case_id}/export.fhir.json", f"/cases/{case_id}/job"):
        r = app_client.get(url)
        assert r.status_code == 404, url
        assert "WEB-01" not in r.text
    assert "WEB-01" not in app_client.get("/cases").text
    r = app_client.post(f"/cases/{case_id}/plan", headers={"X-CSRF-Token": csrf, "accept": "application/json"})
    assert r.status_code == 404


def test_web_roles(app_client, case_zip):
    """A viewer may look but not upload, plan, decide or export; the audit log is admin-only."""
    csrf = login(app_client, "view")
    r = upload(app_client, csrf, case_zip)
    assert r.status_code == 403 and "may not upload" in r.json()["error"]
    assert app_client.get("/admin/audit", headers={"accept": "application/json"}).status_code == 403
    csrf = login(app_client, "coord")
    case_id = upload(app_client, csrf, case_zip).json()["id"]
    csrf = login(app_client, "view")
    assert app_client.get(f"/cases/{case_id}").status_code == 200
    assert app_client.post(f"/cases/{case_id}/plan", headers={"X-CSRF-Token": csrf}).status_code == 403
    assert app_client.get(f"/cases/{case_id}/export.json").status_code == 403
    login(app_client, "admin")
    events = app_client.get("/admin/audit", headers={"accept": "application/json"}).json()["events"]
    actions = {e["action"] for e in events}
    assert {"login", "upload", "view"} <= actions
    html = app_client.get("/admin/audit").text
    assert 'id="audit-table"' in html and ">upload<" in html
    assert 'id="users-table"' in app_client.get("/admin/users").text


def test_web_append_only_tables(app_client, settings, case_zip):
    """UPDATE and DELETE on audit_events and decisions are rejected by the database (triggers)."""
    csrf = login(app_client, "coord")
    case_id = upload(app_client, csrf, case_zip).json()["id"]
    _plan_and_run(app_client, settings, csrf, case_id)
    csrf = login(app_client, "doc")
    r = app_client.post(f"/cases/{case_id}/decisions", headers={"accept": "application/json"}, data={
        "scope": "lesion_1", "chosen": "mwa", "rationale": "r", "attendees": "A — surgery", "csrf_token": csrf})
    assert r.status_code == 201
    eng = make_engine(settings.database_url)
    for table in ("audit_events", "decisions"):
        for stmt in (f"UPDATE {table} SET id = id", f"DELETE FROM {table}"):
            with pytest.raises(Exception, match="append-only"), eng.begin() as conn:
                conn.execute(text(stmt))
    with session_factory(eng)() as s:
        assert s.scalar(select(func.count()).select_from(Decision)) == 1
        assert s.scalar(select(func.count()).select_from(AuditEvent)) > 0
    eng.dispose()


def test_web_failed_job_shown_and_requeued(sqlite_client, sqlite_settings, case_zip):
    """A planner error → job 'failed' with its message on the page, no result folder, no option rows;
    planning again re-queues the same job (same key)."""
    csrf = login(sqlite_client, "coord")
    case_id = upload(sqlite_client, csrf, case_zip).json()["id"]
    sqlite_client.post(f"/cases/{case_id}/plan", headers={"X-CSRF-Token": csrf})
    run_worker(sqlite_settings, planner=failing_planner, once=True)
    job = sqlite_client.get(f"/cases/{case_id}/job", headers={"accept": "application/json"}).json()
    assert job["status"] == "failed" and "did not converge" in job["message"]
    page = sqlite_client.get(f"/cases/{case_id}")
    assert "Planning failed" in page.text and "did not converge" in page.text and 'id="plan-button"' in page.text
    assert list((sqlite_settings.data_dir / "results").iterdir()) == []
    assert list((sqlite_settings.data_dir / "tmp").iterdir()) == []
    r = sqlite_client.post(f"/cases/{case_id}/plan", headers={"X-CSRF-Token": csrf, "accept": "application/json"})
    assert r.json()["status"] == "queued" and r.json()["key"] == job["key"]
    run_worker(sqlite_settings, once=True)  # the stand-in planner of the settings succeeds
    assert sqlite_client.get(f"/cases/{case_id}/job", headers={"accept": "application/json"}).json()["status"] == "done"


def test_web_preference_weights_are_job_parameters(sqlite_client, sqlite_settings, case_zip):
    """Weights entered on the page reach the planner, make a new job key, and bad weights are refused."""
    csrf = login(sqlite_client, "coord")
    case_id = upload(sqlite_client, csrf, case_zip).json()["id"]
    first = _plan_and_run(sqlite_client, sqlite_settings, csrf, case_id)
    r = sqlite_client.post(f"/cases/{case_id}/plan", headers={"accept": "application/json"},
                           data={"csrf_token": csrf, "pref_local_control": "7"})
    assert r.status_code == 422 and "use 0 (unimportant) to 5" in r.json()["error"]
    r = sqlite_client.post(f"/cases/{case_id}/plan", headers={"accept": "application/json"},
                           data={"csrf_token": csrf, "pref_local_control": "5", "pref_invasiveness": "1"})
    second = r.json()
    assert second["key"] != first["key"] and second["parameters"] == {
        "preferences": {"local_control": 5.0, "invasiveness": 1.0}}
    run_worker(sqlite_settings, once=True)
    ex = sqlite_client.get(f"/cases/{case_id}/export.json").json()
    assert ex["job"]["key"] == second["key"]
    assert ex["plan"]["parameters"] == second["parameters"]  # the stand-in planner echoes what it received


def test_web_quick_preview_real_chain(tmp_path, monkeypatch, case_zip):
    """The "quick preview" (rules, ranking, report; no physics) through the REAL chain in the worker:
    [A1] load_case_folder → [D] plan_case(simulate=False) → [E] write_reports (PDF skipped). The
    browser test plans with all simulations; this keeps the preview path covered (issue 7 feature).
    Reference: parameters.simulate = False must give options without simulation results and a
    viewer without predicted zones or doses, and the page must say it is a preview."""
    from fastapi.testclient import TestClient
    from webtest_helpers import make_settings, seed_users

    from latplan.web.app import create_app

    monkeypatch.setenv("LATPLAN_REPORT_PDF", "0")
    settings = make_settings(f"sqlite:///{tmp_path / 'q.db'}", tmp_path / "data",
                             planner="latplan.web.jobs:default_planner")
    seed_users(settings)
    with TestClient(create_app(settings), base_url="http://127.0.0.1") as client:
        csrf = login(client, "coord")
        case_id = upload(client, csrf, case_zip).json()["id"]
        r = client.post(f"/cases/{case_id}/plan", headers={"accept": "application/json"},
                        data={"csrf_token": csrf, "quick": "1"})
        assert r.status_code == 202 and r.json()["parameters"] == {"simulate": False}
        run_worker(settings, once=True)
        job = client.get(f"/cases/{case_id}/job", headers={"accept": "application/json"}).json()
        assert job["status"] == "done", job
        plan = client.get(f"/cases/{case_id}/export.json").json()["plan"]
        options = plan["lesions"][0]["options"]
        assert options and not any(o.get("simulation") for o in options)
        assert any(o.get("rank") == 1 for o in options) and plan["strategies"]
        page = client.get(f"/cases/{case_id}").text
        assert 'id="quick-note"' in page and 'id="viewer-canvas"' in page
        idx = client.get(f"/cases/{case_id}/viewer/index.json").json()
        assert {layer["kind"] for layer in idx["layers"]} == {"image", "structure"}
        assert {m["kind"] for m in idx["meshes"]} == {"lesion", "structure"}
        assert client.get(f"/cases/{case_id}/report").status_code == 200
