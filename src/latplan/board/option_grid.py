"""Plain-language option grid data for the patient (reading age ≈ 12); [E] renders it.

Why: the patient's grid must carry the same facts as the board's plan.json (fit, stay,
sessions, repeatability, local control with its source) in short everyday words, without
adding numbers that plan.json does not have. Sentences are short; no jargon.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

FIT_WORDS = {
    "indicated": "A good fit for this spot.",
    "eligible": "Possible for this spot.",
    "relative_contraindication": "Possible, but with extra risk or less chance of success.",
    "contraindicated": "Not suitable for this spot.",
}


def _days(n: float) -> str:
    if n <= 0:
        return "You can go home the same day."
    if n <= 1:
        return "About one night in hospital."
    if n < 7:
        return f"About {round(n)} nights in hospital."
    return "About one week or more in hospital."


def _sessions(n: int) -> str:
    return "One treatment." if n <= 1 else f"About {n} treatment visits."


def _repeat(level: int) -> str:
    return {1: "Hard to repeat.", 2: "Can be repeated only in some cases.", 3: "Can sometimes be repeated.",
            4: "Can usually be repeated.", 5: "Can be repeated if the tumour comes back."}.get(level, "Ask your team.")


def _works(lc: Mapping[str, Any] | None) -> str:
    """A figure only when it is compared on the same endpoint and time point as the other rows (issue [I] 12)."""
    if not lc or lc.get("value_percent") is None or not lc.get("time_point_months"):
        return "We do not have a number we can compare. Ask your team."
    if not lc.get("comparable"):
        return "Studies measured this in a different way or at a different time. It cannot be compared. Ask your team."
    months = lc["time_point_months"]
    when = f"{round(months / 12)} years" if months >= 24 else f"{round(months)} months"
    if lc.get("endpoint") == "overall_survival":
        return f"In studies, about {round(lc['value_percent'])} in 100 people treated this way were alive after {when}."
    word = "did not grow back" if lc.get("endpoint") == "local_control" else "had no visible tumour left"
    return f"In studies, about {round(lc['value_percent'])} in 100 treated tumours {word} after {when}."


def option_grid(lesions: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One grid per lesion ('spot n'): rows in rank order, contraindicated rows last."""
    grids = []
    for n, le in enumerate(lesions, start=1):
        rows = []
        for o in sorted(le["options"], key=lambda o: (o["rank"] is None, o["rank"] or 0)):
            rows.append({
                "modality": o["modality"], "rank": o["rank"],
                "fit": (f"Another team decides this spot: the {o['handoff'].split(':')[0]}." if o.get("handoff")
                        else FIT_WORDS[o["eligibility"]]),
                "stay": _days(float(o["hospital_stay_days"])), "sessions": _sessions(int(o["sessions"])),
                "repeat": _repeat(int(o["repeatability"]["level"])), "works": _works(o.get("local_control")),
                "source": (o.get("local_control") or {}).get("citation")
                if (o.get("local_control") or {}).get("comparable") else None,
                "check_needed": "Your team still needs to check some facts." if o["needs_review"] else None,
            })
        grids.append({"spot": n, "lesion_id": le["id"], "rows": rows})
    return grids
