"""Record a delivered treatment from a :class:`~latplan.planning.types.TreatmentPlan`.

Closing the loop: the plan the board chose (applicators, dwell plan, settings, predicted zone)
becomes a ``treatments.yaml`` record, and its predicted zone is saved as a NIfTI on the
baseline grid, so the post-procedure margin check can compare predicted and observed zones.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np

from latplan.case.vocabulary import Modality
from latplan.errors import InvalidInputError
from latplan.followup._io import read_yaml, write_volume, write_yaml
from latplan.followup.models import Complication, TreatmentRecord, TreatmentsFile
from latplan.planning.types import TreatmentPlan

__all__ = ["append_treatment", "record_treatment"]


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dt.date):
        return obj.isoformat()
    return obj


def append_treatment(case_dir: str | Path, record: TreatmentRecord) -> Path:
    """Append one record to ``treatments.yaml`` (validated; the file is created when absent)."""
    path = Path(case_dir) / "treatments.yaml"
    raw = read_yaml(path) if path.is_file() else None
    existing = TreatmentsFile.model_validate(raw or {}).treatments
    data = {"treatments": [t.model_dump(mode="json", exclude_none=True) for t in [*existing, record]]}
    write_yaml(data, path)
    return path


def record_treatment(
    case_dir: str | Path,
    plan: TreatmentPlan,
    date: dt.date,
    *,
    site: str | None = None,
    complications: list[Complication] | None = None,
    notes: str | None = None,
) -> TreatmentRecord:
    """Record ``plan`` as delivered on ``date``: predicted zone → ``predicted_zones/<lesion>_<modality>_<date>.nii.gz``.

    The zone (bool) is the plan's ``zone``; for radiation plans without a zone, the prescription
    isodose volume (dose ≥ prescription) is saved instead.
    """
    case_dir = Path(case_dir)
    zone = plan.zone
    if zone is None and plan.dose is not None and plan.prescription_gy:
        zone = plan.dose.with_array(plan.dose.array >= plan.prescription_gy)
    rel = None
    if zone is not None:
        rel = f"predicted_zones/{plan.lesion_id}_{plan.modality}_{date.isoformat()}.nii.gz"
        write_volume(zone.with_array(np.asarray(zone.array) != 0), case_dir / rel, np.uint8)
    if not plan.modality:
        raise InvalidInputError("the plan has no modality; cannot record it as a treatment.")
    dwell = plan.parameters.get("dwell_plan") if isinstance(plan.parameters, dict) else None
    record = TreatmentRecord(
        lesion=plan.lesion_id,
        modality=Modality(plan.modality),
        date=date,
        site=site,
        applicators=_jsonable(plan.applicators) or None,
        dwell_plan=_jsonable(dwell) if isinstance(dwell, dict) else None,
        settings=_jsonable({k: v for k, v in plan.parameters.items() if k != "dwell_plan"}) or None,
        prescription_gy=plan.prescription_gy,
        predicted_zone=rel,
        complications=complications,
        notes=notes,
    )
    append_treatment(case_dir, record)
    return record
