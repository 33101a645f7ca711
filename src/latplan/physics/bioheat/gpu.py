"""Optional CUDA path of the Pennes heating step (CuPy), the same scheme as the numba kernel.

Why: a tumor board wants several bioheat runs per lesion (heat sink with/without vessels,
settings), and a GPU does one 10-min MWA on a 100 mm cube at 1 mm in well under a second.
It is optional: CI and most hospital machines have no GPU, so :func:`simulate_heating`
keeps the CPU kernel as the default and the reference; the GPU step is checked against the
same analytic tests and against the CPU result (tests/physics/test_bioheat.py).

Scheme (identical to ``bioheat.kernels._step_heat``): explicit conduction and source, implicit
perfusion/vessel term, per-voxel coefficients dt/ρc and ρ_b c_b ω, uniform conductivity or
face conductivities / h², latent heat by the enthalpy map of ``kernels._enthalpy_to_t``, peak above min(40 °C, gate), Arrhenius (double
precision exponent) or CEM43 damage, coagulation flag in label bit 7 that stops perfusion.
One thread per voxel; outer faces are never written (Dirichlet). No active-box shortcut.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import numpy as np

from latplan.errors import NotAvailableError

__all__ = ["GpuHeatStepper", "gpu_available"]

_KERNEL = r"""
extern "C" __global__ void step_heat(
    const float* __restrict__ t_old, float* __restrict__ t_new, float* __restrict__ damage,
    float* __restrict__ peak, unsigned char* __restrict__ lab, const float* __restrict__ q, float q_scale,
    float k_uniform, const float* __restrict__ kfk, const float* __restrict__ kfj,
    const float* __restrict__ kfi, const float* __restrict__ av, float* __restrict__ wv,
    const unsigned char* __restrict__ stop, float t_blood, float dt, double ln_a, double ea_r,
    float hot_c, float gate_c, int cem43, float* __restrict__ lat, const float* __restrict__ vcap,
    float t_lo, float t_hi, int latent_on, int nk, int nj, int ni)
{
    long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    long long sj = ni, sk = (long long)nj * ni;
    if (idx >= sk * nk) return;
    int i = (int)(idx % ni);
    int j = (int)((idx / ni) % nj);
    int k = (int)(idx / sk);
    if (i == 0 || j == 0 || k == 0 || i == ni - 1 || j == nj - 1 || k == nk - 1) return;
    float t = t_old[idx];
    float cond;
    if (k_uniform > 0.0f) {
        cond = k_uniform * (t_old[idx - sk] + t_old[idx + sk] + t_old[idx - sj] + t_old[idx + sj]
                            + t_old[idx - 1] + t_old[idx + 1] - 6.0f * t);
    } else {
        cond = kfk[idx] * (t_old[idx + sk] - t) + kfk[idx - sk] * (t_old[idx - sk] - t)
             + kfj[idx] * (t_old[idx + sj] - t) + kfj[idx - sj] * (t_old[idx - sj] - t)
             + kfi[idx] * (t_old[idx + 1] - t) + kfi[idx - 1] * (t_old[idx - 1] - t);
    }
    float a = av[idx];
    float w = wv[idx];
    float tn = (t + a * (cond + w * t_blood + q_scale * q[idx])) / (1.0f + a * w);
    if (latent_on) {
        float e = tn + lat[idx];
        float cap = vcap[idx];
        float w = t_hi - t_lo;
        float t_mid = t_lo + (e - t_lo) * (w / (w + cap));
        tn = fmaxf(fminf(e, t_mid), e - cap);
        lat[idx] = e - tn;
    }
    t_new[idx] = tn;
    if (tn > hot_c) {
        if (tn > peak[idx]) peak[idx] = tn;
        if (tn >= gate_c) {
            float om = damage[idx];
            if (om < 1e6f) {
                if (cem43) {
                    float r = tn >= 43.0f ? 0.5f : 0.25f;
                    om += dt / 60.0f * powf(r, 43.0f - tn);
                } else {
                    om += (float)((double)dt * exp(ln_a - ea_r / ((double)tn + 273.15)));
                }
                damage[idx] = om;
                unsigned char l = lab[idx];
                if (om >= 1.0f && l < 0x80) {
                    lab[idx] = l | 0x80;
                    if (stop[l]) wv[idx] = 0.0f;
                }
            }
        }
    }
}
"""


@cache
def _cupy() -> Any:
    try:
        import cupy  # type: ignore[import-not-found]
    except Exception as exc:  # ImportError, or a CUDA library that fails to load
        raise NotAvailableError(f"the GPU bioheat path needs CuPy and a CUDA GPU ({type(exc).__name__}: {exc}); "
                                "use backend='cpu'.") from None
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            raise NotAvailableError("CuPy is installed but no CUDA GPU is visible; use backend='cpu'.")
    except NotAvailableError:
        raise
    except Exception as exc:
        raise NotAvailableError(f"CuPy cannot reach a CUDA GPU ({exc}); use backend='cpu'.") from None
    return cupy


def gpu_available() -> bool:
    """True when CuPy imports and sees at least one CUDA device."""
    try:
        _cupy()
    except NotAvailableError:
        return False
    return True


class GpuHeatStepper:
    """Device copies of the heating fields and one RawKernel launch per step.

    Arrays are (k, j, i) numpy arrays as prepared by ``simulate_heating`` (float32, uint8 labels).
    """

    def __init__(self, t_old: np.ndarray, damage: np.ndarray, peak: np.ndarray, lab: np.ndarray, q: np.ndarray,
                 k_uniform: float, kfk: np.ndarray, kfj: np.ndarray, kfi: np.ndarray, av: np.ndarray,
                 wv: np.ndarray, stop: np.ndarray, lat: np.ndarray, vcap: np.ndarray) -> None:
        cp = _cupy()
        self._cp = cp
        self.shape = t_old.shape
        self.t_old = cp.asarray(t_old)
        self.t_new = self.t_old.copy()   # outer faces keep the initial temperature in both buffers
        self.damage = cp.asarray(damage)
        self.peak = cp.asarray(peak)
        self.lab = cp.asarray(lab)
        self.q = cp.asarray(q)
        self.k_uniform = np.float32(k_uniform)
        dummy = cp.zeros(1, cp.float32)
        self.kf = tuple(cp.asarray(a) if a.size == t_old.size else dummy for a in (kfk, kfj, kfi))
        self.av = cp.asarray(av)
        self.wv = cp.asarray(wv)
        self.stop = cp.asarray(stop.astype(np.uint8))
        self.lat = cp.asarray(lat)   # 1-voxel dummies when there is no latent heat (never read then)
        self.vcap = cp.asarray(vcap)
        self._kernel = cp.RawKernel(_KERNEL, "step_heat")
        self._threads = 256
        self._blocks = (t_old.size + self._threads - 1) // self._threads

    def step(self, q_scale: float, t_blood: float, dt: float, ln_a: float, ea_r: float, hot_c: float,
             gate_c: float, cem43: bool, t_lo: float, t_hi: float, latent_on: bool) -> None:
        nk, nj, ni = self.shape
        self._kernel((self._blocks,), (self._threads,), (
            self.t_old, self.t_new, self.damage, self.peak, self.lab, self.q, np.float32(q_scale),
            self.k_uniform, *self.kf, self.av, self.wv, self.stop, np.float32(t_blood), np.float32(dt),
            np.float64(ln_a), np.float64(ea_r), np.float32(hot_c), np.float32(gate_c), np.int32(bool(cem43)),
            self.lat, self.vcap, np.float32(t_lo), np.float32(t_hi), np.int32(bool(latent_on)),
            np.int32(nk), np.int32(nj), np.int32(ni)))
        self.t_old, self.t_new = self.t_new, self.t_old

    def max_at(self, index: tuple[np.ndarray, ...]) -> float:
        """Largest current temperature (°C) at the given voxel indices (the RFA sensor)."""
        if getattr(self, "_sensor_key", None) is not index:
            self._sensor = tuple(self._cp.asarray(a) for a in index)
            self._sensor_key = index
        return float(self.t_old[self._sensor].max())

    def synchronize(self) -> None:
        self._cp.cuda.Device().synchronize()

    def latent(self) -> np.ndarray:
        """The latent store (K-equivalents) back on the host."""
        out: np.ndarray = self._cp.asnumpy(self.lat)
        return out

    def fetch(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(temperature, peak, damage) back on the host."""
        cp = self._cp
        return cp.asnumpy(self.t_old), cp.asnumpy(self.peak), cp.asnumpy(self.damage)
