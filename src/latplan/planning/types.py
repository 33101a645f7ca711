"""`TreatmentPlan`: the result of simulating one modality on one lesion.

Produced by the lesion-level planners in :mod:`latplan.planning` (which call the pure
engines in :mod:`latplan.physics`) and wrapped by :mod:`latplan.modalities`. Consumed by
the board (metrics), the report (grids → pictures) and the web app (overlays).

``metrics`` is JSON-serialisable and uses the plan.json keys of issue [D]:
thermal/ECT/IRE ``min_margin_mm``, ``coverage_percent``; IBT ``d100_gy``, ``d90_gy``,
``v100_percent``, ``oar_d1cc_gy`` {organ: Gy}, ``liver_v5gy_percent``; SBRT ``feasible``,
``limiting_organ``, ``bed_gy``; TARE ``activity_gbq``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from latplan.imaging.volume import Volume
from latplan.physics.dvh import DVHCurve

__all__ = ["DVHCurve", "TreatmentPlan"]


@dataclass
class TreatmentPlan:
    """A simulated option for one lesion. Grids share the case affine or carry their own."""

    modality: str
    lesion_id: str
    metrics: dict[str, Any]
    applicators: list[dict[str, Any]] = field(default_factory=list)
    zone: Volume | None = None            # predicted treated volume (bool), e.g. ablation zone or |E| ≥ threshold
    dose: Volume | None = None            # absorbed dose (Gy), IBT
    field_v_per_cm: Volume | None = None  # max |E| over electrode pairs (V/cm), ECT/IRE
    temperature_c: Volume | None = None   # peak temperature (°C), bioheat
    target: Volume | None = None          # the target the plan aims at (CTV or lesion + margin), bool
    heat_sink_lost: Volume | None = None  # bool: zone removed by the vessels' heat sink (thermal, Pennes)
    dvh: list[DVHCurve] = field(default_factory=list)
    prescription_gy: float | None = None
    margin_histogram: dict[str, float] | None = None  # {"<0": %, "0-5": %, ">=5": %} of tumour surface
    caveats: list[str] = field(default_factory=list)
    parameters: dict[str, Any] = field(default_factory=dict)
    engine: str = ""
    engine_version: str = ""
    verification: str = ""                # which reference tests the engine passes, in words
    runtime_s: float | None = None

    def summary(self) -> dict[str, Any]:
        """JSON-serialisable summary for plan.json ``simulation`` (grids left out)."""
        out: dict[str, Any] = dict(self.metrics)
        out["applicators"] = self.applicators
        if self.margin_histogram is not None:
            out["margin_histogram_percent"] = self.margin_histogram
        out["caveats"] = list(self.caveats)
        out["parameters"] = self.parameters
        out["engine"] = {"name": self.engine, "version": self.engine_version, "verification": self.verification}
        if self.runtime_s is not None:
            out["runtime_s"] = round(self.runtime_s, 3)
        return out
