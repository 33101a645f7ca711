"""An independent, deliberately plain TG-43U1 point-dose calculation for second checks in tests.

Written from the formalism of Rivard et al., Med Phys 31:633 (2004), eqs. (1), (4) and Appendix C,
without any code of ``latplan.physics.tg43``: the source YAML is read with ``yaml`` directly, the
geometry factor uses the angle β between the vectors to the two ends of the active length (the
engine uses an arctangent form), g_L is interpolated with ``numpy.interp`` (log-linear beyond the
table), F(r, θ) with ``scipy.interpolate.RegularGridInterpolator`` (nearest r/θ outside the table).
Dose rate in cGy h⁻¹ per U; positions in mm; dwell times in s; dose in Gy.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml
from scipy.interpolate import RegularGridInterpolator

DEFAULT_SOURCE = Path(__file__).resolve().parents[2] / "src/latplan/physics/data/microselectron-v2.clrp.yaml"


class PlainTG43:
    def __init__(self, path: Path = DEFAULT_SOURCE) -> None:
        d = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        self.lam = float(d["dose_rate_constant_cgy_per_h_per_u"])
        self.length_cm = float(d["active_length_cm"])
        self.g_r = np.asarray(d["radial_dose_function"]["r_cm"], float)
        self.g_v = np.asarray(d["radial_dose_function"]["g_l"], float)
        af = d["anisotropy_function"]
        self.f_r = np.asarray(af["r_cm"], float)
        self.f_t = np.asarray(af["theta_deg"], float)
        tab = np.array([[np.nan if v is None else float(v) for v in row] for row in af["f"]])
        for row in tab:  # unpublished entries: nearest published value along r (used only below 0.5 cm)
            ok = np.flatnonzero(~np.isnan(row))
            for j in np.flatnonzero(np.isnan(row)):
                row[j] = row[ok[np.argmin(np.abs(ok - j))]]
        self.f = RegularGridInterpolator((self.f_t, self.f_r), tab)

    def _g(self, r: np.ndarray) -> np.ndarray:
        out = np.interp(r, self.g_r, self.g_v)
        far = r > self.g_r[-1]
        if far.any():
            slope = np.log(self.g_v[-1] / self.g_v[-2]) / (self.g_r[-1] - self.g_r[-2])
            out[far] = self.g_v[-1] * np.exp(slope * (r[far] - self.g_r[-1]))
        return out

    def rate_per_u(self, points_mm: np.ndarray, pos_mm: np.ndarray, axis: np.ndarray) -> np.ndarray:
        """Dose rate per unit S_K (cGy h⁻¹ U⁻¹) at points from one dwell (centre ``pos_mm``, unit axis to the tip)."""
        v = (np.asarray(points_mm, float) - pos_mm) / 10.0          # cm
        r = np.linalg.norm(v, axis=1)
        cos_t = np.clip(v @ axis / r, -1.0, 1.0)
        theta = np.degrees(np.arccos(cos_t))
        half = 0.5 * self.length_cm * axis
        a, b = v - half, v + half                                    # vectors from the two source ends
        cos_beta = np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
        beta = np.arccos(np.clip(cos_beta, -1.0, 1.0))
        sin_t = np.sqrt(np.maximum(1.0 - cos_t**2, 0.0))
        on_axis = sin_t < 1e-9
        geo = np.where(on_axis, 1.0 / np.maximum(r**2 - 0.25 * self.length_cm**2, 1e-12),
                       beta / (self.length_cm * r * np.where(on_axis, 1.0, sin_t)))
        geo0 = 2.0 * np.arctan(0.5 * self.length_cm) / self.length_cm   # G_L(1 cm, 90°)
        rr = np.clip(r, self.f_r[0], self.f_r[-1])
        tt = np.clip(theta, self.f_t[0], self.f_t[-1])
        return self.lam * geo / geo0 * self._g(r) * self.f(np.stack([tt, rr], axis=1))

    def dose_gy(self, points_mm: np.ndarray, dwells_mm: np.ndarray, axes: np.ndarray, times_s: np.ndarray,
                sk_u: float) -> np.ndarray:
        total = np.zeros(len(points_mm))
        for p, u, t in zip(dwells_mm, axes, times_s, strict=True):
            if t > 0:
                total += self.rate_per_u(points_mm, p, u / np.linalg.norm(u)) * t
        return total * sk_u / 3600.0 / 100.0
