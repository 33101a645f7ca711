"""How pages read a plan.json: choices per scope, strategy labels, the planning form's parameters."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from latplan.board.preferences import CRITERIA
from latplan.errors import InvalidInputError


def preference_criteria() -> tuple[str, ...]:
    """The board's preference criteria (``latplan.board.preferences.CRITERIA``)."""
    return tuple(CRITERIA)


def planning_parameters(form: Mapping[str, str]) -> dict[str, Any]:
    """Job parameters from the plan form: ``pref_<criterion>`` weights 0–5 (blank = from case.yaml);
    ``quick=1`` → ``simulate: False`` (a rules-only preview without the physics simulations)."""
    prefs: dict[str, float] = {}
    for c in preference_criteria():
        raw = str(form.get(f"pref_{c}", "") or "").strip()
        if not raw:
            continue
        try:
            value = float(raw)
        except ValueError as exc:
            raise InvalidInputError(f"the weight of {c.replace('_', ' ')} ({raw[:20]!r}) is not a number; use 0 to 5.") from exc
        if not 0.0 <= value <= 5.0:
            raise InvalidInputError(f"the weight of {c.replace('_', ' ')} is {value:g}; use 0 (unimportant) to 5 (most important).")
        prefs[c] = value
    params: dict[str, Any] = {"preferences": prefs} if prefs else {}
    if str(form.get("quick", "")) == "1":
        params["simulate"] = False  # rules, ranking and report only: seconds instead of minutes
    return params


def sorted_options(lesion: dict[str, Any]) -> list[dict[str, Any]]:
    """Ranked options first (1, 2, …), unranked (contraindicated) after, in plan order."""
    opts = list(lesion.get("options") or [])
    return sorted(opts, key=lambda o: (o.get("rank") is None, o.get("rank") or 0))


def strategy_label(s: dict[str, Any]) -> str:
    steps = sorted(s.get("steps") or [], key=lambda st: st.get("order", 0))
    body = " → ".join(f"{st.get('modality')}({','.join(map(str, st.get('lesion_ids') or []))})" for st in steps)
    return f"#{s.get('rank')} {body}"


def options_and_strategies(plan: dict[str, Any] | None) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Allowed choices and top-ranked ones per scope (lesion ids and 'patient')."""
    allowed: dict[str, list[str]] = {}
    top: dict[str, list[str]] = {}
    for le in (plan or {}).get("lesions", []):
        opts = le.get("options") or []
        allowed[str(le["id"])] = [str(o["modality"]) for o in opts]
        top[str(le["id"])] = [str(o["modality"]) for o in opts if o.get("rank") == 1]
    strategies = (plan or {}).get("strategies", [])
    allowed["patient"] = [strategy_label(s) for s in strategies]
    top["patient"] = [strategy_label(s) for s in strategies if s.get("rank") == 1]
    return allowed, top
