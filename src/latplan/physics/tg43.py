"""AAPM TG-43U1 HDR/PDR dose engine: 2-D line-source formalism with a per-dwell source axis.

Why: liver catheters are placed free-hand and are not parallel, so every dwell position
carries its own source axis (the catheter direction at that dwell) and θ is computed per
dwell–point pair. Template engines that assume parallel needles cannot plan these.

Formalism (Rivard et al., Med Phys 31:633, 2004; HEBD update Perez-Calatayud et al.,
Med Phys 39:2904, 2012)::

    Ḋ(r, θ) / S_K = Λ · G_L(r, θ) / G_L(1 cm, 90°) · g_L(r) · F(r, θ)      [cGy h⁻¹ U⁻¹]

with θ measured from the source axis, θ = 0° towards the tip (the direction vector of a
dwell points towards the catheter tip), 180° towards the cable.

Interpolation and extrapolation (decisions, see docs/radiation-physics.md):

* g_L(r): linear in r inside the table; below the first tabulated radius the first value
  (nearest neighbour); beyond the last radius log-linear extrapolation from the last two
  points (TG-43U1 Appendix C).
* F(r, θ): bilinear in (r, θ) inside the table; outside the tabulated r range the nearest
  tabulated radius (nearest neighbour, TG-43U1 App. C). ``null`` entries (no published
  value, inside or too near the source) are filled with the nearest published value of
  the same θ row along r.
* Near the source: by default distances are clamped to ``r_min_cm = max(L/2 + 0.05 cm, 0.1 cm)``
  (along the same direction). :meth:`SourceModel.with_catheter_clamp` limits the clamp to the
  inside of the catheter (the IBT planner uses it with the catheter's outer radius), so tissue
  1–2 mm from a source gets its TG-43 dose. Points that close lie inside the catheter/applicator, not
  in tissue; the clamp keeps the line-source geometry factor finite (it diverges on the
  axis at r = L/2) and keeps dose matrices bounded for the optimiser.

Units: positions in mm at the API (LPS), internally cm; S_K in U (1 U = 1 cGy cm² h⁻¹);
times in s; dose in Gy.

Fast kernels (numba): a direct kernel applying exactly the formalism above (g_L and F read from
uniform grids resampled once per source that hold every published knot, so the interpolation is
the published one; atan2 by a rational approximation so the dwell loop vectorises; pairs inside
the clamp radius or beyond the last g_L radius take the scalar path), and a lookup
kernel that bilinearly interpolates tabulated Ḋ·r² on uniform along/away (z, y) grids
(a fine grid near the source, a coarse one further out) and computes pairs closer than
``near_direct_cm`` directly. Its accuracy against the direct formalism is tested.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import numba as nb
import numpy as np
import numpy.typing as npt
import yaml

from latplan.errors import InvalidInputError, SourceDataError
from latplan.imaging.volume import Volume

__all__ = [
    "AlongAwayLookup",
    "SourceModel",
    "along_away_table",
    "decayed_air_kerma_strength_u",
    "default_source",
    "dose_gy",
    "dose_matrix_gy_per_s",
    "dose_on_volume_gy",
    "dose_rate_per_sk",
    "dose_rate_per_sk_rtheta",
    "format_along_away_csv",
    "load_source",
]

#: consensus QA grid (cm): rows z = 7 … −7 (+ towards the tip), columns y = 0 … 7
QA_Z_CM = (7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.5, 1.0, 0.5, 0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -5.0, -6.0, -7.0)
QA_Y_CM = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0)

#: numba's parallel kernels are launched one at a time: the "workqueue" threading layer (used when
#: neither OpenMP nor TBB is available) aborts on concurrent launches from several Python threads
#: (e.g. planners run in threads by the board); the kernels are parallel themselves anyway
_KERNEL_LOCK = threading.Lock()

_SECONDS_PER_HOUR = 3600.0
_CGY_PER_GY = 100.0


# ------------------------------------------------------------------------------------------------
# Source model
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class SourceModel:
    """TG-43 parameters of one source, normalised once (nulls filled, arrays checked).

    Attributes carry units in their names: Λ in cGy h⁻¹ U⁻¹, L and radii in cm, θ in degrees.
    """

    name: str
    dose_rate_constant_cgy_per_h_per_u: float
    active_length_cm: float
    g_r_cm: np.ndarray
    g_l: np.ndarray
    f_r_cm: np.ndarray
    f_theta_deg: np.ndarray
    f_table: np.ndarray  # (n_theta, n_r), nulls filled
    nuclide: str = ""
    kind: str = ""
    dataset: str = ""
    path: str = ""
    meta: dict[str, Any] = field(default_factory=dict, repr=False)
    #: catheter clamp (see :meth:`with_catheter_clamp`): None → the spherical r_min clamp
    catheter_radius_cm: float | None = None

    @property
    def r_min_cm(self) -> float:
        """Distance below which r is clamped (cm): inside the catheter, not tissue (spherical clamp);
        with a catheter clamp, the catheter's outer radius."""
        if self.catheter_radius_cm is not None:
            return self.catheter_radius_cm
        return max(0.5 * self.active_length_cm + 0.05, 0.1)

    def with_catheter_clamp(self, radius_cm: float) -> SourceModel:
        """The same source with the near-source clamp limited to the inside of the catheter.

        Points closer to the source axis than ``radius_cm`` (the catheter's outer radius) and within
        L/2 + radius of the active centre along it lie inside the catheter: they are evaluated on the
        catheter surface (y = radius, same z). Every tissue point (outside the catheter) gets the
        unclamped TG-43 dose; points along the lumen beyond the source ends keep the on-axis formula.
        """
        if not (np.isfinite(radius_cm) and radius_cm > 0):
            raise InvalidInputError(f"catheter radius must be > 0 cm; got {radius_cm}.")
        meta = {k: v for k, v in self.meta.items() if k not in ("_packed", "_uniform")}
        return SourceModel(self.name, self.dose_rate_constant_cgy_per_h_per_u, self.active_length_cm, self.g_r_cm,
                           self.g_l, self.f_r_cm, self.f_theta_deg, self.f_table, self.nuclide, self.kind, self.dataset,
                           self.path, meta, float(radius_cm))

    @property
    def g0(self) -> float:
        """G_L(r0 = 1 cm, θ0 = 90°) (cm⁻²)."""
        length = self.active_length_cm
        if length <= 0:
            return 1.0
        return 2.0 * math.atan(0.5 * length) / length

    def packed(self) -> tuple[np.ndarray, ...]:
        """Arrays for the numba kernels: (params, g_r, g_l, f_r, f_theta, f_table, index maps).

        ``params`` = [Λ, L, G0, r_min, then (x0, 1/δ, offset, length) of the index maps of
        g_r, f_r and θ]; the maps replace binary searches by one lookup (cell width δ ≤ half
        the smallest knot spacing, so at most one knot lies in a cell).
        """
        cached = self.meta.get("_packed")
        if cached is not None:
            packed: tuple[np.ndarray, ...] = cached
            return packed
        params = [self.dose_rate_constant_cgy_per_h_per_u, self.active_length_cm, self.g0, self.r_min_cm]
        maps = []
        off = 0
        for grid in (self.g_r_cm, self.f_r_cm, self.f_theta_deg):
            grid = np.asarray(grid, float)
            if grid.size < 2:
                m = np.zeros(1, np.int64)
                params += [float(grid[0]), 1.0, float(off), 1.0]
            else:
                delta = float(np.min(np.diff(grid))) / 2.0
                n = int(np.ceil((grid[-1] - grid[0]) / delta)) + 1
                x = grid[0] + delta * np.arange(n)
                m = np.clip(np.searchsorted(grid, x, side="right") - 1, 0, grid.size - 2).astype(np.int64)
                params += [float(grid[0]), 1.0 / delta, float(off), float(n)]
            maps.append(m)
            off += m.size
        params.append(1.0 if self.catheter_radius_cm is not None else 0.0)  # params[16]: clamp mode
        out = (
            np.array(params, dtype=np.float64),
            np.ascontiguousarray(self.g_r_cm, dtype=np.float64),
            np.ascontiguousarray(self.g_l, dtype=np.float64),
            np.ascontiguousarray(self.f_r_cm, dtype=np.float64),
            np.ascontiguousarray(self.f_theta_deg, dtype=np.float64),
            np.ascontiguousarray(self.f_table, dtype=np.float64),
            np.concatenate(maps),
        )
        self.meta["_packed"] = out
        return out


def _float_array(values: Any, what: str, path: str) -> np.ndarray:
    try:
        arr = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        raise SourceDataError(f"{path}: {what} must be a list of numbers; got {values!r:.80}.") from None
    if arr.ndim != 1 or arr.size < 1 or not np.all(np.isfinite(arr)):
        raise SourceDataError(f"{path}: {what} must be a non-empty list of finite numbers.")
    return arr


def _require_increasing(arr: np.ndarray, what: str, path: str) -> None:
    if arr.size > 1 and np.any(np.diff(arr) <= 0):
        raise SourceDataError(f"{path}: {what} must be strictly increasing; got {arr.tolist()}.")


def _fill_nulls(table: np.ndarray, path: str) -> np.ndarray:
    """Fill NaN (null) entries by the nearest published value of the same θ row along r."""
    out = table.copy()
    for i in range(out.shape[0]):
        row = out[i]
        ok = np.flatnonzero(np.isfinite(row))
        if ok.size == 0:
            # whole row missing: take the nearest row in θ that has values (rare)
            continue
        for j in np.flatnonzero(~np.isfinite(row)):
            row[j] = row[ok[np.argmin(np.abs(ok - j))]]
    for i in range(out.shape[0]):
        if not np.all(np.isfinite(out[i])):
            ok_rows = [k for k in range(out.shape[0]) if np.all(np.isfinite(table[k][np.isfinite(table[k])]))
                       and np.any(np.isfinite(table[k]))]
            if not ok_rows:
                raise SourceDataError(f"{path}: the anisotropy table has no published values.")
            nearest = min(ok_rows, key=lambda k: abs(k - i))
            out[i] = out[nearest]
    return out


def source_from_mapping(data: dict[str, Any], path: str = "<mapping>") -> SourceModel:
    """Build a :class:`SourceModel` from the ``shared/data/tg43`` YAML layout (parsed)."""
    if not isinstance(data, dict):
        raise SourceDataError(f"{path}: a source file must be a YAML mapping; got {type(data).__name__}.")
    missing = [k for k in ("dose_rate_constant_cgy_per_h_per_u", "active_length_cm", "radial_dose_function",
                           "anisotropy_function") if k not in data]
    if missing:
        raise SourceDataError(
            f"{path}: missing field(s) {', '.join(missing)}. A TG-43 source file needs Λ "
            "(dose_rate_constant_cgy_per_h_per_u), L (active_length_cm), radial_dose_function {r_cm, g_l} and "
            "anisotropy_function {r_cm, theta_deg, f}."
        )
    try:
        lam = float(data["dose_rate_constant_cgy_per_h_per_u"])
        length = float(data["active_length_cm"])
    except (TypeError, ValueError):
        raise SourceDataError(f"{path}: Λ and active_length_cm must be numbers.") from None
    if not (0.1 < lam < 10.0):
        raise SourceDataError(f"{path}: dose-rate constant Λ = {lam} cGy h⁻¹ U⁻¹ is implausible (expected ≈ 1.1 for Ir-192).")
    if not (0.0 <= length < 2.0):
        raise SourceDataError(f"{path}: active length {length} cm is implausible (expected 0 … 2 cm).")
    rdf = data["radial_dose_function"] or {}
    af = data["anisotropy_function"] or {}
    raw_r, raw_g = rdf.get("r_cm"), rdf.get("g_l")
    if isinstance(raw_r, list) and isinstance(raw_g, list) and len(raw_r) == len(raw_g):
        # radii without a published g_L (null) are dropped
        keep = [i for i, v in enumerate(raw_g) if v is not None]
        raw_r, raw_g = [raw_r[i] for i in keep], [raw_g[i] for i in keep]
    g_r = _float_array(raw_r, "radial_dose_function.r_cm", path)
    g_l = _float_array(raw_g, "radial_dose_function.g_l", path)
    if g_r.size != g_l.size:
        raise SourceDataError(f"{path}: radial_dose_function has {g_r.size} radii but {g_l.size} g_L values.")
    _require_increasing(g_r, "radial_dose_function.r_cm", path)
    if np.any(g_l <= 0):
        raise SourceDataError(f"{path}: g_L values must be positive (log-linear extrapolation needs it).")
    f_r = _float_array(af.get("r_cm"), "anisotropy_function.r_cm", path)
    f_th = _float_array(af.get("theta_deg"), "anisotropy_function.theta_deg", path)
    _require_increasing(f_r, "anisotropy_function.r_cm", path)
    _require_increasing(f_th, "anisotropy_function.theta_deg", path)
    raw_f = af.get("f")
    if not isinstance(raw_f, list) or len(raw_f) != f_th.size:
        raise SourceDataError(
            f"{path}: anisotropy_function.f must have one row per theta ({f_th.size}); got "
            f"{len(raw_f) if isinstance(raw_f, list) else type(raw_f).__name__}."
        )
    table = np.full((f_th.size, f_r.size), np.nan)
    for i, row in enumerate(raw_f):
        if not isinstance(row, list) or len(row) != f_r.size:
            raise SourceDataError(f"{path}: anisotropy row for θ = {f_th[i]}° must have {f_r.size} values (one per r).")
        for j, v in enumerate(row):
            if v is not None:
                try:
                    table[i, j] = float(v)
                except (TypeError, ValueError):
                    raise SourceDataError(f"{path}: anisotropy value {v!r} at θ = {f_th[i]}° is not a number.") from None
    finite = table[np.isfinite(table)]
    if finite.size == 0 or np.any(finite <= 0) or np.any(finite > 2):
        raise SourceDataError(f"{path}: anisotropy values must lie in (0, 2].")
    return SourceModel(
        name=str(data.get("name", Path(path).stem)),
        dose_rate_constant_cgy_per_h_per_u=lam,
        active_length_cm=length,
        g_r_cm=g_r,
        g_l=g_l,
        f_r_cm=f_r,
        f_theta_deg=f_th,
        f_table=_fill_nulls(table, path),
        nuclide=str(data.get("nuclide", "")),
        kind=str(data.get("kind", "")),
        dataset=str(data.get("dataset", "")),
        path=path,
        meta={k: v for k, v in data.items() if k not in ("radial_dose_function", "anisotropy_function")},
    )


def load_source(path: str | Path) -> SourceModel:
    """Load a TG-43 source from a YAML file in the ``shared/data/tg43`` layout.

    Raises :class:`SourceDataError` naming the field that is missing or malformed.
    """
    p = Path(path)
    if not p.is_file():
        raise SourceDataError(f"source file {p} does not exist; give the path of a TG-43 source YAML.")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise SourceDataError(f"{p}: not valid YAML ({exc}).") from None
    return source_from_mapping(data, str(p))


@lru_cache(maxsize=1)
def default_source() -> SourceModel:
    """microSelectron-v2 HDR, CLRP TG-43 database (Safigholi et al., Med Phys 50:1928, 2023)."""
    ref = resources.files("latplan.physics") / "data" / "microselectron-v2.clrp.yaml"
    data = yaml.safe_load(ref.read_text(encoding="utf-8"))
    return source_from_mapping(data, "latplan/physics/data/microselectron-v2.clrp.yaml")


# ------------------------------------------------------------------------------------------------
# Scalar formalism (numba, shared by the direct kernel and the lookup-table builder)
# ------------------------------------------------------------------------------------------------
@nb.njit(cache=True, inline="always")
def _search(grid: np.ndarray, x: float, params: np.ndarray, base: int, imap: np.ndarray) -> int:
    """Index i with grid[i] <= x < grid[i+1], clamped to [0, n-2] (index-map lookup)."""
    n = grid.shape[0]
    if n < 2 or x <= grid[0]:
        return 0
    if x >= grid[n - 1]:
        j: int = n - 2
        return j
    k = int((x - params[base]) * params[base + 1])
    length = int(params[base + 3])
    if k >= length:
        k = length - 1
    i = imap[int(params[base + 2]) + k]
    while i < n - 2 and grid[i + 1] <= x:
        i += 1
    j = i
    return j


@nb.njit(cache=True, fastmath=True, error_model="numpy")
def _g_interp(g_r: np.ndarray, g_l: np.ndarray, r: float, params: np.ndarray, imap: np.ndarray) -> float:
    n = g_r.shape[0]
    if n == 1 or r <= g_r[0]:
        g: float = g_l[0]
        return g
    if r >= g_r[n - 1]:
        # log-linear extrapolation from the last two points (TG-43U1 App. C)
        r1 = g_r[n - 2]
        r2 = g_r[n - 1]
        s = (math.log(g_l[n - 1]) - math.log(g_l[n - 2])) / (r2 - r1)
        g = g_l[n - 1] * math.exp(s * (r - r2))
        return g
    i = _search(g_r, r, params, 4, imap)
    t = (r - g_r[i]) / (g_r[i + 1] - g_r[i])
    g = g_l[i] * (1.0 - t) + g_l[i + 1] * t
    return g


@nb.njit(cache=True, fastmath=True, error_model="numpy")
def _f_interp(f_r: np.ndarray, f_th: np.ndarray, tab: np.ndarray, r: float, th: float, params: np.ndarray,
              imap: np.ndarray) -> float:
    # nearest neighbour outside the tabulated r (and θ) range, bilinear inside
    nr = f_r.shape[0]
    nt = f_th.shape[0]
    if r <= f_r[0]:
        r = f_r[0]
    elif r >= f_r[nr - 1]:
        r = f_r[nr - 1]
    if th <= f_th[0]:
        th = f_th[0]
    elif th >= f_th[nt - 1]:
        th = f_th[nt - 1]
    if nr == 1:
        i = 0
        tr = 0.0
    else:
        i = _search(f_r, r, params, 8, imap)
        tr = (r - f_r[i]) / (f_r[i + 1] - f_r[i])
    if nt == 1:
        f: float = tab[0, i] * (1.0 - tr) + tab[0, min(i + 1, nr - 1)] * tr
        return f
    k = _search(f_th, th, params, 12, imap)
    tt = (th - f_th[k]) / (f_th[k + 1] - f_th[k])
    i1 = min(i + 1, nr - 1)
    a = tab[k, i] * (1.0 - tr) + tab[k, i1] * tr
    b = tab[k + 1, i] * (1.0 - tr) + tab[k + 1, i1] * tr
    f = a * (1.0 - tt) + b * tt
    return f


@nb.njit(cache=True, fastmath=True, error_model="numpy")
def _rate_zy(params: np.ndarray, g_r: np.ndarray, g_l: np.ndarray, f_r: np.ndarray, f_th: np.ndarray,
             tab: np.ndarray, imap: np.ndarray, z: float, y: float) -> float:
    """Dose rate per S_K (cGy h⁻¹ U⁻¹) at along/away coordinates (z, y) in cm (y ≥ 0)."""
    lam = params[0]
    length = params[1]
    g0 = params[2]
    rmin = params[3]
    r2 = z * z + y * y
    r = math.sqrt(r2)
    if params[16] > 0.5:
        # catheter clamp: only points inside the catheter next to the active core move to its surface
        if y < rmin and abs(z) < 0.5 * length + rmin:
            y = rmin
            r2 = z * z + y * y
            r = math.sqrt(r2)
    elif r < rmin:
        if r < 1e-12:
            z = 0.0
            y = rmin
        else:
            s = rmin / r
            z *= s
            y *= s
        r = rmin
        r2 = r * r
    th = math.atan2(y, z) * 57.29577951308232  # θ in degrees, 0 towards the tip
    if length <= 0.0:
        geo = 1.0 / r2
    else:
        den = r2 - 0.25 * length * length
        if y < 1e-9 * length:
            geo = 1.0 / den
        else:
            beta = math.atan2(length * y, den)
            geo = beta / (length * y)
    rate: float = lam * (geo / g0) * _g_interp(g_r, g_l, r, params, imap) * _f_interp(f_r, f_th, tab, r, th, params, imap)
    return rate


# ------------------------------------------------------------------------------------------------
# Direct kernel: the same formalism on uniform resampled tables, dwell-inner and branch-free
# ------------------------------------------------------------------------------------------------
def _uniform_step(knots: np.ndarray, max_cells: int = 20000) -> float | None:
    """The largest step h that puts every knot on the uniform grid knots[0] + k·h (None if none ≤ max_cells)."""
    span = float(knots[-1] - knots[0])
    base = float(np.min(np.diff(knots)))
    for div in range(1, 201):
        h = base / div
        k = (knots - knots[0]) / h
        if np.all(np.abs(k - np.round(k)) < 1e-9) and span / h <= max_cells:
            return h
    return None


def _resampled(knots: np.ndarray) -> tuple[np.ndarray, bool]:
    """A uniform grid over [knots[0], knots[-1]] holding every knot (so piecewise-linear interpolation on it
    reproduces the original table exactly), and whether one exists (if not: a placeholder, unused)."""
    if knots.size < 2:
        return np.array([knots[0], knots[0] + 1.0]), True
    h = _uniform_step(knots)
    exact = h is not None
    step = h if h is not None else float(knots[-1] - knots[0])
    n = round(float(knots[-1] - knots[0]) / step) + 1
    grid: npt.NDArray[np.float64] = knots[0] + step * np.arange(n)
    grid[-1] = knots[-1]
    return grid, exact


def _uniform_tables(src: SourceModel) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ug, uf, fast) for :func:`_fast_direct_pair`, resampled once per source and cached on it.

    ``ug``: g_L on a uniform r grid from the first to the last tabulated radius; ``uf``: F(r, θ) on a
    uniform (θ, r) grid, flattened row-major; both grids hold every published knot, so linear/bilinear
    interpolation on them equals the interpolation on the published tables (to rounding, tested).
    ``fast`` = [Λ/G0, L, r_g0, 1/h_g, n_g, r_f0, r_f1, 1/h_f, n_fr, θ0, θ1, 1/h_θ, n_θ, r²_lo, r²_hi]:
    pairs with r² outside [r²_lo, r²_hi) (the near-source clamps, the log-linear tail of g_L) are
    evaluated by the scalar :func:`_rate_zy` (every pair, if a table's knots fit no uniform grid of
    ≤ 20 000 cells).
    """
    cached = src.meta.get("_uniform")
    if cached is not None:
        out: tuple[np.ndarray, np.ndarray, np.ndarray] = cached
        return out
    (rg, ok_g), (rf, ok_r), (tf, ok_t) = (_resampled(k) for k in (src.g_r_cm, src.f_r_cm, src.f_theta_deg))
    ug = np.interp(rg, src.g_r_cm, src.g_l) if src.g_r_cm.size > 1 else np.full(2, src.g_l[0])
    uf = np.empty((tf.size, rf.size))
    if src.f_theta_deg.size > 1:
        rows = np.array([np.interp(tf, src.f_theta_deg, src.f_table[:, j]) for j in range(src.f_r_cm.size)]).T
    else:
        rows = np.repeat(src.f_table[:1, :], tf.size, axis=0)
    for i in range(tf.size):
        uf[i] = np.interp(rf, src.f_r_cm, rows[i]) if src.f_r_cm.size > 1 else rows[i, 0]
    length = src.active_length_cm
    rmin = src.r_min_cm
    if src.catheter_radius_cm is not None:
        lo = math.hypot(0.5 * length + rmin, rmin)  # no point with r ≥ lo lies in the clamped catheter box
    else:
        lo = rmin
    hi = float(src.g_r_cm[-1]) if src.g_r_cm.size > 1 else math.inf
    lo = max(lo, 0.5 * length * 1.0000001)
    if not (ok_g and ok_r and ok_t):
        lo = math.inf  # no uniform grid holds every knot (no shipped table): every pair takes the scalar path
    fast = np.array([src.dose_rate_constant_cgy_per_h_per_u / src.g0, length,
                     rg[0], (rg.size - 1) / (rg[-1] - rg[0]), float(rg.size),
                     rf[0], rf[-1], (rf.size - 1) / (rf[-1] - rf[0]), float(rf.size),
                     tf[0], tf[-1], (tf.size - 1) / (tf[-1] - tf[0]), float(tf.size),
                     lo * lo, hi * hi])
    out = (np.ascontiguousarray(ug), np.ascontiguousarray(uf.ravel()), fast)
    src.meta["_uniform"] = out
    return out


_ATAN_P = (-8.750608600031904122785e-1, -1.615753718733365076637e1, -7.500855792314704667340e1,
           -1.228866684490136173410e2, -6.485021904942025371773e1)
_ATAN_Q = (2.485846490142306297962e1, 1.650270098316988542046e2, 4.328810604912902668951e2,
           4.853903996359136964868e2, 1.945506571482613964425e2)


@nb.njit(cache=True, inline="always", error_model="numpy")
def _atan2_pos(a: float, b: float) -> float:
    """atan2(a, b) for a ≥ 0 (result in [0, π]) without a libm call, so a loop around it vectorises.

    Range reduction to |u| ≤ tan(π/8) and the Cephes rational approximation of atan (relative error
    < 2·10⁻¹⁶ there; Moshier, *Methods and Programs for Mathematical Functions*, 1989, atan.c).
    """
    ab = abs(b)
    hi = max(a, ab)
    lo = min(a, ab)
    t = lo / hi if hi > 0.0 else 0.0  # t in [0, 1]
    big = t > 0.41421356237309503
    u = (t - 1.0) / (t + 1.0) if big else t
    zz = u * u
    p = (((_ATAN_P[0] * zz + _ATAN_P[1]) * zz + _ATAN_P[2]) * zz + _ATAN_P[3]) * zz + _ATAN_P[4]
    q = ((((zz + _ATAN_Q[0]) * zz + _ATAN_Q[1]) * zz + _ATAN_Q[2]) * zz + _ATAN_Q[3]) * zz + _ATAN_Q[4]
    at = u + u * zz * p / q
    at = at + 0.7853981633974483 if big else at
    at = 1.5707963267948966 - at if a > ab else at
    res: float = 3.141592653589793 - at if b < 0.0 else at
    return res


@nb.njit(cache=True, inline="always", error_model="numpy", fastmath={"contract", "arcp", "nsz"})
def _fast_direct_pair(z: float, r2: float, ug: np.ndarray, uf: np.ndarray, fast: np.ndarray) -> float:
    """Ḋ/S_K for one pair with rmin ≤ r < last g_L radius (no clamp, no extrapolation): geometry factor
    from one vectorisable atan2 of (L·y, r² − L²/4), θ from one of (y, z), uniform-grid g_L and F."""
    yy = max(r2 - z * z, 0.0)
    y = math.sqrt(yy)
    r = math.sqrt(r2)
    length = fast[1]
    den = r2 - 0.25 * length * length
    on_axis = y < 1e-9 * length
    ly = length * y
    beta = _atan2_pos(ly, den)
    geo = 1.0 / den if on_axis else beta / (ly if ly > 0.0 else 1.0)
    geo = geo if length > 0.0 else 1.0 / r2
    th = _atan2_pos(y, z) * 57.29577951308232
    # g_L(r): r ≥ first radius by the clamp (nearest neighbour below it), uniform cells
    fg = (max(r, fast[2]) - fast[2]) * fast[3]
    ng = int(fast[4])
    ig = min(int(fg), ng - 2)
    tg = fg - ig
    g = ug[ig] * (1.0 - tg) + ug[ig + 1] * tg
    # F(r, θ): nearest tabulated r / θ outside the table, bilinear on the uniform (θ, r) grid
    fr = (min(max(r, fast[5]), fast[6]) - fast[5]) * fast[7]
    nr = int(fast[8])
    ir = min(int(fr), nr - 2)
    tr = fr - ir
    ft = (min(max(th, fast[9]), fast[10]) - fast[9]) * fast[11]
    it = min(int(ft), int(fast[12]) - 2)
    tt = ft - it
    k = it * nr + ir
    a0 = uf[k] * (1.0 - tr) + uf[k + 1] * tr
    a1 = uf[k + nr] * (1.0 - tr) + uf[k + nr + 1] * tr
    f = a0 * (1.0 - tt) + a1 * tt
    rate: float = fast[0] * geo * g * f
    return rate


@nb.njit(cache=True, parallel=True, error_model="numpy", fastmath={"reassoc", "contract", "arcp", "nsz"})
def _sum_direct_fast(points_cm: np.ndarray, sx: np.ndarray, sy: np.ndarray, sz: np.ndarray, ux: np.ndarray,
                     uy: np.ndarray, uz: np.ndarray, weights: np.ndarray, ug: np.ndarray, uf: np.ndarray,
                     fast: np.ndarray, params: np.ndarray, g_r: np.ndarray, g_l: np.ndarray, f_r: np.ndarray,
                     f_th: np.ndarray, tab: np.ndarray, imap: np.ndarray) -> np.ndarray:
    # one point per iteration; dwell-inner running sum over SoA dwells with no store and no libm call, so
    # it vectorises (table reads become gathers); pairs outside [r_lo, r_hi) (clamps, g_L tail) are
    # summed by the scalar formalism in a second pass over that point's dwells
    n = points_cm.shape[0]
    m = sx.shape[0]
    lo2 = fast[13]
    hi2 = fast[14]
    out = np.zeros(n)
    for p in nb.prange(n):
        qx = points_cm[p, 0]
        qy = points_cm[p, 1]
        qz = points_cm[p, 2]
        acc = 0.0
        nslow = 0
        for d in range(m):
            dx = qx - sx[d]
            dy = qy - sy[d]
            dz = qz - sz[d]
            z = dx * ux[d] + dy * uy[d] + dz * uz[d]
            r2 = dx * dx + dy * dy + dz * dz
            slow = (r2 < lo2) | (r2 >= hi2)
            r2s = 1.0 if slow else r2  # a harmless in-table value (1 cm) for flagged pairs, never summed
            zs = 0.0 if slow else z
            val = _fast_direct_pair(zs, r2s, ug, uf, fast)
            acc += 0.0 if slow else weights[d] * val
            nslow += 1 if slow else 0
        if nslow > 0:
            for d in range(m):
                w = weights[d]
                dx = qx - sx[d]
                dy = qy - sy[d]
                dz = qz - sz[d]
                z = dx * ux[d] + dy * uy[d] + dz * uz[d]
                r2 = dx * dx + dy * dy + dz * dz
                if w != 0.0 and ((r2 < lo2) | (r2 >= hi2)):
                    yy = r2 - z * z
                    acc += w * _rate_zy(params, g_r, g_l, f_r, f_th, tab, imap, z, math.sqrt(yy) if yy > 0.0 else 0.0)
        out[p] = acc
    return out


@nb.njit(cache=True, parallel=True, error_model="numpy", fastmath={"contract", "arcp", "nsz"})
def _matrix_direct_fast(points_cm: np.ndarray, sx: np.ndarray, sy: np.ndarray, sz: np.ndarray, ux: np.ndarray,
                        uy: np.ndarray, uz: np.ndarray, ug: np.ndarray, uf: np.ndarray, fast: np.ndarray,
                        params: np.ndarray, g_r: np.ndarray, g_l: np.ndarray, f_r: np.ndarray, f_th: np.ndarray,
                        tab: np.ndarray, imap: np.ndarray) -> np.ndarray:
    n = points_cm.shape[0]
    m = sx.shape[0]
    lo2 = fast[13]
    hi2 = fast[14]
    out = np.empty((n, m))
    for p in nb.prange(n):
        qx = points_cm[p, 0]
        qy = points_cm[p, 1]
        qz = points_cm[p, 2]
        for d in range(m):
            dx = qx - sx[d]
            dy = qy - sy[d]
            dz = qz - sz[d]
            z = dx * ux[d] + dy * uy[d] + dz * uz[d]
            r2 = dx * dx + dy * dy + dz * dz
            if (r2 < lo2) | (r2 >= hi2):
                yy = r2 - z * z
                out[p, d] = _rate_zy(params, g_r, g_l, f_r, f_th, tab, imap, z, math.sqrt(yy) if yy > 0.0 else 0.0)
            else:
                out[p, d] = _fast_direct_pair(z, r2, ug, uf, fast)
    return out


def _soa(pos_cm: np.ndarray, dirs: np.ndarray) -> tuple[np.ndarray, ...]:
    """Dwell positions and unit axes as six contiguous arrays (x, y, z of each): the kernels' SoA layout."""
    return tuple(np.ascontiguousarray(a[:, k], dtype=np.float64) for a in (pos_cm, dirs) for k in range(3))


# ------------------------------------------------------------------------------------------------
# numpy reference (readable; used by the QA table and as the benchmark baseline)
# ------------------------------------------------------------------------------------------------
def _g_numpy(src: SourceModel, r_cm: np.ndarray) -> np.ndarray:
    r = np.asarray(r_cm, dtype=float)
    g = np.interp(r, src.g_r_cm, src.g_l)
    if src.g_r_cm.size >= 2:
        r1, r2 = src.g_r_cm[-2], src.g_r_cm[-1]
        s = (np.log(src.g_l[-1]) - np.log(src.g_l[-2])) / (r2 - r1)
        far = r > r2
        g = np.where(far, src.g_l[-1] * np.exp(s * (r - r2)), g)
    out: npt.NDArray[np.float64] = g
    return out


def _f_numpy(src: SourceModel, r_cm: np.ndarray, theta_deg: np.ndarray) -> np.ndarray:
    r = np.clip(np.asarray(r_cm, dtype=float), src.f_r_cm[0], src.f_r_cm[-1])
    th = np.clip(np.asarray(theta_deg, dtype=float), src.f_theta_deg[0], src.f_theta_deg[-1])
    fr, ft = src.f_r_cm, src.f_theta_deg
    if fr.size == 1:
        i = np.zeros(r.shape, int)
        tr = np.zeros(r.shape)
        i1 = i
    else:
        i = np.clip(np.searchsorted(fr, r, side="right") - 1, 0, fr.size - 2)
        tr = (r - fr[i]) / (fr[i + 1] - fr[i])
        i1 = i + 1
    if ft.size == 1:
        out: npt.NDArray[np.float64] = src.f_table[0, i] * (1 - tr) + src.f_table[0, i1] * tr
        return out
    k = np.clip(np.searchsorted(ft, th, side="right") - 1, 0, ft.size - 2)
    tt = (th - ft[k]) / (ft[k + 1] - ft[k])
    a = src.f_table[k, i] * (1 - tr) + src.f_table[k, i1] * tr
    b = src.f_table[k + 1, i] * (1 - tr) + src.f_table[k + 1, i1] * tr
    out = a * (1 - tt) + b * tt
    return out


def dose_rate_per_sk_zy(source: SourceModel, z_cm: np.ndarray, y_cm: np.ndarray) -> np.ndarray:
    """Dose rate per S_K (cGy h⁻¹ U⁻¹) at along (z, + towards tip) / away (y ≥ 0) positions in cm.

    Plain numpy implementation of the formalism (the reference the numba kernels are tested
    against); clamps r below ``source.r_min_cm`` as documented in the module docstring.
    """
    z = np.asarray(z_cm, dtype=float)
    y = np.abs(np.asarray(y_cm, dtype=float))
    z, y = np.broadcast_arrays(z, y)
    r = np.hypot(z, y)
    rmin = source.r_min_cm
    if source.catheter_radius_cm is not None:
        inside = (y < rmin) & (np.abs(z) < 0.5 * source.active_length_cm + rmin)
        y = np.where(inside, rmin, y)
        r = np.hypot(z, y)
    small = (r < rmin) if source.catheter_radius_cm is None else np.zeros(r.shape, bool)
    safe_r = np.where(r > 1e-12, r, 1.0)
    scale = np.where(small, rmin / safe_r, 1.0)
    z = np.where(small & (r <= 1e-12), 0.0, z * scale)
    y = np.where(small & (r <= 1e-12), rmin, y * scale)
    r = np.maximum(r, rmin)
    theta = np.degrees(np.arccos(np.clip(z / r, -1.0, 1.0)))
    length = source.active_length_cm
    if length <= 0:
        geo = 1.0 / r**2
    else:
        den = r**2 - 0.25 * length**2
        on_axis = y < 1e-9 * length
        safe_y = np.where(on_axis, 1.0, y)
        geo = np.where(on_axis, 1.0 / den, np.arctan2(length * y, den) / (length * safe_y))
    rate: npt.NDArray[np.float64] = source.dose_rate_constant_cgy_per_h_per_u * geo / source.g0 * _g_numpy(source, r) * _f_numpy(source, r, theta)
    return rate


def dose_rate_per_sk_rtheta(source: SourceModel, r_cm: np.ndarray, theta_deg: np.ndarray) -> np.ndarray:
    """Dose rate per S_K (cGy h⁻¹ U⁻¹) at polar coordinates (r in cm, θ in degrees from the tip axis)."""
    th = np.radians(np.asarray(theta_deg, dtype=float))
    r = np.asarray(r_cm, dtype=float)
    return dose_rate_per_sk_zy(source, r * np.cos(th), r * np.sin(th))


# ------------------------------------------------------------------------------------------------
# Geometry helpers and public point API
# ------------------------------------------------------------------------------------------------
def _as_points(points_mm: np.ndarray, what: str) -> np.ndarray:
    arr = np.asarray(points_mm, dtype=float)
    if arr.ndim == 1 and arr.size == 3:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != 3:
        raise InvalidInputError(f"{what} must be an (n, 3) array of LPS mm positions; got shape {arr.shape}.")
    if not np.all(np.isfinite(arr)):
        raise InvalidInputError(f"{what} holds NaN or infinite coordinates.")
    return arr


def _as_dirs(dirs: np.ndarray, n: int) -> np.ndarray:
    d = np.asarray(dirs, dtype=float)
    if d.ndim == 1:
        d = np.broadcast_to(d, (n, 3))
    if d.shape != (n, 3):
        raise InvalidInputError(f"dwell directions must be (n_dwells, 3) = ({n}, 3) or one (3,) vector; got {d.shape}.")
    norm = np.linalg.norm(d, axis=1)
    if np.any(norm < 1e-9) or not np.all(np.isfinite(norm)):
        raise InvalidInputError("a dwell direction vector is zero or not finite; give the catheter direction (towards the tip).")
    return np.ascontiguousarray(d / norm[:, None])


def dose_rate_per_sk(points_mm: np.ndarray, dwell_pos_mm: np.ndarray, dwell_dir: np.ndarray,
                     source: SourceModel | None = None, *, method: str = "direct") -> np.ndarray:
    """Dose-rate matrix per unit S_K, shape (n_points, n_dwells), in cGy h⁻¹ U⁻¹.

    ``dwell_dir`` is the unit source axis of each dwell (towards the catheter tip), one row
    per dwell or a single vector. ``method``: "direct" (numba, exact formalism), "lookup"
    (numba bilinear Ḋ·r² table, see :class:`AlongAwayLookup`) or "numpy" (reference).
    """
    src = source or default_source()
    pts = _as_points(points_mm, "points_mm") / 10.0
    pos = _as_points(dwell_pos_mm, "dwell_pos_mm") / 10.0
    dirs = _as_dirs(dwell_dir, pos.shape[0])
    if method == "numpy":
        d = pts[:, None, :] - pos[None, :, :]
        z = np.einsum("pdk,dk->pd", d, dirs)
        y = np.sqrt(np.maximum(np.einsum("pdk,pdk->pd", d, d) - z * z, 0.0))
        return dose_rate_per_sk_zy(src, z, y)
    if method == "direct":
        with _KERNEL_LOCK:
            # points, six SoA dwell arrays, the uniform tables, then packed() for the scalar path
            return _matrix_direct_fast(np.ascontiguousarray(pts), *_soa(pos, dirs),  # type: ignore[call-arg]
                                       *_uniform_tables(src), *src.packed())
    if method == "lookup":
        return AlongAwayLookup.for_source(src).matrix(pts, pos, dirs)
    raise InvalidInputError(f"unknown TG-43 method {method!r}; use 'direct', 'lookup' or 'numpy'.")


def dose_matrix_gy_per_s(points_mm: np.ndarray, dwell_pos_mm: np.ndarray, dwell_dir: np.ndarray, sk_u: float,
                         source: SourceModel | None = None, *, method: str = "direct") -> np.ndarray:
    """Dose-influence matrix (n_points, n_dwells) in Gy per second of dwell time, for S_K in U."""
    _check_sk(sk_u)
    rate = dose_rate_per_sk(points_mm, dwell_pos_mm, dwell_dir, source, method=method)
    return rate * (sk_u / (_SECONDS_PER_HOUR * _CGY_PER_GY))


def _check_sk(sk_u: float) -> None:
    if not (np.isfinite(sk_u) and sk_u > 0):
        raise InvalidInputError(f"air-kerma strength S_K must be positive (U); got {sk_u}. A new 10 Ci HDR source ≈ 40 700 U.")


def dose_gy(points_mm: np.ndarray, dwell_pos_mm: np.ndarray, dwell_dir: np.ndarray, times_s: np.ndarray,
            sk_u: float, source: SourceModel | None = None, *, method: str = "direct") -> np.ndarray:
    """Absorbed dose (Gy) at points from dwells with dwell times (s), for S_K in U.

    Dose is linear in the dwell times and in S_K (tested). ``method`` as in :func:`dose_rate_per_sk`.
    """
    src = source or default_source()
    _check_sk(sk_u)
    pts = _as_points(points_mm, "points_mm") / 10.0
    pos = _as_points(dwell_pos_mm, "dwell_pos_mm") / 10.0
    dirs = _as_dirs(dwell_dir, pos.shape[0])
    t = np.asarray(times_s, dtype=float).reshape(-1)
    if t.size != pos.shape[0]:
        raise InvalidInputError(f"{t.size} dwell times for {pos.shape[0]} dwell positions; give one time (s) per dwell.")
    if np.any(t < 0) or not np.all(np.isfinite(t)):
        raise InvalidInputError("dwell times must be finite and ≥ 0 s.")
    w = np.ascontiguousarray(t * sk_u / (_SECONDS_PER_HOUR * _CGY_PER_GY))
    if method == "numpy":
        return dose_rate_per_sk(points_mm, dwell_pos_mm, dirs, src, method="numpy") @ w
    if method == "direct":
        with _KERNEL_LOCK:
            # points, six SoA dwell arrays, weights, the uniform tables, then packed() for the scalar path
            return _sum_direct_fast(np.ascontiguousarray(pts), *_soa(pos, dirs), w,  # type: ignore[call-arg]
                                    *_uniform_tables(src), *src.packed())
    if method == "lookup":
        return AlongAwayLookup.for_source(src).sum(pts, pos, dirs, w)
    raise InvalidInputError(f"unknown TG-43 method {method!r}; use 'direct', 'lookup' or 'numpy'.")


def dose_on_volume_gy(grid: Volume, dwell_pos_mm: np.ndarray, dwell_dir: np.ndarray, times_s: np.ndarray,
                      sk_u: float, source: SourceModel | None = None, *, method: str = "lookup") -> Volume:
    """Dose (Gy) on every voxel centre of ``grid`` (its affine kept), as a float32 :class:`Volume`."""
    pts = grid.grid_mm().reshape(-1, 3)
    d = dose_gy(pts, dwell_pos_mm, dwell_dir, times_s, sk_u, source, method=method)
    return grid.with_array(d.reshape(grid.shape).astype(np.float32))


# ------------------------------------------------------------------------------------------------
# Lookup kernel
# ------------------------------------------------------------------------------------------------
@nb.njit(cache=True, parallel=True)
def _build_table(params: np.ndarray, g_r: np.ndarray, g_l: np.ndarray, f_r: np.ndarray, f_th: np.ndarray,
                 tab: np.ndarray, imap: np.ndarray, z0: float, h: float, nz: int, ny: int) -> np.ndarray:
    out = np.empty((nz, ny))
    for a in nb.prange(nz):
        z = z0 + a * h
        for b in range(ny):
            y = b * h
            r2 = z * z + y * y
            out[a, b] = _rate_zy(params, g_r, g_l, f_r, f_th, tab, imap, z, y) * r2
    return out


@nb.njit(cache=True, inline="always")
def _lookup_one(z: float, y: float, r2: float, tab: np.ndarray, z0: float, inv_h: float, nz: int, ny: int) -> float:
    fz = (z - z0) * inv_h
    fy = y * inv_h
    a = int(fz)
    b = int(fy)
    if a > nz - 2:
        a = nz - 2
    if b > ny - 2:
        b = ny - 2
    tz = fz - a
    ty = fy - b
    v0 = tab[a, b] * (1.0 - ty) + tab[a, b + 1] * ty
    v1 = tab[a + 1, b] * (1.0 - ty) + tab[a + 1, b + 1] * ty
    val: float = (v0 * (1.0 - tz) + v1 * tz) / r2
    return val


@nb.njit(cache=True, fastmath=True, inline="always")
def _pair_lookup(z: float, y: float, r2: float, t1: np.ndarray, t2: np.ndarray, t3: np.ndarray,
                 geo: np.ndarray, params: np.ndarray, g_r: np.ndarray, g_l: np.ndarray, f_r: np.ndarray,
                 f_th: np.ndarray, ftab: np.ndarray, imap: np.ndarray, pol: np.ndarray) -> float:
    # geo = [near², r1², z0_1, 1/h1, r2², z0_2, 1/h2, r3², z0_3, 1/h3, sin²(axis cone),
    #        1/dr1, n1, 1/dr2, 1/dθ, n_cone, cone_deg, r_split, (near-axis direct radius)²]
    # near pairs and far pairs use the full formalism
    if r2 < geo[0] or r2 >= geo[7]:
        return _rate_zy(params, g_r, g_l, f_r, f_th, ftab, imap, z, y)
    if y * y < geo[10] * r2:
        if r2 < geo[18]:  # on-axis line-source factor 1/(r² − L²/4) is too steep to tabulate near the ends
            return _rate_zy(params, g_r, g_l, f_r, f_th, ftab, imap, z, y)
        # near-axis pairs (θ < 15° or > 165°, where anisotropy tables have 1° steps and kinks:
        # Valdés 2015): polar (r, θ) table whose θ grid holds every integer degree
        r = math.sqrt(r2)
        th = math.atan2(y, z) * 57.29577951308232
        if r < geo[17]:
            fr = r * geo[11]
            a = int(fr)
            if a > int(geo[12]) - 2:
                a = int(geo[12]) - 2
        else:
            fr = geo[12] + (r - geo[17]) * geo[13]
            a = int(fr)
            if a > pol.shape[0] - 2:
                a = pol.shape[0] - 2
        tr = fr - a
        nc = int(geo[15])
        if th <= geo[16]:
            ft = th * geo[14]
            b = int(ft)
            if b > nc - 2:
                b = nc - 2
        else:
            ft = (th - (180.0 - geo[16])) * geo[14] + nc
            b = int(ft)
            if b < nc:
                b = nc
            if b > 2 * nc - 2:
                b = 2 * nc - 2
        tt = ft - b
        v0 = pol[a, b] * (1.0 - tt) + pol[a, b + 1] * tt
        v1 = pol[a + 1, b] * (1.0 - tt) + pol[a + 1, b + 1] * tt
        val: float = (v0 * (1.0 - tr) + v1 * tr) / r2
        return val
    if r2 < geo[1]:
        return _lookup_one(z, y, r2, t1, geo[2], geo[3], t1.shape[0], t1.shape[1])
    if r2 < geo[4]:
        return _lookup_one(z, y, r2, t2, geo[5], geo[6], t2.shape[0], t2.shape[1])
    return _lookup_one(z, y, r2, t3, geo[8], geo[9], t3.shape[0], t3.shape[1])


@nb.njit(cache=True, parallel=True)
def _build_polar(params: np.ndarray, g_r: np.ndarray, g_l: np.ndarray, f_r: np.ndarray, f_th: np.ndarray,
                 tab: np.ndarray, imap: np.ndarray, r_list: np.ndarray, th_list: np.ndarray) -> np.ndarray:
    out = np.empty((r_list.shape[0], th_list.shape[0]))
    for a in nb.prange(r_list.shape[0]):
        r = r_list[a]
        for b in range(th_list.shape[0]):
            t = math.radians(th_list[b])
            out[a, b] = _rate_zy(params, g_r, g_l, f_r, f_th, tab, imap, r * math.cos(t), r * abs(math.sin(t))) * r * r
    return out


_BLOCK = 256


@nb.njit(cache=True, fastmath=True, inline="always")
def _fast_pair(dx: float, dy: float, dz: float, ux: float, uy: float, uz: float, flat: np.ndarray,
               lz0: np.ndarray, lih: np.ndarray, lny: np.ndarray, lnz: np.ndarray, loff: np.ndarray,
               lim: np.ndarray, pflat: np.ndarray) -> tuple[float, bool]:
    """Branch-free table value Ḋ/S_K for one pair, and whether the pair needs the full path.

    The same cells and bilinear weights as :func:`_pair_lookup`, computed with arithmetic and selects
    instead of branches, so that a loop over dwells vectorises (table reads become gathers):

    * the along-away level is chosen by r² (0, 1, 2 = finest to coarsest);
    * inside the axis cone (θ < 15° or > 165°) the polar (r, θ) table is read, with θ from a series for
      asin(y/r) (sin θ ≤ 0.26 there: truncation error < 2·10⁻¹² rad) instead of atan2;
    * pairs nearer than ``near``, beyond R3, or in the cone nearer than the near-axis direct radius are
      flagged ``slow``: their value here is meaningless and the caller uses :func:`_pair_lookup`.

    ``lim`` = [near², R1², R2², R3², sin²(cone), near-axis direct r², 1/dr1, n1, r_split, 1/dr2, n_polar_r,
    1/dθ, n_cone, cone_deg].
    """
    z = dx * ux + dy * uy + dz * uz
    r2 = dx * dx + dy * dy + dz * dz
    yy = max(r2 - z * z, 0.0)
    y = math.sqrt(yy)
    inv_r2 = 1.0 / max(r2, 1e-300)
    # along-away (z, y) tables
    # level by selects on scalars (no gathers from the small per-level arrays)
    l1 = r2 >= lim[1]
    l2 = r2 >= lim[2]
    ih = lih[2] if l2 else (lih[1] if l1 else lih[0])
    z0 = lz0[2] if l2 else (lz0[1] if l1 else lz0[0])
    ny = lny[2] if l2 else (lny[1] if l1 else lny[0])
    nz = lnz[2] if l2 else (lnz[1] if l1 else lnz[0])
    off = loff[2] if l2 else (loff[1] if l1 else loff[0])
    fz = (z - z0) * ih
    fy = y * ih
    a = min(max(int(fz), 0), nz - 2)
    b = min(int(fy), ny - 2)
    tz = fz - a
    ty = fy - b
    k = np.uint64(off + a * ny + b)  # ≥ 0 by the clamps: unsigned skips the negative-index wraparound
    nyu = np.uint64(ny)
    v0 = flat[k] * (1.0 - ty) + flat[k + np.uint64(1)] * ty
    v1 = flat[k + nyu] * (1.0 - ty) + flat[k + nyu + np.uint64(1)] * ty
    cart = v0 * (1.0 - tz) + v1 * tz
    # polar (r, θ) table near the axis
    r = math.sqrt(r2)
    sn = min(y / max(r, 1e-300), 0.5)
    s2 = sn * sn
    th = sn * (1.0 + s2 * (0.16666666666666666 + s2 * (0.075 + s2 * (0.044642857142857144 + s2 * (
        0.030381944444444444 + s2 * (0.022372159090909092 + s2 * (0.017352764423076924
                                                                   + s2 * 0.01396484375))))))) * 57.29577951308232
    near_zone = r < lim[8]
    fr = r * lim[6] if near_zone else lim[7] + (r - lim[8]) * lim[9]
    ar = min(int(fr), int(lim[7]) - 2) if near_zone else min(int(fr), int(lim[10]) - 2)
    tr = fr - ar
    nc = int(lim[12])
    front = z >= 0.0
    ft = th * lim[11] if front else (lim[13] - th) * lim[11] + nc
    bt = min(int(ft), nc - 2) if front else max(min(int(ft), 2 * nc - 2), nc)
    tt = ft - bt
    kp = np.uint64(ar * (2 * nc) + bt)
    rowp = np.uint64(2 * nc)
    one = np.uint64(1)
    w0 = pflat[kp] * (1.0 - tt) + pflat[kp + one] * tt
    w1 = pflat[kp + rowp] * (1.0 - tt) + pflat[kp + rowp + one] * tt
    polar = w0 * (1.0 - tr) + w1 * tr
    cone = yy < lim[4] * r2
    slow = (r2 < lim[0]) | (r2 >= lim[3]) | (cone & (r2 < lim[5]))
    return (polar if cone else cart) * inv_r2, slow


@nb.njit(cache=True, parallel=True, fastmath=True, error_model="numpy")
def _sum_lookup(points_cm: np.ndarray, sx: np.ndarray, sy: np.ndarray, sz: np.ndarray, ux: np.ndarray,
                uy: np.ndarray, uz: np.ndarray, weights: np.ndarray, flat: np.ndarray, lz0: np.ndarray,
                lih: np.ndarray, lny: np.ndarray, lnz: np.ndarray, loff: np.ndarray, lim: np.ndarray,
                pflat: np.ndarray, t1: np.ndarray, t2: np.ndarray, t3: np.ndarray, geo: np.ndarray, params: np.ndarray,
                g_r: np.ndarray, g_l: np.ndarray, f_r: np.ndarray, f_th: np.ndarray,
                ftab: np.ndarray, imap: np.ndarray, pol: np.ndarray) -> np.ndarray:
    # one point per iteration, dwell-inner over SoA dwell frames as a reduction: no store in the inner
    # loop, so it vectorises (table gathers); the few flagged pairs (near, far, near-axis) take the full
    # path in a second pass over that point's dwells
    n = points_cm.shape[0]
    m = sx.shape[0]
    out = np.zeros(n)
    for p in nb.prange(n):
        qx = points_cm[p, 0]
        qy = points_cm[p, 1]
        qz = points_cm[p, 2]
        acc = 0.0
        nslow = 0
        for d in range(m):
            val, slow = _fast_pair(qx - sx[d], qy - sy[d], qz - sz[d], ux[d], uy[d], uz[d], flat, lz0, lih, lny,
                                   lnz, loff, lim, pflat)
            acc += 0.0 if slow else weights[d] * val
            nslow += 1 if slow else 0
        if nslow > 0:
            for d in range(m):
                dx = qx - sx[d]
                dy = qy - sy[d]
                dz = qz - sz[d]
                z = dx * ux[d] + dy * uy[d] + dz * uz[d]
                r2 = dx * dx + dy * dy + dz * dz
                yy = max(r2 - z * z, 0.0)
                if (r2 < lim[0]) | (r2 >= lim[3]) | ((yy < lim[4] * r2) & (r2 < lim[5])):
                    acc += weights[d] * _pair_lookup(z, math.sqrt(yy), r2, t1, t2, t3, geo, params, g_r, g_l, f_r,
                                                     f_th, ftab, imap, pol)
        out[p] = acc
    return out


@nb.njit(cache=True, parallel=True, fastmath=True)
def _matrix_lookup(points_cm: np.ndarray, pos_cm: np.ndarray, dirs: np.ndarray,
                   t1: np.ndarray, t2: np.ndarray, t3: np.ndarray, geo: np.ndarray, params: np.ndarray,
                   g_r: np.ndarray, g_l: np.ndarray, f_r: np.ndarray, f_th: np.ndarray,
                   ftab: np.ndarray, imap: np.ndarray, pol: np.ndarray) -> np.ndarray:
    # branchy per-pair path (same cells and weights as _fast_pair): a store into the matrix next to table
    # gathers cannot be vectorised (no runtime alias check for gathers), and the scalar branchy path is
    # faster than the branch-free one when scalar (measured 44 vs 27 M pairs/s, one thread)
    n = points_cm.shape[0]
    m = pos_cm.shape[0]
    out = np.empty((n, m))
    for p in nb.prange(n):
        px = points_cm[p, 0]
        py = points_cm[p, 1]
        pz = points_cm[p, 2]
        for d in range(m):
            dx = px - pos_cm[d, 0]
            dy = py - pos_cm[d, 1]
            dz = pz - pos_cm[d, 2]
            z = dx * dirs[d, 0] + dy * dirs[d, 1] + dz * dirs[d, 2]
            r2 = dx * dx + dy * dy + dz * dz
            yy = r2 - z * z
            y = math.sqrt(yy) if yy > 0.0 else 0.0
            out[p, d] = _pair_lookup(z, y, r2, t1, t2, t3, geo, params, g_r, g_l, f_r, f_th, ftab, imap, pol)
    return out


@dataclass(frozen=True, eq=False)
class AlongAwayLookup:
    """Ḋ·r²/S_K tabulated on uniform along/away (z, y) grids, interpolated bilinearly.

    Why Ḋ·r²: it has no 1/r² singularity, so bilinear interpolation is accurate. Three
    nested grids (``levels`` = (radius_cm, step_cm) pairs, finest first) keep the tables
    small enough for the CPU cache (float32); pairs closer than ``near_direct_cm`` or beyond
    the last radius use the direct formalism. Pairs within ``axis_cone_deg`` of the source
    axis (θ < 15° or > 165°, where anisotropy tables have 1° steps and kinks) use a polar
    (r, θ) table of Ḋ·r² whose θ grid (0.25°) holds every integer-degree knot (direct
    below 5 mm, where the on-axis line-source factor 1/(r² − L²/4) is too steep). Accuracy vs direct is tested
    (tests/physics/test_tg43_kernels.py).
    """

    source: SourceModel
    tables: tuple[np.ndarray, np.ndarray, np.ndarray]
    levels: tuple[tuple[float, float], ...]
    near_direct_cm: float
    axis_cone_deg: float = 15.0
    polar: np.ndarray | None = None
    polar_steps: tuple[float, float, float, float] = (0.01, 2.0, 0.05, 0.25)  # dr1, r_split, dr2 (cm), dθ (deg)

    @classmethod
    def build(cls, source: SourceModel, *,
              levels: tuple[tuple[float, float], ...] = ((1.0, 0.005), (4.0, 0.02), (15.0, 0.05)),
              near_direct_cm: float = 0.2, axis_cone_deg: float = 15.0) -> AlongAwayLookup:
        """Tabulate (tens of ms, once per source and settings). ``levels``: 3 × (radius_cm, step_cm)."""
        if len(levels) != 3:
            raise InvalidInputError("the along-away lookup needs exactly three (radius_cm, step_cm) levels.")
        packed = source.packed()
        tabs = []
        for radius, step in levels:
            n_half = math.ceil(radius / step) + 1
            with _KERNEL_LOCK:
                # packed() is (params, g_r, g_l, f_r, f_th, f_table, index maps): the kernel's first seven
                # arguments; mypy cannot match a variable-length unpack to them
                t = _build_table(*packed, -n_half * step, step, 2 * n_half + 1, n_half + 2)  # type: ignore[call-arg, arg-type]
            tabs.append(np.ascontiguousarray(t, dtype=np.float32))
        dr1, r_split, dr2, dth = 0.01, 2.0, 0.05, 0.25
        if abs(axis_cone_deg / dth - round(axis_cone_deg / dth)) > 1e-9:
            raise InvalidInputError(f"axis cone {axis_cone_deg}° must be a multiple of {dth}°.")
        n1 = round(r_split / dr1) + 1
        r_list = np.concatenate([dr1 * np.arange(n1), r_split + dr2 * np.arange(math.ceil((levels[2][0] - r_split) / dr2) + 2)])
        nc = round(axis_cone_deg / dth) + 1
        th_list = np.concatenate([dth * np.arange(nc), 180.0 - axis_cone_deg + dth * np.arange(nc)])
        with _KERNEL_LOCK:
            # the same seven packed() arrays, then the radii and angles (see _build_table above)
            pol = np.ascontiguousarray(_build_polar(*packed, np.maximum(r_list, 1e-6), th_list),  # type: ignore[call-arg]
                                       dtype=np.float32)
        return cls(source, (tabs[0], tabs[1], tabs[2]), tuple(levels), near_direct_cm, axis_cone_deg, pol,
                   (dr1, r_split, dr2, dth))

    @classmethod
    def for_source(cls, source: SourceModel) -> AlongAwayLookup:
        """Cached default lookup for a source."""
        hit = _LOOKUP_CACHE.get(id(source))
        if hit is None or hit.source is not source:
            hit = cls.build(source)
            if len(_LOOKUP_CACHE) >= 8:  # bounded: a few MB per source
                _LOOKUP_CACHE.pop(next(iter(_LOOKUP_CACHE)))
            _LOOKUP_CACHE[id(source)] = hit
        return hit

    def _args(self) -> tuple[Any, ...]:
        geo = [self.near_direct_cm**2]
        for (radius, step), tab in zip(self.levels, self.tables, strict=True):
            geo += [radius**2, -(tab.shape[1] - 2) * step, 1.0 / step]
        geo.append(math.sin(math.radians(self.axis_cone_deg)) ** 2)
        dr1, r_split, dr2, dth = self.polar_steps
        geo += [1.0 / dr1, float(round(r_split / dr1) + 1), 1.0 / dr2, 1.0 / dth,
                float(round(self.axis_cone_deg / dth) + 1), self.axis_cone_deg, r_split,
                max(0.5, 1.5 * self.source.active_length_cm) ** 2]
        return (*self.tables, np.array(geo), *self.source.packed(), self.polar)

    def _fast_args(self) -> tuple[np.ndarray, ...]:
        """The three tables flattened into one float32 array with per-level (z0, 1/h, ny, nz, offset), and
        lim = [near², R1², R2², R3², sin²(axis cone)] for the branch-free kernels (cached)."""
        cached = _FAST_CACHE.get(id(self))
        if cached is not None and cached[0] is self:
            return cached[1]
        flat = np.ascontiguousarray(np.concatenate([t.ravel() for t in self.tables]), dtype=np.float32)
        lz0 = np.array([-(t.shape[1] - 2) * step for (_, step), t in zip(self.levels, self.tables, strict=True)])
        lih = np.array([1.0 / step for _, step in self.levels])
        lny = np.array([t.shape[1] for t in self.tables], np.int64)
        lnz = np.array([t.shape[0] for t in self.tables], np.int64)
        loff = np.cumsum([0] + [t.size for t in self.tables[:-1]]).astype(np.int64)
        geo = self._args()[3]
        dr1, r_split, dr2, dth = self.polar_steps
        assert self.polar is not None
        lim = np.array([self.near_direct_cm**2, self.levels[0][0] ** 2, self.levels[1][0] ** 2,
                        self.levels[2][0] ** 2, math.sin(math.radians(self.axis_cone_deg)) ** 2, geo[18],
                        1.0 / dr1, float(round(r_split / dr1) + 1), r_split, 1.0 / dr2, float(self.polar.shape[0]),
                        1.0 / dth, float(round(self.axis_cone_deg / dth) + 1), self.axis_cone_deg])
        pflat = np.ascontiguousarray(self.polar.ravel(), dtype=np.float32)
        out = (flat, lz0, lih, lny, lnz, loff, lim, pflat)
        if len(_FAST_CACHE) >= 8:
            _FAST_CACHE.pop(next(iter(_FAST_CACHE)))
        _FAST_CACHE[id(self)] = (self, out)
        return out

    def sum(self, points_cm: np.ndarray, pos_cm: np.ndarray, dirs: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """Σ_d w_d·(Ḋ_d/S_K) at points (positions in cm, unit dirs); result in cGy h⁻¹ U⁻¹ × w units."""
        pos = np.asarray(pos_cm, dtype=np.float64)
        u = np.asarray(dirs, dtype=np.float64)
        soa = [np.ascontiguousarray(a[:, k]) for a in (pos, u) for k in range(3)]
        with _KERNEL_LOCK:
            # points, six SoA dwell arrays, weights, the fast-path arrays, then _args() (see _sum_lookup)
            return _sum_lookup(np.ascontiguousarray(points_cm, dtype=np.float64), *soa,  # type: ignore[call-arg]
                               np.ascontiguousarray(weights, dtype=np.float64), *self._fast_args(), *self._args())

    def matrix(self, points_cm: np.ndarray, pos_cm: np.ndarray, dirs: np.ndarray) -> np.ndarray:
        """(n_points, n_dwells) dose rate per S_K (cGy h⁻¹ U⁻¹); inputs in cm."""
        with _KERNEL_LOCK:
            return _matrix_lookup(np.ascontiguousarray(points_cm), np.ascontiguousarray(pos_cm),
                                  np.ascontiguousarray(dirs), *self._args())


_LOOKUP_CACHE: dict[int, AlongAwayLookup] = {}
_FAST_CACHE: dict[int, tuple[AlongAwayLookup, tuple[np.ndarray, ...]]] = {}


# ------------------------------------------------------------------------------------------------
# Source decay
# ------------------------------------------------------------------------------------------------
def decayed_air_kerma_strength_u(sk_calibration_u: float, elapsed_days: float, half_life_d: float) -> float:
    """Air-kerma strength (U) ``elapsed_days`` after calibration: S_K·exp(−ln 2·t/T½) (T½ of Ir-192: 73.83 d)."""
    if not (np.isfinite(sk_calibration_u) and sk_calibration_u > 0):
        raise InvalidInputError(f"air-kerma strength must be > 0 U; got {sk_calibration_u}.")
    if not (np.isfinite(half_life_d) and half_life_d > 0):
        raise InvalidInputError(f"half-life must be > 0 d; got {half_life_d}.")
    if elapsed_days < 0:
        raise InvalidInputError(f"elapsed time since calibration must be ≥ 0 d; got {elapsed_days}.")
    return float(sk_calibration_u * math.exp(-math.log(2.0) * elapsed_days / half_life_d))


# ------------------------------------------------------------------------------------------------
# QA along-away table
# ------------------------------------------------------------------------------------------------
def along_away_table(source: SourceModel, z_cm: tuple[float, ...] = QA_Z_CM,
                     y_cm: tuple[float, ...] = QA_Y_CM) -> np.ndarray:
    """Along-away table (len(z), len(y)) of dose rate per S_K (cGy h⁻¹ U⁻¹), z + towards the tip.

    The point (0, 0) lies inside the source: it is evaluated with the documented clamp
    (r = r_min along y) and is not a physical value.
    """
    zz, yy = np.meshgrid(np.asarray(z_cm, float), np.asarray(y_cm, float), indexing="ij")
    return dose_rate_per_sk_zy(source, zz, yy)


def _fmt(v: float) -> str:
    s = f"{v:.6g}"
    return s


def format_along_away_csv(source: SourceModel, z_cm: tuple[float, ...] = QA_Z_CM,
                          y_cm: tuple[float, ...] = QA_Y_CM) -> str:
    """The along-away table as CSV, in the layout of the consensus QA sheets (two comment lines).

    The cell (z = 0, y = 0), inside the source, is left empty (no made-up value).
    """
    table = along_away_table(source, z_cm, y_cm)
    lines = [
        f"# QA along-away table: dose rate per unit air-kerma strength, cGy h^-1 U^-1, computed by latplan "
        f"TG-43 (2-D line source) from {source.name} ({source.dataset or source.path}).",
        "# rows: z_cm = distance along the source axis from the active centre (positive towards the tip); "
        "columns: y_cm = distance away from the axis",
        "z_cm," + ",".join(f"y_{_fmt(y)}" for y in y_cm),
    ]
    for z, row in zip(z_cm, table, strict=True):
        # the point (0, 0) lies inside the source: no dose value exists there, the cell stays empty
        lines.append(_fmt(z) + "," + ",".join("" if (z == 0 and y == 0) else _fmt(v)
                                              for y, v in zip(y_cm, row, strict=True)))
    return "\n".join(lines) + "\n"
