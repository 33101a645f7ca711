"""Board context for plan.json that the pipeline adds beside the options (issue [I] items 4, 7, 8).

Why: the liver-function and staging facts that gate options (Child-Pugh computed beside the recorded score,
ALBI, BCLC derived vs recorded, Milan / up-to-7, the planned resection's remnant, the systemic context) must
be visible to the board in one place, and each lesion's conditions ("verify clearance of X") listed once.
The pipeline (``latplan.board.proposal``, hcore) calls :func:`patient_context` and :func:`lesion_conditions`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .options import Option
from .systemic import systemic_context


def patient_context(pctx: Mapping[str, Any]) -> dict[str, Any]:
    """plan.json ``patient.board_context``: the gates' inputs, computed values and disagreements."""
    flags = [f for f in ((pctx.get("child_pugh_detail") or {}).get("disagreement"), pctx.get("bclc_disagreement")) if f]
    note = systemic_context(pctx)
    return {
        "child_pugh": pctx.get("child_pugh_detail"),
        "albi": {"score": pctx.get("albi_score"), "grade": pctx.get("albi_grade"),
                 "source": "Johnson PJ et al. J Clin Oncol 2015;33:550-558"},
        "bclc": {"in_force": pctx.get("bclc"), "derived": pctx.get("bclc_derived"),
                 "source": "Reig M et al. J Hepatol 2022;76:681-693 (recorded stage wins)"},
        "transplant_criteria": {"milan": pctx.get("milan"), "up_to_7": pctx.get("up_to_7")},
        "resection": {"plan": pctx.get("resection_plan"), "remnant_percent": pctx.get("resection_flr_percent"),
                      "anatomic_remnant_percent": pctx.get("flr_percent")},
        "systemic": {"text": note.text, "evidence_level": note.evidence_level},
        "last_therapy": pctx.get("last_therapy"),
        "flags": flags,
    }


def lesion_conditions(options: Sequence[Option]) -> list[str]:
    """Every condition of a lesion's options, once (plan.json ``lesions[].conditions``)."""
    seen: dict[str, None] = {}
    for o in options:
        for c in o.conditions:
            seen.setdefault(c, None)
    return list(seen)
