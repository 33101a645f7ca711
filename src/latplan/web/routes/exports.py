"""Exports: the board JSON, the FHIR bundle, DICOM SEG, the report PDF and viewer file downloads.

Every export needs the export permission (all roles but viewer); a refusal is an audited
``denied``; the ``export`` audit row is written after the file was built, and a build that
fails is an ``export_failed`` row with the reason (never logged as a success).
"""

from __future__ import annotations

import contextlib
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from fastapi import APIRouter, Depends
from fastapi.responses import FileResponse, JSONResponse, Response

from latplan.errors import LatplanError
from latplan.interop import exports as interop_exports
from latplan.interop.fhir import FHIR_MEDIA_TYPE, fhir_bundle
from latplan.store import audit
from latplan.store import cases as case_store
from latplan.store import decisions as decision_store
from latplan.store.models import CaseRecord, Job
from latplan.web.deps import (
    CAN_EXPORT,
    Ctx,
    IdParam,
    NotFoundError,
    case_for,
    ctx_dep,
    job_dict,
    load_plan,
    require,
    result_dir,
    tx,
)
from latplan.web.routes.cases import viewer_name_ok

router = APIRouter()


def _payload(ctx: Ctx, case: CaseRecord) -> tuple[dict[str, Any] | None, list[dict[str, Any]], Job | None]:
    job = case_store.shown_job(ctx.db, case)
    hist = decision_store.history(ctx.db, case.id)
    users = case_store.usernames(ctx.db, {d.recorded_by for d in hist})
    return load_plan(ctx.app.store, job), [decision_store.decision_dict(d, users.get(d.recorded_by)) for d in hist], job


@contextlib.contextmanager
def _audited_export(ctx: Ctx, case_id: int, fmt: str) -> Iterator[None]:
    """Audit ``export`` when the block succeeds, ``export_failed`` (with the reason) when it raises."""
    try:
        yield
    except Exception as exc:
        ctx.db.rollback()
        reason = str(exc) if isinstance(exc, LatplanError) else type(exc).__name__
        with tx(ctx.db):
            audit.record(ctx.db, "export_failed", ctx.user, "case", case_id,
                         detail={"format": fmt, "error": reason[:500]}, ip=ctx.ip)
        raise
    with tx(ctx.db):
        audit.record(ctx.db, "export", ctx.user, "case", case_id, detail={"format": fmt}, ip=ctx.ip)


@router.get("/cases/{case_id}/export.json", response_model=None)
def export_json(case_id: IdParam, ctx: Ctx = Depends(ctx_dep)) -> Response:
    require(ctx, CAN_EXPORT, "export", case_id)
    case = case_for(ctx, case_id)
    with _audited_export(ctx, case.id, "json"):
        plan, decs, job = _payload(ctx, case)
        body = interop_exports.export_json(case, plan, decs, job_dict(job), ctx.user.username)
    return JSONResponse(body, headers={"Content-Disposition": f'attachment; filename="case-{case.id}.json"'})


@router.get("/cases/{case_id}/export.fhir.json", response_model=None)
def export_fhir(case_id: IdParam, ctx: Ctx = Depends(ctx_dep)) -> Response:
    require(ctx, CAN_EXPORT, "export", case_id)
    case = case_for(ctx, case_id)
    with _audited_export(ctx, case.id, "fhir"):
        plan, decs, _job = _payload(ctx, case)
        latest_ids = {d.id for d in decision_store.latest(ctx.db, case.id).values()}
        body = fhir_bundle(case, plan, [d for d in decs if d["id"] in latest_ids])
    return JSONResponse(body, media_type=FHIR_MEDIA_TYPE,
                        headers={"Content-Disposition": f'attachment; filename="case-{case.id}-fhir.json"'})


def _zone_masks(rd: Path | None) -> dict[str, Any]:
    extra: dict[str, Any] = {}
    if rd is not None and (rd / "viewer" / "index.json").is_file():
        for layer in json.loads((rd / "viewer" / "index.json").read_text())["layers"]:
            if layer["kind"] == "zone":
                img = nib.load(str(rd / "viewer" / layer["url"]))
                if not isinstance(img, nib.Nifti1Image):
                    continue
                arr = np.asarray(img.dataobj)
                extra[f"zone {layer['lesion_id']} {layer['modality']}"] = np.transpose(arr, (2, 1, 0)) > 0
    return extra


@router.get("/cases/{case_id}/export.seg.zip", response_model=None)
def export_seg(case_id: IdParam, ctx: Ctx = Depends(ctx_dep)) -> Response:
    require(ctx, CAN_EXPORT, "export", case_id)
    case = case_for(ctx, case_id)
    st = ctx.app
    with _audited_export(ctx, case.id, "dicom-seg"):
        extra = _zone_masks(result_dir(st.store, case_store.shown_job(ctx.db, case)))
        with tempfile.TemporaryDirectory(dir=st.store.tmp) as work:
            data = interop_exports.seg_zip(st.store.folder_path(case.content_sha256), Path(work), extra)
    return Response(data, media_type="application/zip",
                    headers={"Content-Disposition": f'attachment; filename="case-{case.id}-seg.zip"'})


@router.get("/cases/{case_id}/report.pdf", response_model=None)
def report_pdf(case_id: IdParam, ctx: Ctx = Depends(ctx_dep)) -> Response:
    """The report as PDF: a download, so an export (the viewer role reads the report in the page)."""
    require(ctx, CAN_EXPORT, "download the report PDF", case_id)
    case = case_for(ctx, case_id)
    rd = result_dir(ctx.app.store, case_store.shown_job(ctx.db, case))
    path = rd / "report" / "report.pdf" if rd else None
    if path is None or not path.is_file():
        raise NotFoundError("this case has no PDF report (planning not finished, or the PDF was not written).")
    with tx(ctx.db):
        audit.record(ctx.db, "export", ctx.user, "case", case.id, detail={"format": "report-pdf"}, ip=ctx.ip)
    return FileResponse(path, media_type="application/pdf", filename=f"case-{case.id}-report.pdf")


@router.get("/cases/{case_id}/download/{name}", response_model=None)
def download_viewer_file(case_id: IdParam, name: str, ctx: Ctx = Depends(ctx_dep)) -> Response:
    """A volume or mesh of the viewer as a file download (an audited export)."""
    require(ctx, CAN_EXPORT, "download volumes or meshes", case_id)
    case = case_for(ctx, case_id)
    rd = result_dir(ctx.app.store, case_store.shown_job(ctx.db, case))
    path = rd / "viewer" / name if rd is not None and viewer_name_ok(name) else None
    if path is None or not path.is_file():
        raise NotFoundError("no such viewer file.")
    with tx(ctx.db):
        audit.record(ctx.db, "export", ctx.user, "case", case.id, detail={"format": "file", "file": name}, ip=ctx.ip)
    return FileResponse(path, media_type="application/octet-stream", filename=f"case-{case.id}-{name}")
