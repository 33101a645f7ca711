"""One fixed colour table for every picture latplan draws (report and web app).

Why one module: a clinician learns that the portal vein is blue and the stomach gold
in the first report and must be able to trust that in every later one. Colours are
chosen for contrast on a grey CT window; lesions keep the red family and nothing else
is red, so the target is never confused with an organ at risk.

Colours are hex strings (``#rrggbb``) usable by matplotlib, HTML and CSS alike.
"""

from __future__ import annotations

import hashlib

from latplan.case.vocabulary import StructureRole, role_of
from latplan.errors import UnknownStructureError

__all__ = [
    "ISODOSE_COLOURS",
    "LESION_COLOURS",
    "MARGIN_BIN_COLOURS",
    "OVERLAY_COLOURS",
    "STRUCTURE_COLOURS",
    "colour_for",
    "isodose_colour",
    "lesion_colour",
]

#: lesion_1, lesion_2, ... in order; the red family is reserved for lesions
LESION_COLOURS: tuple[str, ...] = ("#ff2020", "#ff66cc", "#ff8080", "#d6004c", "#ff4d94", "#e60000")

#: canonical structure name → colour (see latplan.case.vocabulary.CANONICAL_STRUCTURES)
STRUCTURE_COLOURS: dict[str, str] = {
    "liver": "#e0b040",
    "portal_vein": "#3d6bff",
    "hepatic_artery": "#f4a582",
    "hepatic_vein_right": "#00c8ff",
    "hepatic_vein_middle": "#00c8ff",
    "hepatic_vein_left": "#00c8ff",
    "hepatic_veins": "#00c8ff",
    "inferior_vena_cava": "#8c7bff",
    "aorta": "#ff9966",
    "bile_duct": "#2fbf4f",
    "gallbladder": "#9acd32",
    "stomach": "#ffd700",
    "duodenum": "#ffa500",
    "small_bowel": "#ffbf80",
    "colon": "#c8a27a",
    "esophagus": "#e6c200",
    "kidney_right": "#b07aff",
    "kidney_left": "#b07aff",
    "heart": "#d98cd9",
    "lung_right": "#7fd6c8",
    "lung_left": "#7fd6c8",
    "diaphragm": "#fccde5",
    "ribs": "#f2f2f2",
    "spine": "#f2f2f2",
    "spinal_cord": "#ffff99",
    "body": "#9a9a9a",
    "spleen": "#80b1d3",
    "pancreas": "#fdb462",
    "adrenal_gland_right": "#b3de69",
    "adrenal_gland_left": "#b3de69",
}

#: fallback by role, for names outside the canonical table (e.g. a hospital's own label)
ROLE_COLOURS: dict[StructureRole, str] = {
    StructureRole.LESION: LESION_COLOURS[0],
    StructureRole.LIVER: STRUCTURE_COLOURS["liver"],
    StructureRole.LIVER_SEGMENT: "#c9c9a3",
    StructureRole.PORTAL_VEIN: STRUCTURE_COLOURS["portal_vein"],
    StructureRole.HEPATIC_VEIN: STRUCTURE_COLOURS["hepatic_veins"],
    StructureRole.INFERIOR_VENA_CAVA: STRUCTURE_COLOURS["inferior_vena_cava"],
    StructureRole.AORTA: STRUCTURE_COLOURS["aorta"],
    StructureRole.HEPATIC_ARTERY: STRUCTURE_COLOURS["hepatic_artery"],
    StructureRole.BILE_DUCT: STRUCTURE_COLOURS["bile_duct"],
    StructureRole.GALLBLADDER: STRUCTURE_COLOURS["gallbladder"],
    StructureRole.STOMACH: STRUCTURE_COLOURS["stomach"],
    StructureRole.DUODENUM: STRUCTURE_COLOURS["duodenum"],
    StructureRole.SMALL_BOWEL: STRUCTURE_COLOURS["small_bowel"],
    StructureRole.COLON: STRUCTURE_COLOURS["colon"],
    StructureRole.KIDNEY: STRUCTURE_COLOURS["kidney_right"],
    StructureRole.HEART: STRUCTURE_COLOURS["heart"],
    StructureRole.LUNG: STRUCTURE_COLOURS["lung_right"],
    StructureRole.DIAPHRAGM: STRUCTURE_COLOURS["diaphragm"],
    StructureRole.SPINAL_CORD: STRUCTURE_COLOURS["spinal_cord"],
    StructureRole.BONE: STRUCTURE_COLOURS["ribs"],
    StructureRole.BODY: STRUCTURE_COLOURS["body"],
    StructureRole.SPLEEN: STRUCTURE_COLOURS["spleen"],
    StructureRole.PANCREAS: STRUCTURE_COLOURS["pancreas"],
    StructureRole.ADRENAL: STRUCTURE_COLOURS["adrenal_gland_right"],
    StructureRole.ESOPHAGUS: STRUCTURE_COLOURS["esophagus"],
    StructureRole.ABLATION_ZONE: "#00ffb3",
}

#: overlays that are not anatomy
OVERLAY_COLOURS: dict[str, str] = {
    "zone": "#00ffb3",          # predicted ablation zone / |E| ≥ threshold
    "target": "#ff00ff",        # PTV / CTV / lesion + margin the plan aims at
    "min_margin": "#ffffff",    # marker of the minimal-margin point
    "applicator": "#e8e8e8",    # needles, catheters, electrodes
    "territory": "#4dd2ff",     # TACE/TARE treated territory (segments)
    "heat_sink": "#ffd400",     # zone lost to the heat sink of a vessel (thermal ablation)
}

#: isodose level (% of prescription) → colour; other levels use a fixed colormap
ISODOSE_COLOURS: dict[int, str] = {50: "#00e5ff", 80: "#33cc33", 100: "#ffff00", 150: "#ff8c00", 200: "#ff00ff"}

#: margin histogram bins (issue 6: < 0, 0–5, ≥ 5 mm): red / amber / green
MARGIN_BIN_COLOURS: dict[str, str] = {"<0": "#d62728", "0-5": "#ff9f1a", ">=5": "#2ca02c"}


def lesion_colour(name: str) -> str:
    """Colour of ``lesion_<n>`` (n ≥ 1); other lesion names hash into the lesion family."""
    suffix = name.rsplit("_", 1)[-1]
    if suffix.isdigit() and int(suffix) >= 1:
        return LESION_COLOURS[(int(suffix) - 1) % len(LESION_COLOURS)]
    return LESION_COLOURS[_stable_index(name, len(LESION_COLOURS))]


def colour_for(name: str, role: StructureRole | str | None = None) -> str:
    """Stable colour of a structure: canonical name first, then role, then a hash of the name.

    The hash fallback is deterministic (md5 of the name, not Python's salted ``hash``),
    so an unknown structure keeps its colour across runs and machines.
    """
    if name in STRUCTURE_COLOURS:
        return STRUCTURE_COLOURS[name]
    if role is None:
        try:
            role = role_of(name)
        except UnknownStructureError:
            role = None
    if role is not None:
        role = StructureRole(role)
        if role == StructureRole.LESION:
            return lesion_colour(name)
        if role in ROLE_COLOURS:
            return ROLE_COLOURS[role]
    palette = ("#8dd3c7", "#bebada", "#80b1d3", "#b3de69", "#fccde5", "#d9d9d9", "#bc80bd", "#ccebc5")
    return palette[_stable_index(name, len(palette))]


def isodose_colour(percent: float) -> str:
    """Colour of the isodose line at ``percent`` % of the prescription."""
    key = round(percent)
    if key in ISODOSE_COLOURS and abs(percent - key) < 1e-6:
        return ISODOSE_COLOURS[key]
    import matplotlib

    rgba = matplotlib.colormaps["turbo"](min(max(percent / 250.0, 0.0), 1.0))
    return matplotlib.colors.to_hex(rgba)


def _stable_index(name: str, n: int) -> int:
    return int(hashlib.md5(name.encode("utf-8")).hexdigest()[:8], 16) % n
