"""Coded concepts of the domain: structure roles and names, modalities, eligibility, primaries.

One vocabulary for phantoms, real label maps and measurement output (issue [A]).
The API accepts ``Enum | str`` and coerces (highdicom habit), see :func:`coerce`.
"""

from __future__ import annotations

from enum import Enum, StrEnum
from typing import TypeVar

from latplan.errors import UnknownStructureError

E = TypeVar("E", bound=Enum)


class StructureRole(StrEnum):
    """What a labelled structure is, independent of how a label table spells it."""

    LESION = "lesion"
    LIVER = "liver"
    LIVER_SEGMENT = "liver_segment"
    PORTAL_VEIN = "portal_vein"
    HEPATIC_VEIN = "hepatic_vein"
    INFERIOR_VENA_CAVA = "inferior_vena_cava"
    AORTA = "aorta"
    HEPATIC_ARTERY = "hepatic_artery"
    BILE_DUCT = "bile_duct"
    GALLBLADDER = "gallbladder"
    STOMACH = "stomach"
    DUODENUM = "duodenum"
    SMALL_BOWEL = "small_bowel"
    COLON = "colon"
    KIDNEY = "kidney"
    HEART = "heart"
    LUNG = "lung"
    DIAPHRAGM = "diaphragm"
    SPINAL_CORD = "spinal_cord"
    BONE = "bone"
    BODY = "body"
    SPLEEN = "spleen"
    PANCREAS = "pancreas"
    ADRENAL = "adrenal"
    ESOPHAGUS = "esophagus"
    ABLATION_ZONE = "ablation_zone"
    OTHER = "other"


#: roles that are blood vessels (heat sinks, bleeding risk)
VESSEL_ROLES = frozenset(
    {
        StructureRole.PORTAL_VEIN,
        StructureRole.HEPATIC_VEIN,
        StructureRole.INFERIOR_VENA_CAVA,
        StructureRole.AORTA,
        StructureRole.HEPATIC_ARTERY,
    }
)
#: radiation-sensitive hollow organs (stomach, duodenum, bowel)
HOLLOW_ORGAN_ROLES = frozenset(
    {StructureRole.STOMACH, StructureRole.DUODENUM, StructureRole.SMALL_BOWEL, StructureRole.COLON, StructureRole.ESOPHAGUS}
)

#: canonical structure names → role (phantom and measurement output use these names)
CANONICAL_STRUCTURES: dict[str, StructureRole] = {
    "liver": StructureRole.LIVER,
    **{f"liver_segment_{s}": StructureRole.LIVER_SEGMENT for s in ("1", "2", "3", "4a", "4b", "5", "6", "7", "8")},
    "liver_segment_4": StructureRole.LIVER_SEGMENT,
    "portal_vein": StructureRole.PORTAL_VEIN,
    "hepatic_artery": StructureRole.HEPATIC_ARTERY,
    "hepatic_vein_right": StructureRole.HEPATIC_VEIN,
    "hepatic_vein_middle": StructureRole.HEPATIC_VEIN,
    "hepatic_vein_left": StructureRole.HEPATIC_VEIN,
    "hepatic_veins": StructureRole.HEPATIC_VEIN,
    "inferior_vena_cava": StructureRole.INFERIOR_VENA_CAVA,
    "aorta": StructureRole.AORTA,
    "bile_duct": StructureRole.BILE_DUCT,
    "gallbladder": StructureRole.GALLBLADDER,
    "stomach": StructureRole.STOMACH,
    "duodenum": StructureRole.DUODENUM,
    "small_bowel": StructureRole.SMALL_BOWEL,
    "colon": StructureRole.COLON,
    "esophagus": StructureRole.ESOPHAGUS,
    "kidney_right": StructureRole.KIDNEY,
    "kidney_left": StructureRole.KIDNEY,
    "heart": StructureRole.HEART,
    "lung_right": StructureRole.LUNG,
    "lung_left": StructureRole.LUNG,
    "diaphragm": StructureRole.DIAPHRAGM,
    "ribs": StructureRole.BONE,
    "spine": StructureRole.BONE,
    "spinal_cord": StructureRole.SPINAL_CORD,
    "body": StructureRole.BODY,
    "spleen": StructureRole.SPLEEN,
    "pancreas": StructureRole.PANCREAS,
    "adrenal_gland_right": StructureRole.ADRENAL,
    "adrenal_gland_left": StructureRole.ADRENAL,
}

#: Couinaud segment codes as written in specs and output
COUINAUD_SEGMENTS = ("1", "2", "3", "4a", "4b", "5", "6", "7", "8")


class Modality(StrEnum):
    """Lower-case modality codes used in plan.json (issue [D])."""

    RESECTION = "resection"
    RFA = "rfa"
    MWA = "mwa"
    CRYO = "cryo"
    HIFU = "hifu"
    ECT = "ect"
    IRE = "ire"
    IBT = "ibt"
    SBRT = "sbrt"
    TACE = "tace"
    TARE = "tare"
    HAI = "hai"
    SYSTEMIC = "systemic"


class Eligibility(StrEnum):
    """Ordered from most to least favourable."""

    INDICATED = "indicated"
    ELIGIBLE = "eligible"
    RELATIVE_CONTRAINDICATION = "relative_contraindication"
    CONTRAINDICATED = "contraindicated"


class PrimaryTumour(StrEnum):
    COLORECTAL = "colorectal"
    HCC = "hcc"
    CHOLANGIOCARCINOMA = "cholangiocarcinoma"
    BREAST = "breast"
    LUNG = "lung"
    KIDNEY = "kidney"
    MELANOMA = "melanoma"
    NEUROENDOCRINE = "neuroendocrine"
    OTHER = "other"


def coerce(enum_type: type[E], value: E | str) -> E:
    """Return ``value`` as a member of ``enum_type``; strings are matched case-insensitively."""
    if isinstance(value, enum_type):
        return value
    try:
        return enum_type(str(value).strip().lower())
    except ValueError:
        allowed = ", ".join(m.value for m in enum_type)  # type: ignore[attr-defined]
        raise UnknownStructureError(
            f"{value!r} is not a valid {enum_type.__name__}; expected one of: {allowed}."
        ) from None


def role_of(name: str) -> StructureRole:
    """Role of a canonical structure name; lesions are named ``lesion`` or ``lesion_<id>``."""
    if name == "lesion" or name.startswith("lesion_"):
        return StructureRole.LESION
    try:
        return CANONICAL_STRUCTURES[name]
    except KeyError:
        raise UnknownStructureError(
            f"unknown structure name {name!r}. Use a canonical name (e.g. liver, portal_vein, "
            "hepatic_vein_right, stomach, lesion_1) or give its role in the label table."
        ) from None
