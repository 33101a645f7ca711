"""The modality registry: every :class:`~latplan.modalities.spec.ModalitySpec` of the five family
modules, in plan.json order (``ModalitySpec.order``)."""

from __future__ import annotations

from latplan.errors import UnknownModalityError
from latplan.modalities import electroporation, radiation, regional, surgical, thermal
from latplan.modalities.spec import ModalitySpec

__all__ = ["LESION_MODALITIES", "MODALITIES", "spec_for"]

#: code → spec, in plan.json order
MODALITIES: dict[str, ModalitySpec] = {
    s.code.value: s for s in sorted((*surgical.SPECS, *thermal.SPECS, *electroporation.SPECS, *radiation.SPECS,
                                     *regional.SPECS), key=lambda s: s.order)}
#: lesion-level options in plan.json order
LESION_MODALITIES: tuple[str, ...] = tuple(MODALITIES)


def spec_for(code: str) -> ModalitySpec:
    """The spec of ``code``; an unknown code names the known ones."""
    try:
        return MODALITIES[code]
    except KeyError:
        raise UnknownModalityError(f"unknown modality {code!r}; known: {', '.join(MODALITIES)}.") from None
