"""Regional (intra-arterial) therapy: TACE and hepatic arterial infusion (HAI); assessed by rules,
no simulation in this release. (Radioembolisation has a dose planner: :mod:`latplan.modalities.radiation`.)"""

from __future__ import annotations

from latplan.case.vocabulary import Modality
from latplan.modalities.spec import ModalitySpec, TherapyFamily

__all__ = ["HAI", "SPECS", "TACE"]

TACE = ModalitySpec(Modality.TACE, TherapyFamily.REGIONAL, 9, "transarterial chemoembolisation")
HAI = ModalitySpec(Modality.HAI, TherapyFamily.REGIONAL, 11, "hepatic arterial infusion")

SPECS = (TACE, HAI)
