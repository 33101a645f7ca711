"""Device-chart ablation zones: ellipsoids from vendor/published charts, placed along applicators.

Why: the fastest defensible prediction of a thermal ablation zone is the device chart
(what interventional radiologists use at the table). Charts come from non-perfused or
animal liver and over-estimate clinical zones, so every result carries the chart caveat.
Physics-based zones (perfusion, heat sink) come from :mod:`latplan.physics.bioheat`.

Data files (``physics/data/ablation/``, each with its citation):

* ``mwa_charts.yaml`` — microwave antennas (Covidien Emprint-class, HS Amica, Acculis):
  full axis lengths and zone-centre offset from the tip by power (W) and time (s);
* ``rfa_ex_vivo.yaml`` — RFA ex vivo volumes for 3 cm / 5 cm protocols (PMC4463338) with a
  documented shape assumption;
* ``cryo_isotherms.yaml`` — cryo lethal-isotherm diameters by probe type and count (Littrup 2009, PMC2762356).

Interpolation of MWA charts (decision): the axis lengths and centre offset are linear in
time between the two chart times of one power, then linear in power between the two chart
powers bracketing the request (each evaluated at the requested time). A request outside
the chart's power range, or outside the time range of a bracketing power, raises
:class:`~latplan.errors.OutOfRangeError` — never silent extrapolation. Volumes follow from
the interpolated axes (π/6·L·W·D).

Coordinates: LPS mm. An applicator's ``direction`` is a unit vector pointing from the skin
entry to the tip; the zone centre is ``tip + centre_offset_from_tip_mm · direction``
(offsets are negative = back along the shaft).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from latplan.errors import InvalidInputError, OutOfRangeError, SourceDataError
from latplan.imaging.volume import Volume

__all__ = [
    "Applicator",
    "DeviceChart",
    "ZoneEllipsoid",
    "ZoneSize",
    "chart_caveat",
    "cryo_probe_offsets_mm",
    "cryo_probes",
    "cryo_zone_size",
    "load_mwa_chart",
    "mwa_devices",
    "perpendicular_axes",
    "rasterise_zones",
    "rfa_devices",
    "rfa_zone_size",
    "uncertainty_data",
    "zone_ellipsoid",
    "zone_uncertainty_bounds",
    "zone_uncertainty_fraction",
]

DATA_DIR = Path(__file__).resolve().parent / "data" / "ablation"


# --------------------------------------------------------------------------------------------
# data classes
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ZoneSize:
    """Size and placement of one ellipsoidal zone relative to its applicator.

    ``length_mm`` is the full axis along the applicator, ``width_mm``/``depth_mm`` the full
    axes across it; ``centre_offset_from_tip_mm`` < 0 means back along the shaft.
    """

    modality: str
    device: str
    length_mm: float
    width_mm: float
    depth_mm: float
    centre_offset_from_tip_mm: float
    settings: dict[str, Any]
    caveat: str
    method: str
    notes: tuple[str, ...] = ()

    @property
    def volume_ml(self) -> float:
        """Ellipsoid volume π/6·L·W·D in ml."""
        return math.pi / 6.0 * self.length_mm * self.width_mm * self.depth_mm / 1000.0

    @property
    def min_diameter_mm(self) -> float:
        return min(self.length_mm, self.width_mm, self.depth_mm)

    def to_dict(self) -> dict[str, Any]:
        return {
            "modality": self.modality,
            "device": self.device,
            "length_mm": round(self.length_mm, 2),
            "width_mm": round(self.width_mm, 2),
            "depth_mm": round(self.depth_mm, 2),
            "centre_offset_from_tip_mm": round(self.centre_offset_from_tip_mm, 2),
            "volume_ml": round(self.volume_ml, 2),
            "settings": dict(self.settings),
            "method": self.method,
            "notes": list(self.notes),
            "caveat": self.caveat,
        }


@dataclass(frozen=True)
class Applicator:
    """One applicator (MWA antenna, RFA electrode, cryo probe, electroporation needle).

    ``tip_mm`` LPS mm; ``direction`` unit vector entry → tip; ``settings`` e.g.
    ``{"power_w": 100, "time_s": 300}`` or ``{"protocol": "3cm"}``.
    """

    modality: str
    device: str
    tip_mm: tuple[float, float, float]
    direction: tuple[float, float, float]
    settings: dict[str, Any] = field(default_factory=dict)
    entry_mm: tuple[float, float, float] | None = None

    def __post_init__(self) -> None:
        d = np.asarray(self.direction, dtype=float)
        n = float(np.linalg.norm(d))
        if not np.isfinite(n) or n < 1e-9:
            raise InvalidInputError(f"applicator direction must be a non-zero vector; got {self.direction}.")
        object.__setattr__(self, "direction", tuple(float(x) for x in d / n))
        object.__setattr__(self, "tip_mm", tuple(float(x) for x in self.tip_mm))
        if self.entry_mm is not None:
            object.__setattr__(self, "entry_mm", tuple(float(x) for x in self.entry_mm))

    def to_dict(self) -> dict[str, Any]:
        """plan.json form: type, tip_mm, direction, settings (and entry_mm when known)."""
        out: dict[str, Any] = {
            "type": self.modality,
            "device": self.device,
            "tip_mm": [round(x, 2) for x in self.tip_mm],
            "direction": [round(x, 4) for x in self.direction],
            "settings": dict(self.settings),
        }
        if self.entry_mm is not None:
            out["entry_mm"] = [round(x, 2) for x in self.entry_mm]
            out["depth_mm"] = round(float(np.linalg.norm(np.subtract(self.tip_mm, self.entry_mm))), 1)
        return out


def perpendicular_axes(axis: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two unit vectors orthogonal to ``axis`` and to each other (deterministic)."""
    a = np.asarray(axis, float)
    a = a / np.linalg.norm(a)
    e = np.zeros(3)
    e[int(np.argmin(np.abs(a)))] = 1.0
    u = np.cross(a, e)
    u /= np.linalg.norm(u)
    v = np.cross(a, u)
    return u, v


@dataclass(frozen=True)
class ZoneEllipsoid:
    """An ellipsoid in LPS mm: centre, unit axis (along the applicator) and full axis lengths."""

    centre_mm: tuple[float, float, float]
    axis: tuple[float, float, float]
    length_mm: float
    width_mm: float
    depth_mm: float

    @property
    def volume_ml(self) -> float:
        return math.pi / 6.0 * self.length_mm * self.width_mm * self.depth_mm / 1000.0

    @property
    def bounding_radius_mm(self) -> float:
        return 0.5 * max(self.length_mm, self.width_mm, self.depth_mm)

    def contains(self, points_mm: np.ndarray) -> np.ndarray:
        """Boolean array: which of ``points_mm`` (..., 3) lie inside (boundary included)."""
        p = np.asarray(points_mm, float) - np.asarray(self.centre_mm)
        a = np.asarray(self.axis)
        u, v = perpendicular_axes(a)
        q = (p @ a / (0.5 * self.length_mm)) ** 2
        q += (p @ u / (0.5 * self.width_mm)) ** 2
        q += (p @ v / (0.5 * self.depth_mm)) ** 2
        inside: np.ndarray = q <= 1.0
        return inside


def zone_ellipsoid(applicator: Applicator, size: ZoneSize) -> ZoneEllipsoid:
    """Place a chart zone on an applicator: centre = tip + offset·direction."""
    d = np.asarray(applicator.direction)
    centre = np.asarray(applicator.tip_mm) + size.centre_offset_from_tip_mm * d
    return ZoneEllipsoid(tuple(centre.tolist()), tuple(d.tolist()), size.length_mm, size.width_mm, size.depth_mm)


def rasterise_zones(reference: Volume, ellipsoids: list[ZoneEllipsoid]) -> Volume:
    """Union of ellipsoids as a boolean Volume on ``reference``'s grid (voxel centres inside).

    Only the index-space bounding box of each ellipsoid is evaluated, so the cost does not
    grow with the CT size.
    """
    out = np.zeros(reference.shape, dtype=bool)
    shape = np.asarray(reference.shape)
    for e in ellipsoids:
        r = e.bounding_radius_mm
        c = np.asarray(e.centre_mm)
        corners = np.array([[c[0] + sx * r, c[1] + sy * r, c[2] + sz * r]
                            for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)])
        idx = reference.mm_to_index(corners)
        lo = np.clip(np.floor(idx.min(axis=0)).astype(int) - 1, 0, shape)
        hi = np.clip(np.ceil(idx.max(axis=0)).astype(int) + 2, 0, shape)
        if np.any(hi <= lo):
            continue
        kk, jj, ii = np.meshgrid(*(np.arange(a, b) for a, b in zip(lo, hi, strict=True)), indexing="ij")
        pts = reference.index_to_mm(np.stack([kk, jj, ii], axis=-1))
        out[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] |= e.contains(pts)
    return reference.with_array(out)


# --------------------------------------------------------------------------------------------
# MWA charts
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ChartRow:
    power_w: float
    time_s: float
    length_mm: float
    width_mm: float
    depth_mm: float
    centre_offset_from_tip_mm: float
    volume_ml: float
    flag: str = ""


@dataclass(frozen=True)
class DeviceChart:
    """One MWA antenna's chart: rows by power and time, with caveat and citation."""

    key: str
    label: str
    modality: str
    rows: tuple[ChartRow, ...]
    caveat: str
    citation: str
    offset_is_feed_point: bool = False

    def powers_w(self) -> list[float]:
        return sorted({r.power_w for r in self.rows})

    def times_s(self, power_w: float) -> list[float]:
        return sorted(r.time_s for r in self.rows if r.power_w == power_w)

    def row(self, power_w: float, time_s: float) -> ChartRow | None:
        for r in self.rows:
            if r.power_w == power_w and r.time_s == time_s:
                return r
        return None

    def calibration_rows(self) -> list[ChartRow]:
        """Rows usable for calibration (flagged-inconsistent rows left out)."""
        return [r for r in self.rows if not r.flag]

    def _at_power(self, power_w: float, time_s: float) -> tuple[np.ndarray, list[str]]:
        rows = sorted((r for r in self.rows if r.power_w == power_w), key=lambda r: r.time_s)
        times = [r.time_s for r in rows]
        if time_s < times[0] - 1e-9 or time_s > times[-1] + 1e-9:
            raise OutOfRangeError(
                f"{self.label}: {time_s:g} s is outside the chart's times at {power_w:g} W "
                f"({times[0]:g}–{times[-1]:g} s); latplan does not extrapolate charts. Choose a time in range."
            )
        vals = np.array([[r.length_mm, r.width_mm, r.depth_mm, r.centre_offset_from_tip_mm] for r in rows])
        out = np.array([np.interp(time_s, times, vals[:, c]) for c in range(4)])
        notes = []
        lo = max(i for i, t in enumerate(times) if t <= time_s + 1e-9)
        hi = min(i for i, t in enumerate(times) if t >= time_s - 1e-9)
        for i in {lo, hi}:
            if rows[i].flag:
                notes.append(
                    f"uses the {power_w:g} W/{times[i]:g} s chart row, flagged '{rows[i].flag}' in the source"
                )
        return out, notes

    def predict(self, power_w: float, time_s: float) -> ZoneSize:
        """Zone size at ``power_w`` (W) and ``time_s`` (s) by the module's interpolation rule.

        Raises :class:`OutOfRangeError` outside the chart.
        """
        powers = self.powers_w()
        if power_w < powers[0] - 1e-9 or power_w > powers[-1] + 1e-9:
            raise OutOfRangeError(
                f"{self.label}: {power_w:g} W is outside the chart's powers ({powers[0]:g}–{powers[-1]:g} W); "
                "latplan does not extrapolate charts."
            )
        p_lo = max(p for p in powers if p <= power_w + 1e-9)
        p_hi = min(p for p in powers if p >= power_w - 1e-9)
        v_lo, n_lo = self._at_power(p_lo, time_s)
        if p_hi == p_lo:
            vals, notes = v_lo, n_lo
            exact = self.row(p_lo, time_s) is not None
            method = "chart row" if exact else "chart, linear in time"
        else:
            v_hi, n_hi = self._at_power(p_hi, time_s)
            w = (power_w - p_lo) / (p_hi - p_lo)
            vals = (1 - w) * v_lo + w * v_hi
            notes = n_lo + n_hi
            method = "chart, linear in time then linear in power"
        if self.offset_is_feed_point:
            notes = [*notes, "the chart's constant centre offset is taken as the antenna feed point "
                             "and the zone is centred there"]
        return ZoneSize(
            modality=self.modality,
            device=self.key,
            length_mm=float(vals[0]),
            width_mm=float(vals[1]),
            depth_mm=float(vals[2]),
            centre_offset_from_tip_mm=float(vals[3]),
            settings={"power_w": float(power_w), "time_s": float(time_s)},
            caveat=self.caveat,
            method=method,
            notes=tuple(notes),
        )


def _read_yaml(name: str) -> dict[str, Any]:
    path = DATA_DIR / name
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise SourceDataError(f"cannot read device data {path}: {exc}") from exc
    if not isinstance(data, dict) or "caveat" not in data or "citation" not in data:
        raise SourceDataError(f"device data {path} must be a mapping with 'caveat' and 'citation'.")
    return data


@cache
def _mwa_data() -> dict[str, Any]:
    return _read_yaml("mwa_charts.yaml")


def mwa_devices() -> list[str]:
    """Keys of the MWA antennas with a chart (e.g. ``covidien_emprint``, ``amica``, ``acculis``)."""
    return list(_mwa_data()["devices"])


@cache
def load_mwa_chart(device: str = "covidien_emprint") -> DeviceChart:
    """The chart of one MWA antenna (see :func:`mwa_devices`)."""
    data = _mwa_data()
    if device not in data["devices"]:
        raise InvalidInputError(f"no MWA chart for device {device!r}; available: {', '.join(data['devices'])}.")
    d = data["devices"][device]
    rows = []
    for raw in d["rows"]:
        if len(raw) != 8:
            raise SourceDataError(f"MWA chart row {raw} of {device} must have 8 columns.")
        v = [float(x) for x in raw[:7]]
        rows.append(ChartRow(v[0], v[1], v[2], v[3], v[4], v[5], v[6], flag=str(raw[7] or "")))
    return DeviceChart(
        key=device,
        label=str(d["label"]),
        modality=str(d.get("modality", "mwa")),
        rows=tuple(rows),
        caveat=" ".join(str(data["caveat"]).split()),
        citation=" ".join(str(data["citation"]).split()),
        offset_is_feed_point=bool(d.get("offset_is_feed_point", False)),
    )


def chart_caveat(modality: str) -> str:
    """The caveat string shown with every chart-based zone of ``modality`` (mwa, rfa, cryo)."""
    m = modality.lower()
    if m == "mwa":
        return " ".join(str(_mwa_data()["caveat"]).split())
    if m == "rfa":
        return " ".join(str(_rfa_data()["caveat"]).split())
    if m == "cryo":
        return " ".join(str(_cryo_data()["caveat"]).split())
    raise InvalidInputError(f"no zone chart for modality {modality!r}; expected mwa, rfa or cryo.")


# --------------------------------------------------------------------------------------------
# RFA and cryo
# --------------------------------------------------------------------------------------------
@cache
def _rfa_data() -> dict[str, Any]:
    return _read_yaml("rfa_ex_vivo.yaml")


@cache
def _cryo_data() -> dict[str, Any]:
    return _read_yaml("cryo_isotherms.yaml")


def rfa_devices() -> list[str]:
    """Keys of the RFA systems with ex vivo volumes (``cooltip``, ``rita_1500x``, ``rf3000``, ``celon``)."""
    return list(_rfa_data()["devices"])


def rfa_zone_size(device: str = "cooltip", protocol: str = "3cm") -> ZoneSize:
    """Ex vivo RFA zone of ``device`` for the 3 cm or 5 cm protocol (PMC4463338).

    The published figure is a volume; it becomes a spheroid of the device's axial ratio
    (assumption in the data file): V = π/6·L·W², L = ratio·W.
    """
    data = _rfa_data()
    if device not in data["devices"]:
        raise InvalidInputError(f"no RFA data for device {device!r}; available: {', '.join(data['devices'])}.")
    d = data["devices"][device]
    if protocol not in d["protocols"]:
        raise OutOfRangeError(
            f"RFA device {device!r} has ex vivo data only for protocols {', '.join(d['protocols'])}; got {protocol!r}."
        )
    vol_ml = float(d["protocols"][protocol])
    ratio = float(d["axial_ratio"])
    width = (6.0 * vol_ml * 1000.0 / (math.pi * ratio)) ** (1.0 / 3.0)
    return ZoneSize(
        modality="rfa",
        device=device,
        length_mm=ratio * width,
        width_mm=width,
        depth_mm=width,
        centre_offset_from_tip_mm=float(d["centre_offset_from_tip_mm"]),
        settings={"protocol": protocol, "ex_vivo_volume_ml": vol_ml},
        caveat=chart_caveat("rfa"),
        method="ex vivo volume → spheroid (axial ratio assumed)",
        notes=(f"{d['label']}: {vol_ml:g} ml ex vivo ({protocol} protocol, PMC4463338)",),
    )


def cryo_probes() -> list[str]:
    """Keys of the cryoprobe types with measured lethal diameters (``cryo_1.7mm``, ``cryo_2.4mm``)."""
    return list(_cryo_data()["probes"])


def cryo_zone_size(probe_count: int, probe: str = "cryo_2.4mm") -> ZoneSize:
    """Lethal zone of a cluster of ``probe_count`` probes of type ``probe`` 2 cm apart
    (Littrup 2009, PMC2762356: agar at 39 °C, one 15-min freeze; lethal isotherm of the data file).

    Width (the largest extent across the probes, the measure of the source) from the probe's
    table; length along the probes, depth (smallest extent across) as depth/width × width, and
    the centre's offset from the tips from the probe's ``chart_shape`` — the calibrated physics'
    −30 °C isotherm in the source's phantom (data file; the source gives no lengths). Width runs
    along the first perpendicular axis of the applicator (the pair axis of a 2-probe cluster,
    :func:`cryo_probe_offsets_mm`)."""
    data = _cryo_data()
    if probe not in data["probes"]:
        raise InvalidInputError(f"no cryoprobe {probe!r} in cryo_isotherms.yaml; available: {', '.join(data['probes'])}.")
    p = data["probes"][probe]
    table = {int(k): float(v) for k, v in p["lethal_diameter_mm"].items()}
    if probe_count not in table:
        raise OutOfRangeError(
            f"cryo lethal-zone data exist for {min(table)}–{max(table)} probes 2 cm apart; got {probe_count}."
        )
    shapes = {int(k): v for k, v in (p.get("chart_shape") or {}).items()}
    if probe_count not in shapes:
        raise SourceDataError(f"cryo_isotherms.yaml: probe {probe!r} has no chart_shape for {probe_count} probes; "
                              "re-derive it (cryo_calibration.derive_chart_shapes).")
    shape = shapes[probe_count]
    dia = table[probe_count]
    lethal = float(data["lethal_isotherm_c"])
    own = _cryo_probe_isotherms(data, probe, probe_count)
    return ZoneSize(
        modality="cryo",
        device=f"{probe}_{probe_count}_probes",
        length_mm=float(shape["length_mm"]),
        width_mm=dia,
        depth_mm=dia * float(shape["depth_over_width"]),
        centre_offset_from_tip_mm=float(shape["centre_offset_from_tip_mm"]),
        settings={
            "probe": probe,
            "probe_diameter_mm": float(p["diameter_mm"]),
            "probe_count": probe_count,
            "probe_spacing_mm": float(data["probe_spacing_mm"]),
            "protocol": "chart: one 15-min freeze (phantom); physics: freeze 10 – thaw 8 – freeze 10 min",
            "lethal_isotherm_c": lethal,
            "lethal_isotherm_source": " ".join(str(data["lethal_isotherm_source"]).split()),
            **own,
        },
        caveat=chart_caveat("cryo"),
        method="published lethal-isotherm diameter by probe type and count; length/depth from the calibrated physics",
        notes=(f"lethal ({lethal:g} °C, Littrup 2009) diameter {dia:g} mm for {probe_count} {p['label']}(s) 2 cm "
               "apart (PMC2762356); length and depth: latplan's calibrated cryo physics in the same phantom "
               "(30 mm freezing segment assumed)",),
    )


def _cryo_probe_isotherms(data: dict[str, Any], probe: str, probe_count: int) -> dict[str, Any]:
    """The probe type's own published isotherm diameters (``isotherm_measurements`` entries whose
    ``probe_key`` is ``probe`` and ``probe_count`` matches): reference values carried with the chart
    zone (level °C as text → mean diameter mm), their conditions and source; empty when none."""
    for key, m in (data.get("isotherm_measurements") or {}).items():
        if m.get("probe_key") != probe or int(m.get("probe_count", 0)) != probe_count:
            continue
        dia = {f"{float(lv):g}": float(v[0]) for lv, v in (m.get("isotherm_diameter_mm") or {}).items()}
        return {"probe_isotherm_diameters_mm": dia, "probe_isotherm_data": key,
                "probe_isotherm_conditions": f"{m['probe']}; {m['tissue']}; {m['protocol']}",
                "probe_isotherm_source": " ".join(str(m["citation"]).split())}
    return {}


def cryo_probe_offsets_mm(probe_count: int, spacing_mm: float = 20.0) -> np.ndarray:
    """In-plane probe positions (n, 2) around the cluster centre: point, pair, triangle, square."""
    if probe_count == 1:
        return np.zeros((1, 2))
    if probe_count == 2:
        return np.array([[-0.5, 0.0], [0.5, 0.0]]) * spacing_mm
    if probe_count == 3:
        r = spacing_mm / math.sqrt(3.0)
        return np.array([[r * math.cos(a), r * math.sin(a)] for a in (math.pi / 2, math.pi / 2 + 2 * math.pi / 3,
                                                                      math.pi / 2 + 4 * math.pi / 3)])
    if probe_count == 4:
        return np.array([[-0.5, -0.5], [0.5, -0.5], [0.5, 0.5], [-0.5, 0.5]]) * spacing_mm
    raise OutOfRangeError(f"cryo probe patterns exist for 1–4 probes; got {probe_count}.")


@cache
def uncertainty_data() -> dict[str, Any]:
    """The zone-uncertainty data file (parameter bounds, derived bands; see
    :mod:`latplan.physics.zone_uncertainty`)."""
    return _read_yaml("zone_uncertainty.yaml")


def zone_uncertainty_bounds(modality: str) -> tuple[float, float]:
    """(lower, upper) change of a thermal zone's equivalent diameter (fractions, lower ≤ 0 ≤ upper)
    at the parameter bounds, or of the lethal field threshold for ``ect``/``ire`` — derived from
    the physics (data file ``derived``), HIFU an assumed fraction."""
    data = uncertainty_data()
    derived = data.get("derived") or {}
    key = str(data.get("ect_uses", "ire_threshold")) if modality == "ect" else \
        "ire_threshold" if modality == "ire" else modality
    if key in derived:
        return float(derived[key]["lower"]), float(derived[key]["upper"])
    assumed = data.get("assumed_fraction_of_diameter") or {}
    if modality in assumed:
        f = float(assumed[modality])
        return -f, f
    known = sorted({*derived, *assumed, "ect", "ire"} - {"ire_threshold"})
    raise SourceDataError(f"zone_uncertainty.yaml has no band for {modality!r} (known: {', '.join(known)}); "
                          "derive it: python -m latplan.physics.zone_uncertainty.")


def zone_uncertainty_fraction(modality: str) -> float:
    """Symmetric zone-size uncertainty of a thermal modality as a fraction of the zone diameter,
    or of the lethal field threshold for ``ect``/``ire``: the larger side of
    :func:`zone_uncertainty_bounds` (the band the plan's ranges use)."""
    lo, hi = zone_uncertainty_bounds(modality)
    return max(-lo, hi)
