"""The board's decisions on a case (append-only versions; an ``Idempotency-Key`` makes a retry safe)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from latplan.errors import InvalidInputError
from latplan.store import audit
from latplan.store import cases as case_store
from latplan.store import decisions as decision_store
from latplan.store.decisions import decision_dict
from latplan.store.models import Decision
from latplan.web.deps import (
    CAN_DECIDE,
    Ctx,
    IdParam,
    case_for,
    csrf_dep,
    ctx_dep,
    idempotency_key,
    load_plan,
    require,
    wants_json,
)
from latplan.web.plan_view import options_and_strategies

router = APIRouter()


class _TwinError(Exception):
    """Raised inside the decision's transaction when its idempotency key is already stored."""


def _answer(request: Request, case_id: int, status: int, body: dict[str, object]) -> Response:
    if wants_json(request):
        return JSONResponse(body, status_code=status)
    return RedirectResponse(f"/cases/{case_id}", status_code=303)


@router.post("/cases/{case_id}/decisions", dependencies=[Depends(csrf_dep)], response_model=None)
def decide(request: Request, case_id: IdParam, ctx: Ctx = Depends(ctx_dep), scope: str = Form(..., max_length=64),
           chosen: str = Form(..., max_length=200), rationale: str = Form("", max_length=20_000),
           attendees: str = Form("", max_length=20_000), patient_preference: str = Form("", max_length=20_000),
           deviation_code: str = Form("", max_length=40), deviation_text: str = Form("", max_length=20_000)) -> Response:
    require(ctx, CAN_DECIDE, "record decisions", case_id)
    case = case_for(ctx, case_id)
    key = idempotency_key(request)
    seen = case_store.idempotent_answer(ctx.db, ctx.user.id, f"decision:{case_id}", key)
    if seen is not None:
        return _answer(request, case_id, seen.status, seen.body)
    job = case_store.shown_job(ctx.db, case)
    plan = load_plan(ctx.app.store, job)
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
    user, ip, factory = ctx.user, ctx.ip, ctx.app.factory
    ctx.db.close()

    def _audit(s: Session, row: Decision) -> None:
        if case_store.idempotent_answer(s, user.id, f"decision:{case_id}", key) is not None:
            raise _TwinError  # a concurrent request with the same key was stored first: roll this one back
        audit.record(s, "decide", user, "case", case_id,
                     detail={"decision_id": row.id, "scope": row.scope, "version": row.version}, ip=ip)
        case_store.mark_decided(s, case_id)
        case_store.remember_answer(s, user.id, f"decision:{case_id}", key, str(row.id), 201,
                                   decision_dict(row, user.username))

    try:
        row = decision_store.record_decision(factory, case_id, d, deviates, top[scope], user.id,
                                             job.job_key if job else None, on_commit=_audit)
    except _TwinError:
        with factory() as s:  # answer as the twin was answered
            seen = case_store.idempotent_answer(s, user.id, f"decision:{case_id}", key)
        assert seen is not None
        return _answer(request, case_id, seen.status, seen.body)
    return _answer(request, case_id, 201, decision_dict(row, user.username))
