"""Surgery: liver resection (assessed by rules; no simulation in this release)."""

from __future__ import annotations

from latplan.case.vocabulary import Modality
from latplan.modalities.spec import ModalitySpec, TherapyFamily

__all__ = ["RESECTION", "SPECS"]

RESECTION = ModalitySpec(Modality.RESECTION, TherapyFamily.SURGICAL, 0, "surgical resection")

SPECS = (RESECTION,)
