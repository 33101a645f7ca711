"""The case list, the upload of a case, the case page and what it shows in the browser.

Reading patient data in the browser — the case page, the report and patient grid frames, the
viewer's volumes and meshes — is allowed to every member of the case's board and audited
(``view`` / ``read``); saving files (report PDF, volume and mesh downloads) is an export
(:mod:`latplan.web.routes.exports`).
"""

from __future__ import annotations

import datetime as dt
import shutil
from typing import Any

from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response

from latplan.errors import InvalidInputError
from latplan.store import audit
from latplan.store import cases as case_store
from latplan.store import decisions as decision_store
from latplan.store.decisions import decision_dict
from latplan.web.deps import (
    CAN_DECIDE,
    CAN_EXPORT,
    CAN_PLAN,
    CAN_UPLOAD,
    Ctx,
    IdParam,
    NotFoundError,
    case_for,
    csrf_dep,
    ctx_dep,
    idempotency_key,
    job_dict,
    log_event,
    page,
    report_path,
    require,
    result_dir,
    tx,
    wants_json,
)
from latplan.web.security import REPORT_CSP
from latplan.web.uploads import UploadRejectedError, extract_zip, parse_in_subprocess, save_stream

router = APIRouter()


@router.get("/cases", response_model=None)
def case_list(request: Request, ctx: Ctx = Depends(ctx_dep),
              meeting: int | None = Query(None, ge=1, le=case_store.MAX_ID),
              limit: int = Query(200, ge=1, le=1000), offset: int = Query(0, ge=0, le=case_store.MAX_ID)) -> Response:
    boards = case_store.boards_of(ctx.db, ctx.user)
    rows, total = case_store.list_cases(ctx.db, [b.id for b in boards], meeting, limit, offset)
    if wants_json(request):
        return JSONResponse({"total": total, "cases": [
            {"id": r.id, "patient_ref": r.patient_ref, "title": r.title, "status": r.status,
             "board_id": r.board_id, "order": r.order_index,
             "meeting": {"id": r.meeting.id, "date": r.meeting.date.isoformat(), "title": r.meeting.title}
             if r.meeting else None}
            for r in rows]})
    groups: dict[case_store.MeetingRef | None, list[case_store.CaseRow]] = {}
    for r in rows:
        groups.setdefault(r.meeting, []).append(r)
    return page(request, "cases.html", {"user": ctx.user, "csrf": ctx.csrf, "groups": groups, "boards": boards,
                                        "total": total, "can_upload": ctx.user.role in CAN_UPLOAD,
                                        "board_names": {b.id: b.name for b in boards},
                                        "today": dt.date.today().isoformat()})


def _meeting_day(text: str) -> dt.date | None:
    if not text.strip():
        return None
    try:
        return dt.date.fromisoformat(text.strip())
    except ValueError:
        raise InvalidInputError(f"meeting date {text[:40]!r} is not a date (YYYY-MM-DD).") from None


def _upload_answer(request: Request, status: int, body: dict[str, Any]) -> Response:
    if wants_json(request):
        return JSONResponse(body, status_code=status)
    return RedirectResponse(f"/cases/{body['id']}", status_code=303)


def _store_upload(ctx: Ctx, upload: UploadFile) -> tuple[str, dict[str, Any], str]:
    """Check, extract, parse (subprocess) and store the upload: (digest, summary, patient ref)."""
    st = ctx.app
    tmp = st.store.new_tmp_dir("up")
    try:
        archive = tmp / "upload.bin"
        save_stream(upload.file, archive, st.settings.max_upload_bytes)
        folder = tmp / "case"
        folder.mkdir(mode=0o700)
        extract_zip(archive, folder, st.limits)
        archive.unlink()
        parsed = parse_in_subprocess(folder, st.settings.parse_memory_bytes, st.settings.parse_timeout_s)
        digest = st.store.put_folder(folder)
    except UploadRejectedError as exc:
        with tx(ctx.db):
            audit.record(ctx.db, "upload_rejected", ctx.user, "upload", (upload.filename or "")[:120],
                         detail={"reason": str(exc)[:500]}, ip=ctx.ip)
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return digest, parsed.to_dict(), parsed.patient_id


@router.post("/cases", dependencies=[Depends(csrf_dep)], response_model=None)
def upload_case(request: Request, ctx: Ctx = Depends(ctx_dep), upload: UploadFile = File(...),
                board_id: int = Form(..., ge=1, le=case_store.MAX_ID), meeting_date: str = Form("", max_length=40),
                order: int = Form(0, ge=-1_000_000, le=1_000_000), title: str = Form("", max_length=200)) -> Response:
    """Store an uploaded case; with an ``Idempotency-Key`` header a repeat returns the first case."""
    require(ctx, CAN_UPLOAD, "upload cases")
    if not case_store.is_member(ctx.db, board_id, ctx.user.id):
        raise NotFoundError(f"board {board_id} does not exist or you are not a member.")
    key = idempotency_key(request)
    seen = case_store.idempotent_answer(ctx.db, ctx.user.id, "upload", key)
    if seen is not None:
        return _upload_answer(request, seen.status, seen.body)
    meeting_day = _meeting_day(meeting_date)
    digest, summary, patient_ref = _store_upload(ctx, upload)
    try:
        with tx(ctx.db):
            meeting = case_store.meeting_for(ctx.db, board_id, meeting_day)
            case = case_store.add_case(ctx.db, board_id, meeting, order, patient_ref, title.strip() or None, digest,
                                       summary, ctx.user.id)
            body = {"id": case.id, "content_sha256": digest, "summary": summary}
            case_store.remember_answer(ctx.db, ctx.user.id, "upload", key, str(case.id), 201, body)
            audit.record(ctx.db, "upload", ctx.user, "case", case.id,
                         detail={"content_sha256": digest, "filename": (upload.filename or "")[:200]}, ip=ctx.ip)
    except case_store.IntegrityError:  # a concurrent request with the same key stored its case first
        seen = case_store.idempotent_answer(ctx.db, ctx.user.id, "upload", key)
        if seen is None:
            raise
        return _upload_answer(request, seen.status, seen.body)
    return _upload_answer(request, 201, body)


@router.get("/cases/{case_id}", response_model=None)
def case_page(request: Request, case_id: IdParam, ctx: Ctx = Depends(ctx_dep)) -> Response:
    st = ctx.app
    case = case_for(ctx, case_id)
    current = case_store.job_by_key(ctx.db, case.job_key)
    shown = current if current is not None and current.status == "done" else case_store.shown_job(ctx.db, case)
    view = st.plan_views.get(st.store, st.templates, shown)
    hist = decision_store.history(ctx.db, case.id)
    latest = decision_store.latest_of(hist)
    users = case_store.usernames(ctx.db, {d.recorded_by for d in hist})
    log_event(ctx, "view", "case", case.id)
    if wants_json(request):
        return JSONResponse({"id": case.id, "status": case.status, "patient_ref": case.patient_ref,
                             "job": job_dict(current), "plan": view.plan,
                             "plan_job_key": shown.job_key if shown else None,
                             "decisions": [decision_dict(d, users.get(d.recorded_by)) for d in hist]})
    return page(request, "case.html", {
        "user": ctx.user, "csrf": ctx.csrf, "case": case, "job": current, "plan": view.plan,
        "plan_html": view.plan_html, "has_report": view.has_report, "has_pdf": view.has_pdf,
        "has_patient": view.has_patient, "has_viewer": view.has_viewer,
        "latest": latest, "history": hist, "usernames": users, "allowed": view.allowed, "top": view.top,
        "can_plan": ctx.user.role in CAN_PLAN, "can_decide": ctx.user.role in CAN_DECIDE,
        "can_export": ctx.user.role in CAN_EXPORT,
    })


def _read_file(ctx: Ctx, case_id: int, what: str) -> tuple[Any, Any]:
    case = case_for(ctx, case_id)
    rd = result_dir(ctx.app.store, case_store.shown_job(ctx.db, case))
    return case, rd


def _audited_read(ctx: Ctx, case_id: int, name: str) -> None:
    log_event(ctx, "read", "case", case_id, detail={"file": name})


@router.get("/cases/{case_id}/report", response_model=None)
def report(case_id: IdParam, ctx: Ctx = Depends(ctx_dep)) -> Response:
    _case, rd = _read_file(ctx, case_id, "report")
    path = report_path(rd) if rd else None
    if path is None:
        raise NotFoundError("this case has no report yet; run planning first.")
    _audited_read(ctx, case_id, "report.html")
    return FileResponse(path, media_type="text/html", headers={"Content-Security-Policy": REPORT_CSP})


@router.get("/cases/{case_id}/patient", response_model=None)
def patient_grid(case_id: IdParam, ctx: Ctx = Depends(ctx_dep)) -> Response:
    """The plain-language option grid for the patient (patient.html)."""
    _case, rd = _read_file(ctx, case_id, "patient")
    path = rd / "report" / "patient.html" if rd else None
    if path is None or not path.is_file():
        raise NotFoundError("this case has no patient option grid yet; run planning first.")
    _audited_read(ctx, case_id, "patient.html")
    return FileResponse(path, media_type="text/html", headers={"Content-Security-Policy": REPORT_CSP})


def viewer_name_ok(name: str) -> bool:
    return ("/" not in name and not name.startswith(".") and len(name) <= 120
            and (name.endswith((".nii.gz", ".gii")) or name == "index.json"))


@router.get("/cases/{case_id}/viewer/{name}", response_model=None)
def viewer_file(request: Request, case_id: IdParam, name: str, ctx: Ctx = Depends(ctx_dep)) -> Response:
    """A file of the in-browser viewer: a read (audited). Opening it as a page or download is an export."""
    _case, rd = _read_file(ctx, case_id, "viewer")
    if rd is None or not viewer_name_ok(name):
        raise NotFoundError("no such viewer file.")
    path = rd / "viewer" / name
    if not path.is_file():
        raise NotFoundError("no such viewer file.")
    if request.headers.get("sec-fetch-dest", "empty") == "document" and name != "index.json":
        require(ctx, CAN_EXPORT, "download volumes or meshes", case_id)
    _audited_read(ctx, case_id, f"viewer/{name}")
    media = "application/json" if name == "index.json" else "application/octet-stream"
    return FileResponse(path, media_type=media)
