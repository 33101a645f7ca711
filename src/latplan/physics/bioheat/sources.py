"""Bioheat sources: MWA teardrop and monopolar RFA |E|² deposition."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


# --------------------------------------------------------------------------------------------
# sources
# --------------------------------------------------------------------------------------------
def _coords_mm(shape: Sequence[int], spacing_kji_mm: Sequence[float]) -> list[np.ndarray]:
    return [np.arange(n, dtype=float)[(slice(None),) + (None,) * (2 - ax)] * spacing_kji_mm[ax]
            for ax, n in enumerate(shape)]


def mwa_source(shape: Sequence[int], spacing_kji_mm: Sequence[float], feed_kji_mm: Sequence[float],
               axis_kji: Sequence[float], *, penetration_mm: float = 12.0, elongation: float = 1.15,
               core_mm: float = 2.0) -> np.ndarray:
    """Normalised MWA deposition (W/m³ per absorbed W): teardrop around the feed point.

    ``feed_kji_mm`` is the feed point in grid mm (index × spacing), ``axis_kji`` the antenna
    direction (entry → tip). ``s = exp(−2 r_eff/δ)/max(r_eff, r₀)²``, r_eff² = ρ² + (z/γ)².
    """
    a = np.asarray(axis_kji, float)
    a /= np.linalg.norm(a)
    ck, cj, ci = _coords_mm(shape, spacing_kji_mm)
    dk, dj, di = ck - feed_kji_mm[0], cj - feed_kji_mm[1], ci - feed_kji_mm[2]
    z = dk * a[0] + dj * a[1] + di * a[2]
    r2 = dk**2 + dj**2 + di**2
    rho2 = np.maximum(r2 - z**2, 0.0)
    reff = np.sqrt(rho2 + (z / elongation) ** 2)
    s = np.exp(-2.0 * reff / penetration_mm) / np.maximum(reff, core_mm) ** 2
    vox_m3 = float(np.prod(spacing_kji_mm)) * 1e-9
    s /= s.sum() * vox_m3
    out: np.ndarray = s.astype(np.float32)
    return out


def rfa_source(shape: Sequence[int], spacing_kji_mm: Sequence[float], tip_kji_mm: Sequence[float],
               axis_kji: Sequence[float], *, active_length_mm: float = 30.0, radius_mm: float = 0.75,
               n_charges: int = 31) -> tuple[np.ndarray, np.ndarray]:
    """Normalised monopolar RFA deposition ∝ |E|² of a uniformly charged active segment.

    Returns (source W/m³ per delivered W, electrode voxel mask). The generator's sensor is
    the tissue shell around the electrode (see :func:`simulate_heating`).
    """
    a = np.asarray(axis_kji, float)
    a /= np.linalg.norm(a)
    ck, cj, ci = _coords_mm(shape, spacing_kji_mm)
    ek = np.zeros(np.broadcast_shapes(ck.shape, cj.shape, ci.shape))
    ej = np.zeros_like(ek)
    ei = np.zeros_like(ek)
    tip = np.asarray(tip_kji_mm, float)
    for s in np.linspace(0.0, active_length_mm, n_charges):
        p = tip - s * a
        dk, dj, di = ck - p[0], cj - p[1], ci - p[2]
        r = np.sqrt(dk**2 + dj**2 + di**2)
        r3 = np.maximum(r, radius_mm) ** 3
        ek += dk / r3
        ej += dj / r3
        ei += di / r3
    q = ek**2 + ej**2 + ei**2
    # distance to the segment for the electrode mask and the near-field clamp
    dk, dj, di = ck - tip[0], cj - tip[1], ci - tip[2]
    z = -(dk * a[0] + dj * a[1] + di * a[2])
    zc = np.clip(z, 0.0, active_length_mm)
    dist = np.sqrt((dk + zc * a[0]) ** 2 + (dj + zc * a[1]) ** 2 + (di + zc * a[2]) ** 2)
    h = float(np.max(spacing_kji_mm))
    electrode = dist <= max(radius_mm, 0.5 * h) + 1e-9
    qmax = q[~electrode].max() if np.any(~electrode) else q.max()
    q = np.where(electrode, 0.0, np.minimum(q, qmax))
    vox_m3 = float(np.prod(spacing_kji_mm)) * 1e-9
    q /= q.sum() * vox_m3
    return q.astype(np.float32), electrode



def antenna_shaft_mask(shape: Sequence[int], spacing_kji_mm: Sequence[float], tip_kji_mm: Sequence[float],
                       axis_kji: Sequence[float], *, radius_mm: float = 1.2) -> np.ndarray:
    """Voxels of a (cooled) antenna: within ``radius_mm`` (at least half a voxel) of the half-line
    from the tip back along the shaft (``axis_kji`` = entry → tip) to the grid's edge."""
    a = np.asarray(axis_kji, float)
    a /= np.linalg.norm(a)
    ck, cj, ci = _coords_mm(shape, spacing_kji_mm)
    dk, dj, di = ck - tip_kji_mm[0], cj - tip_kji_mm[1], ci - tip_kji_mm[2]
    back = np.maximum(-(dk * a[0] + dj * a[1] + di * a[2]), 0.0)   # distance back from the tip along the shaft
    d2 = (dk + back * a[0]) ** 2 + (dj + back * a[1]) ** 2 + (di + back * a[2]) ** 2
    r = max(radius_mm, 0.5 * float(np.max(spacing_kji_mm))) + 1e-6
    out: np.ndarray = np.asarray(d2 <= r * r)
    return out
