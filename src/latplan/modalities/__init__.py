"""Therapies behind one interface: ``assess(site, patient, rules) -> Assessment`` and ``plan(site, case)``.

Modules: resection, rfa, mwa, cryo, hifu, ect, ire, ibt, sbrt, tace, tare, hai. Systemic
therapy is context for whole-patient strategies (``latplan.board.strategies``), not a
lesion option.
"""

from latplan.modalities import cryo, ect, hai, hifu, ibt, ire, mwa, resection, rfa, sbrt, tace, tare
from latplan.modalities.base import Assessment, CannotAssess, Reason, Site, assess_with_rules

#: lesion-level options in plan.json order
LESION_MODALITIES = ("resection", "rfa", "mwa", "cryo", "hifu", "ect", "ire", "ibt", "sbrt", "tace", "tare", "hai")
MODULES = {m.CODE: m for m in (resection, rfa, mwa, cryo, hifu, ect, ire, ibt, sbrt, tace, tare, hai)}

__all__ = ["LESION_MODALITIES", "MODULES", "Assessment", "CannotAssess", "Reason", "Site", "assess_with_rules"]
