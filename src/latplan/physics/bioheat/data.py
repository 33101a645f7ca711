"""Bioheat data: the tissue-property file, tissue tables, vessel sinks and the result type."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from latplan.errors import InvalidInputError, SourceDataError

DATA_FILE = Path(__file__).resolve().parent.parent / "data" / "ablation" / "tissue_properties.yaml"
GAS_CONSTANT_J_MOL_K = 8.314462618
KELVIN = 273.15
ENGINE_VERSION = "bioheat-1.0"


@cache
def thermal_constants() -> dict[str, Any]:
    """The tissue-property data file (blood, Arrhenius, cryo, tissues, vessels), with citation."""
    try:
        data = yaml.safe_load(DATA_FILE.read_text())
    except (OSError, yaml.YAMLError) as exc:  # pragma: no cover - packaging error
        raise SourceDataError(f"cannot read {DATA_FILE}: {exc}") from exc
    for key in ("citation", "blood", "arrhenius", "cryo", "tissues", "vessels"):
        if key not in data:
            raise SourceDataError(f"{DATA_FILE} lacks the '{key}' section.")
    out: dict[str, Any] = data
    return out


@dataclass(frozen=True)
class Tissue:
    """Thermal properties of one label (SI units).

    ``perfusion_per_s`` ω (s⁻¹); ``perfusion_stops_when_coagulated``: True for tissue and
    small vessels; ``fixed`` voxels keep their temperature (Dirichlet), e.g. a cryoprobe.
    """

    name: str
    density_kg_m3: float
    heat_capacity_j_kg_k: float
    conductivity_w_m_k: float
    perfusion_per_s: float = 0.0
    perfusion_stops_when_coagulated: bool = True
    fixed: bool = False
    frozen_conductivity_w_m_k: float = 2.0
    frozen_heat_capacity_j_kg_k: float = 1860.0

    @property
    def rho_c(self) -> float:
        return self.density_kg_m3 * self.heat_capacity_j_kg_k


def default_tissues() -> dict[str, Tissue]:
    """Liver, tumour, blood and soft tissue from the data file (Go-Smart constants)."""
    out = {}
    for name, vals in thermal_constants()["tissues"].items():
        rho, c, k, w, kf, cf = (float(v) for v in vals)
        out[name] = Tissue(name, rho, c, k, w, True, False, kf, cf)
    return out


def vessel_tissue(calibre_mm: float, *, heated_length_mm: float | None = None,
                  grid_mm: float | None = None) -> Tissue:
    """Blood voxel of a vessel of ``calibre_mm`` acting as a heat sink (see module doc).

    Renewal rate r = u(D)/L_heated · min(1, L_e/L_heated) with u = u_ref·D/D_ref and the
    thermal equilibration length L_e = u·a²/(4α_b); thin vessels (< occlusion calibre) stop
    when coagulated.

    ``grid_mm`` (the simulation grid's spacing): the wall's convective heat transfer. Heat
    reaches the bulk blood through the boundary layer, h_w = Nu·k_b/D (laminar flow, Nu = 3.66;
    Chato, J Biomech Eng 1980;102:110; as the vessel wall condition of Kröger et al., Comput Aided
    Surg 2006 / Consiglieri 2003). On a voxel grid the blood voxel's conductivity is set to
    k = h_w·Δx/2, so that the face between a tissue and a blood voxel (harmonic mean) has the
    resistance Δx/(2k_t) + 1/h_w — the tissue half-cell plus the wall film — the same on every
    grid. Without ``grid_mm`` the blood conductivity is kept (the wall transfer is then the
    grid's: k_b/(Δx/2), ≈ 2× the film value at 1 mm).
    """
    if not calibre_mm > 0:
        raise InvalidInputError(f"vessel calibre must be > 0 mm; got {calibre_mm}.")
    c = thermal_constants()
    v = c["vessels"]
    blood = default_tissues()["blood"]
    u = float(v["reference_velocity_m_s"]) * calibre_mm / float(v["reference_calibre_mm"])
    length_m = (heated_length_mm or float(v["heated_length_mm"])) / 1000.0
    # thermal equilibration (Chen & Holmes 1980): blood in a thin vessel takes the tissue
    # temperature within L_e = u·a²/(4α_b) (a = radius); only the fraction L_e/L of the
    # heated length still carries cold blood → thin vessels are weak sinks
    alpha_b = blood.conductivity_w_m_k / blood.rho_c
    l_eq = u * (0.5 * calibre_mm / 1000.0) ** 2 / (4.0 * alpha_b)
    rate = u / length_m * min(1.0, l_eq / length_m)
    k_wall = blood.conductivity_w_m_k
    if grid_mm is not None:
        if not grid_mm > 0:
            raise InvalidInputError(f"grid_mm must be > 0 mm; got {grid_mm}.")
        h_wall = float(v["wall_nusselt"]) * blood.conductivity_w_m_k / (calibre_mm / 1000.0)
        k_wall = min(blood.conductivity_w_m_k, h_wall * grid_mm / 2000.0)
    # expressed as an equivalent perfusion of blood (ρ_b c_b r), in the vessel's own voxels
    return Tissue(
        f"vessel_{calibre_mm:g}mm",
        blood.density_kg_m3,
        blood.heat_capacity_j_kg_k,
        k_wall,
        perfusion_per_s=rate,
        perfusion_stops_when_coagulated=calibre_mm < float(v["occlusion_calibre_mm"]),
    )


# --------------------------------------------------------------------------------------------
# result
# --------------------------------------------------------------------------------------------
@dataclass
class BioheatResult:
    """Fields (k, j, i) of one simulation on its grid (spacing ``spacing_kji_mm``)."""

    temperature_c: np.ndarray
    peak_temperature_c: np.ndarray
    damage: np.ndarray | None                 # Arrhenius Ω (or CEM43 minutes when cem43=True)
    zone: np.ndarray                          # bool: Ω ≥ 1 (CEM43 ≥ threshold; cryo: T_min ≤ lethal)
    spacing_kji_mm: tuple[float, float, float]
    dt_s: float
    steps: int
    duration_s: float
    wall_s: float
    power_w: np.ndarray = field(default_factory=lambda: np.zeros(0))   # delivered power per step
    min_temperature_c: np.ndarray | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def zone_volume_ml(self) -> float:
        return float(self.zone.sum()) * float(np.prod(self.spacing_kji_mm)) / 1000.0

    @property
    def voxel_updates_per_s(self) -> float:
        return float(self.info.get("voxel_updates", 0)) / max(self.wall_s, 1e-12)

