"""Planning requests and their progress (the work runs in the worker: :mod:`latplan.web.jobs`)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from latplan.store import audit
from latplan.store import cases as case_store
from latplan.store.models import Job
from latplan.web import jobs
from latplan.web.deps import (
    CAN_PLAN,
    Ctx,
    IdParam,
    QuotaError,
    case_for,
    csrf_dep,
    ctx_dep,
    form_fields,
    job_dict,
    page,
    require,
    wants_json,
)
from latplan.web.plan_view import planning_parameters

router = APIRouter()


@router.post("/cases/{case_id}/plan", dependencies=[Depends(csrf_dep)], response_model=None)
def plan_case_route(request: Request, case_id: IdParam, ctx: Ctx = Depends(ctx_dep),
                    form: dict[str, str] = Depends(form_fields)) -> Response:
    """Queue planning (identical concurrent requests give one job; quotas per user and per case)."""
    require(ctx, CAN_PLAN, "start planning", case_id)
    case = case_for(ctx, case_id)
    parameters = planning_parameters(form)
    st, user, ip = ctx.app, ctx.user, ctx.ip
    ctx.db.close()

    def _audit(s: Session, job: Job) -> None:
        audit.record(s, "plan", user, "case", case_id, detail={"job_key": job.job_key}, ip=ip)

    try:
        job = jobs.enqueue_once(st.factory, case.id, parameters, st.settings.planner, user.id,
                                st.settings.max_active_jobs_per_user, on_commit=_audit)
    except jobs.JobQuotaError as exc:
        raise QuotaError(str(exc)) from None
    if request.headers.get("hx-request"):
        return page(request, "_job.html", {"job": job, "case": case, "polled": True})
    if wants_json(request):
        return JSONResponse(job_dict(job), status_code=202)
    return RedirectResponse(f"/cases/{case.id}", status_code=303)


@router.get("/cases/{case_id}/job", response_model=None)
def job_status(request: Request, case_id: IdParam, ctx: Ctx = Depends(ctx_dep)) -> Response:
    case = case_for(ctx, case_id)
    job = case_store.job_by_key(ctx.db, case.job_key)
    if wants_json(request):
        return JSONResponse(job_dict(job) or {"status": "none"})
    resp = page(request, "_job.html", {"job": job, "case": case, "polled": True})
    if job is not None and job.status in ("done", "failed") and request.headers.get("hx-request") \
            and request.query_params.get("poll") == "1":
        resp.headers["HX-Refresh"] = "true"
    return resp
