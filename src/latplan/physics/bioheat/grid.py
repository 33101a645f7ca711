"""Bioheat grid helpers: spacing, property tables, stability limit, time step, zone size,
and the one lazy door to the optional CuPy path."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from latplan.errors import InvalidInputError
from latplan.physics.bioheat import gpu as bioheat_gpu
from latplan.physics.bioheat.data import Tissue, thermal_constants


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------
def _spacing_m(spacing_kji_mm: Sequence[float]) -> np.ndarray:
    sp = np.asarray(spacing_kji_mm, dtype=float)
    if sp.shape != (3,) or np.any(~np.isfinite(sp)) or np.any(sp <= 0):
        raise InvalidInputError(f"spacing_kji_mm must be three positive numbers (mm); got {sp.tolist()}.")
    return sp / 1000.0


def _tables(tissues: Sequence[Tissue], labels: np.ndarray) -> dict[str, np.ndarray]:
    if len(tissues) == 0 or len(tissues) > 255:
        raise InvalidInputError(f"need 1–255 tissues; got {len(tissues)}.")
    if labels.dtype != np.uint8:
        labels = labels.astype(np.uint8)
    if int(labels.max()) >= len(tissues):
        raise InvalidInputError(
            f"label value {int(labels.max())} has no tissue: the table has {len(tissues)} entries (0-based)."
        )
    blood = thermal_constants()["blood"]
    rho_b_c_b = float(blood["density_kg_m3"]) * float(blood["heat_capacity_j_kg_k"])
    k = np.array([t.conductivity_w_m_k for t in tissues], dtype=np.float64)
    kface = (2.0 * k[:, None] * k[None, :] / (k[:, None] + k[None, :])).astype(np.float32)
    return {
        "labels": np.ascontiguousarray(labels),
        "k": k.astype(np.float32),
        "kf": np.array([t.frozen_conductivity_w_m_k for t in tissues], np.float32),
        "kface": kface,
        "rc": np.array([t.rho_c for t in tissues], np.float32),
        "rcf": np.array([t.density_kg_m3 * t.frozen_heat_capacity_j_kg_k for t in tissues], np.float32),
        "irc": np.array([1.0 / t.rho_c for t in tissues], np.float32),
        "perf": np.array([rho_b_c_b * t.perfusion_per_s for t in tissues], np.float32),
        "stop": np.array([t.perfusion_stops_when_coagulated for t in tissues], np.bool_),
        "fixed": np.array([t.fixed for t in tissues], np.bool_),
    }


def _gpu_stepper(backend: str, *arrays: Any) -> Any:
    """The CUDA stepper for ``backend`` 'gpu' / 'auto' (None = use the CPU kernel)."""
    if backend not in ("cpu", "gpu", "auto"):
        raise InvalidInputError(f"backend must be 'cpu', 'gpu' or 'auto'; got {backend!r}.")
    if backend == "cpu":
        return None
    if backend == "auto" and not bioheat_gpu.gpu_available():
        return None
    return bioheat_gpu.GpuHeatStepper(*arrays)


def _face_conductivities(kface: np.ndarray, lab: np.ndarray, ih: np.ndarray) -> tuple[np.ndarray, ...]:
    """Face conductivities towards +k, +j, +i (harmonic mean of the two voxels, W/m/K) divided
    by h² (→ W/m³/K); the last slab along each axis is unused (outer faces are Dirichlet)."""
    out = []
    for ax in range(3):
        f = np.zeros(lab.shape, np.float32)
        lo = [slice(None)] * 3
        hi = [slice(None)] * 3
        lo[ax] = slice(0, -1)
        hi[ax] = slice(1, None)
        f[tuple(lo)] = kface[lab[tuple(lo)], lab[tuple(hi)]] * ih[ax]
        out.append(f)
    return tuple(out)


def stability_limit_s(tissues: Sequence[Tissue], spacing_kji_mm: Sequence[float], *, frozen: bool = False) -> float:
    """Largest stable explicit step (s): 1 / max over tissues of 2α Σ 1/h².

    The perfusion/vessel sink term is integrated implicitly in both kernels, so it does not
    limit the step; ``frozen`` uses the frozen conductivity and heat capacity (cryo).
    """
    h = _spacing_m(spacing_kji_mm)
    s = float(np.sum(2.0 / h**2))
    worst = 0.0
    for t in tissues:
        if t.fixed:
            continue
        k = max(t.conductivity_w_m_k, t.frozen_conductivity_w_m_k) if frozen else t.conductivity_w_m_k
        rc = min(t.rho_c, t.density_kg_m3 * t.frozen_heat_capacity_j_kg_k) if frozen else t.rho_c
        worst = max(worst, k / rc * s)
    return 1.0 / worst if worst > 0 else math.inf


def _choose_dt(duration_s: float, limit_s: float, dt_s: float | None) -> tuple[float, int]:
    if not duration_s > 0:
        raise InvalidInputError(f"duration must be > 0 s; got {duration_s}.")
    if dt_s is not None:
        if dt_s > limit_s * (1 + 1e-9):
            raise InvalidInputError(
                f"time step {dt_s:g} s exceeds the explicit stability limit {limit_s:.4g} s for this grid; "
                "use a smaller step or leave dt_s unset."
            )
        n = max(1, math.ceil(duration_s / dt_s - 1e-9))
    else:
        n = max(1, math.ceil(duration_s / (0.95 * limit_s)))
    return duration_s / n, n


def zone_dimensions_mm(zone: np.ndarray, spacing_kji_mm: Sequence[float], axis_kji: Sequence[float],
                       through_kji: Sequence[float] | None = None) -> dict[str, float]:
    """Length (along ``axis_kji``) and the two widths across it of a boolean zone, in mm.

    Extents are measured as the projected span of the zone's voxels plus one voxel.
    """
    pts = np.argwhere(zone).astype(float) * np.asarray(spacing_kji_mm)
    if pts.size == 0:
        return {"length_mm": 0.0, "width_mm": 0.0, "depth_mm": 0.0, "volume_ml": 0.0}
    a = np.asarray(axis_kji, float)
    a /= np.linalg.norm(a)
    e = np.zeros(3)
    e[int(np.argmin(np.abs(a)))] = 1.0
    u = np.cross(a, e)
    u /= np.linalg.norm(u)
    v = np.cross(a, u)
    h = float(np.mean(spacing_kji_mm))
    out = {}
    for name, d in (("length_mm", a), ("width_mm", u), ("depth_mm", v)):
        p = pts @ d
        out[name] = float(p.max() - p.min() + h)
    out["volume_ml"] = float(zone.sum()) * float(np.prod(spacing_kji_mm)) / 1000.0
    return out

