"""Therapies as a typed registry: one :class:`~latplan.modalities.spec.ModalitySpec` per modality
(code, family, planner, verdict, parameters from :mod:`latplan.knowledge`), one module per family:
:mod:`~latplan.modalities.thermal` (rfa, mwa, cryo, hifu), :mod:`~latplan.modalities.electroporation`
(ect, ire), :mod:`~latplan.modalities.radiation` (ibt, sbrt, tare), :mod:`~latplan.modalities.surgical`
(resection), :mod:`~latplan.modalities.regional` (tace, hai). Eligibility comes from the rule set
(``assess``); simulation from the spec's planner (:mod:`latplan.modalities.simulate`).

Strategy steps may also name whole-patient steps: :class:`~latplan.modalities.steps.StepModality`.
"""

from latplan.modalities.base import Assessment, CannotAssess, Reason, Site, assess_with_rules
from latplan.modalities.registry import LESION_MODALITIES, MODALITIES, spec_for
from latplan.modalities.simulate import ModalityRunner
from latplan.modalities.spec import ModalitySpec, Planner, TherapyFamily
from latplan.modalities.steps import StepModality

#: code → the board's handle (``assess`` and ``plan``), in plan.json order
MODULES: dict[str, ModalityRunner] = {code: ModalityRunner(spec) for code, spec in MODALITIES.items()}

__all__ = ["LESION_MODALITIES", "MODALITIES", "MODULES", "Assessment", "CannotAssess", "ModalityRunner",
           "ModalitySpec", "Planner", "Reason", "Site", "StepModality", "TherapyFamily", "assess_with_rules",
           "spec_for"]
