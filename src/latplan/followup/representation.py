"""Re-presentation to the board: a plannable :class:`~latplan.case.Case` for a follow-up timepoint.

The timepoint's image and label map become the planning input (its residual or recurrent
tumour is the lesion to plan), lesion names are mapped to the baseline ids (identity kept
across timepoints), and the patient record gains every treatment delivered before the
timepoint date as ``prior_therapies`` — radiation treatments (IBT, SBRT, TARE) also as
``prior_radiotherapy`` with site, dose and fractions — so the board's rules for
re-irradiation limits and repeat ablation ([D]) fire.

Decisions: labels ``lesion_N_enhancing`` become role ``other`` (they describe a lesion, they
are not one); a new lesion keeps its name unless it collides with a baseline id, then it takes
the next free ``lesion_<n>``. ``patient.extra['followup']`` records the timepoint.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from latplan.case.labels import LabelTable
from latplan.case.model import Case
from latplan.case.patient import PriorRadiotherapy, PriorTherapy
from latplan.case.vocabulary import Modality, StructureRole
from latplan.errors import LatplanError
from latplan.followup.models import TreatmentRecord
from latplan.followup.timepoints import (
    ENHANCING_SUFFIX,
    load_baseline,
    load_patient,
    load_timepoint,
    load_treatments,
)

__all__ = ["case_for_timepoint", "prior_therapies_from_treatments", "write_timepoint_case"]

_PRIOR_KINDS = {m.value for m in Modality} - {"hifu"}


def prior_therapies_from_treatments(
    treatments: list[TreatmentRecord],
) -> tuple[list[PriorTherapy], list[PriorRadiotherapy]]:
    """Patient-record entries for delivered treatments (site = lesion id and stated site)."""
    prior: list[PriorTherapy] = []
    radio: list[PriorRadiotherapy] = []
    for t in treatments:
        # "liver" in the site text: the board's features ([D], knowledge.features) recognise a
        # liver site by words such as liver/hepat/segment
        site = f"liver {t.lesion}" + (f" ({t.site})" if t.site else "")
        kind = t.modality.value if t.modality.value in _PRIOR_KINDS else "other"
        prior.append(PriorTherapy(kind=kind, date=t.date, site=site, regimen=None))  # type: ignore[arg-type]
        if t.is_radiation:
            radio.append(PriorRadiotherapy(site=site, dose_gy=t.prescription_gy, fractions=t.fractions, date=t.date,
                                           modality=t.modality.value))
    return prior, radio


def _next_free(taken: set[str]) -> str:
    n = 1 + max([int(m.group(1)) for x in taken if (m := re.fullmatch(r"lesion_(\d+)", x))] or [0])
    return f"lesion_{n}"


def case_for_timepoint(case_dir: str | Path, label: str) -> Case:
    """The timepoint as a planning Case with prior treatments of the same sites in the patient record."""
    case_dir = Path(case_dir)
    tp = load_timepoint(case_dir, label)
    try:
        base = load_baseline(case_dir)
        baseline_lesions, patient = base.label_table.lesion_names(), base.patient
    except LatplanError:  # baseline image unreadable: the patient record is still needed
        baseline_lesions, patient = [], load_patient(case_dir)
    delivered = [t for t in load_treatments(case_dir) if t.date <= tp.spec.date]
    prior, radio = prior_therapies_from_treatments(delivered)
    taken = set(baseline_lesions)
    mapping: dict[int, Any] = {}
    renamed: dict[str, str] = {}
    for e in tp.label_table.entries:
        name, role = e.name, e.role
        if role == StructureRole.LESION and name.endswith(ENHANCING_SUFFIX):
            role = StructureRole.OTHER
        elif role == StructureRole.LESION:
            bid = tp.baseline_id(name, baseline_lesions)
            if bid is not None:
                name = bid
            elif name in taken or name in renamed.values():
                name = _next_free(taken | set(renamed.values()))
            renamed[e.name] = name
        mapping[e.value] = {"name": name, "role": role.value}
    table = LabelTable.from_mapping(mapping)
    extra = dict(patient.extra)
    extra["followup"] = {
        "timepoint": label,
        "date": tp.spec.date.isoformat(),
        "lesion_names": renamed,
        "treated_lesions": sorted({t.lesion for t in delivered}),
    }
    patient = patient.model_copy(update={
        "prior_therapies": [*(patient.prior_therapies or []), *prior] or None,
        "prior_radiotherapy": [*(patient.prior_radiotherapy or []), *radio] or None,
        "extra": extra,
    })
    return Case(patient, tp.image, tp.labels, table, source_dir=tp.folder,
                image_modality=(tp.spec.image_modality or "CT").upper())


def write_timepoint_case(case_dir: str | Path, label: str, out_dir: str | Path, overwrite: bool = False) -> Path:
    """Write :func:`case_for_timepoint` as a case folder that ``latplan plan`` reads."""
    from latplan.imaging.case_folder import save_case_folder

    return save_case_folder(case_for_timepoint(case_dir, label), out_dir, overwrite=overwrite)
