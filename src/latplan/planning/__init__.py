"""Lesion-level planners: place applicators/catheters, run the physics engines, report metrics.

Each planner takes the case, a lesion id, the lesion's measurements and parameters (the
clinical ones, e.g. target margin or prescription, arrive from :mod:`latplan.modalities`)
and returns a :class:`~latplan.planning.types.TreatmentPlan`.
"""

from latplan.planning.types import DVHCurve, TreatmentPlan

__all__ = ["DVHCurve", "TreatmentPlan"]
