"""The board's decision record: append-only, versioned per case and scope.

A scope is a lesion id (the chosen option for that lesion) or ``"patient"`` (the chosen
whole-patient strategy). A correction is a new row with ``version`` + 1 that names the row
it supersedes; nothing is updated or deleted (database triggers enforce it). When the
choice is not the top-ranked one, a structured deviation reason is required.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from latplan.errors import InvalidInputError
from latplan.store.models import Decision

#: structured reasons for deviating from the top-ranked option (code → words shown in the form)
DEVIATION_REASONS: dict[str, str] = {
    "patient_preference": "the patient's stated preference",
    "comorbidity_or_performance": "comorbidity or performance status",
    "technical_access": "technical feasibility or access (applicator path, anatomy)",
    "resource_availability": "availability of the technique, device or waiting time",
    "prior_treatment": "prior treatment of this lesion or organ",
    "new_information": "information not in the planning input (new imaging, histology)",
    "board_judgement": "the board's clinical judgement against the ranking",
    "other": "other (explained in the text)",
}


@dataclass
class DecisionInput:
    """A decision as entered on the case page (validated by :func:`validate`)."""

    scope: str
    chosen_kind: str
    chosen: str
    rationale: str
    attendees: list[dict[str, str]] = field(default_factory=list)
    patient_preference: str | None = None
    deviation_code: str | None = None
    deviation_text: str | None = None


def parse_attendees(text: str) -> list[dict[str, str]]:
    """One attendee a line, ``Name — specialty`` (or ``Name, specialty`` / ``Name: specialty``)."""
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        for sep in (" — ", " - ", ",", ":", ";"):
            if sep in line:
                name, spec = line.split(sep, 1)
                out.append({"name": name.strip(), "specialty": spec.strip()})
                break
        else:
            out.append({"name": line, "specialty": ""})
    return out


def validate(d: DecisionInput, allowed: list[str], top_ranked: list[str]) -> bool:
    """Check a decision against the plan's choices; returns whether it deviates from the top."""
    if d.chosen_kind not in ("option", "strategy"):
        raise InvalidInputError(f"decision kind {d.chosen_kind!r} must be 'option' or 'strategy'.")
    if allowed and d.chosen not in allowed:
        raise InvalidInputError(f"{d.chosen!r} is not one of the options for {d.scope}: {', '.join(allowed)}.")
    if not d.rationale.strip():
        raise InvalidInputError("the rationale is empty; write why the board chose this option.")
    if not d.attendees:
        raise InvalidInputError("no attendees are listed; write one per line as 'Name — specialty'.")
    missing = [a["name"] for a in d.attendees if not a.get("specialty")]
    if missing:
        raise InvalidInputError(f"the specialty of {', '.join(missing)} is missing; write 'Name — specialty'.")
    deviates = bool(top_ranked) and d.chosen not in top_ranked
    if deviates:
        if not d.deviation_code:
            raise InvalidInputError(
                f"the decision ({d.chosen}) deviates from the top-ranked choice ({' / '.join(top_ranked)}): "
                "choose the reason for the deviation."
            )
        if d.deviation_code not in DEVIATION_REASONS:
            raise InvalidInputError(f"deviation reason {d.deviation_code!r} is unknown; choose one from the list.")
        if d.deviation_code == "other" and not (d.deviation_text or "").strip():
            raise InvalidInputError("the deviation reason is 'other': explain it in the text field.")
    return deviates


def record_decision(
    factory: sessionmaker[Session],
    case_id: int,
    d: DecisionInput,
    deviates: bool,
    top_ranked: list[str],
    user_id: int,
    job_key: str | None,
    on_commit: Any = None,
    retries: int = 50,
) -> Decision:
    """Insert the next version for (case, scope); retried when a concurrent insert took the number.

    ``on_commit(session, decision)`` runs inside the same transaction (the audit event).
    """
    last_exc: Exception | None = None
    for attempt in range(retries):
        try:
            with factory() as s, s.begin():
                prev = s.scalar(
                    select(Decision).where(Decision.case_id == case_id, Decision.scope == d.scope)
                    .order_by(Decision.version.desc()).limit(1)
                )
                row = Decision(
                    case_id=case_id, scope=d.scope, version=(prev.version + 1) if prev else 1,
                    supersedes_id=prev.id if prev else None, chosen_kind=d.chosen_kind, chosen=d.chosen,
                    top_ranked=" / ".join(top_ranked) or None, deviates=deviates,
                    deviation_code=d.deviation_code if deviates else None,
                    deviation_text=(d.deviation_text or None) if deviates else None,
                    rationale=d.rationale.strip(), attendees=d.attendees,
                    patient_preference=(d.patient_preference or "").strip() or None,
                    job_key=job_key, recorded_by=user_id,
                )
                s.add(row)
                s.flush()
                if on_commit is not None:
                    on_commit(s, row)
            return row
        except (IntegrityError, OperationalError) as exc:
            last_exc = exc
            time.sleep(0.005 * (attempt + 1))
    raise InvalidInputError(f"the decision could not be stored after {retries} attempts ({last_exc}); try again.")


def history(session: Session, case_id: int) -> list[Decision]:
    return list(session.scalars(select(Decision).where(Decision.case_id == case_id)
                                .order_by(Decision.scope, Decision.version)))


def latest(session: Session, case_id: int) -> dict[str, Decision]:
    sub = (select(Decision.scope, func.max(Decision.version).label("v")).where(Decision.case_id == case_id)
           .group_by(Decision.scope).subquery())
    rows = session.scalars(select(Decision).join(sub, (Decision.scope == sub.c.scope) & (Decision.version == sub.c.v))
                           .where(Decision.case_id == case_id))
    return {r.scope: r for r in rows}


def latest_of(history_rows: list[Decision]) -> dict[str, Decision]:
    """The newest version per scope among ``history_rows`` (what :func:`latest` selects, without a query)."""
    out: dict[str, Decision] = {}
    for d in history_rows:
        cur = out.get(d.scope)
        if cur is None or d.version > cur.version:
            out[d.scope] = d
    return out


def _iso(when: dt.datetime) -> str:
    return when.replace(tzinfo=dt.UTC).isoformat()


def decision_dict(d: Decision, username: str | None = None) -> dict[str, Any]:
    """A decision row as the JSON export and the API show it (and the FHIR bundle reads it)."""
    return {
        "id": d.id, "scope": d.scope, "version": d.version, "supersedes_id": d.supersedes_id,
        "chosen_kind": d.chosen_kind, "chosen": d.chosen, "top_ranked": d.top_ranked, "deviates": d.deviates,
        "deviation": ({"code": d.deviation_code, "text": d.deviation_text} if d.deviates else None),
        "rationale": d.rationale, "attendees": d.attendees, "patient_preference": d.patient_preference,
        "job_key": d.job_key, "recorded_by": username or d.recorded_by, "recorded_at": _iso(d.recorded_at),
    }
