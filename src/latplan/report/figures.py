"""Figures clinicians expect (listed in docs/report.md), for the report and the web app.

Every function here *draws* results that were computed elsewhere; the only numbers
computed here are those needed to place things on a picture (slice positions, the
location of the minimal margin, a field of view).

Conventions (checked by tests/report/test_report_figures.py):

* Slices are resampled in **mm** on a square pixel grid through a point in LPS, so the
  aspect ratio is true whatever the voxel spacing or the image orientation (oblique
  affines included): each view samples the volume at LPS points, never by array index.
* Radiological convention: on axial and coronal views the patient's right is on the
  image left; sagittal views show anterior on the left. Every slice carries its
  orientation letters (A/P/L/R/S/I) at its four edges and a scale bar in mm.
* Structure outlines use the one colour table of :mod:`latplan.report.colours`; every
  picture has a legend; isodose lines are labelled in Gy and in % of the prescription.
* Matplotlib is used object-oriented on the Agg canvas (no ``pyplot`` state), so the
  web app can call these functions from worker threads.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from matplotlib import patheffects
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import PathCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.path import Path
from scipy import ndimage

from latplan.case.vocabulary import StructureRole
from latplan.errors import EmptyStructureError, InvalidInputError
from latplan.imaging.volume import Volume
from latplan.report.colours import (
    MARGIN_BIN_COLOURS,
    OVERLAY_COLOURS,
    colour_for,
    isodose_colour,
)

__all__ = [
    "PLANES",
    "LegendEntry",
    "SliceDrawing",
    "ablation_figure",
    "draw_slice",
    "dvh_figure",
    "figure_png",
    "heat_sink_figure",
    "isodose_figure",
    "lesion_centre_mm",
    "lesion_views_figure",
    "margin_histogram_figure",
    "minimal_margin_point",
    "plan_figures",
    "sbrt_figure",
    "territory_figure",
    "thumbnail_figure",
]

#: CT soft-tissue window (HU): width 400, level 50 — the usual abdominal window
CT_WINDOW_HU: tuple[float, float] = (400.0, 50.0)
#: default isodose levels in % of the prescription (issue 6)
DEFAULT_ISODOSE_PERCENTS: tuple[float, ...] = (50.0, 100.0, 150.0, 200.0)
#: roles not outlined on anatomy views (too busy); segments appear on the territory view
_SKIP_ROLES = frozenset({StructureRole.LIVER_SEGMENT, StructureRole.BODY, StructureRole.OTHER})

_TEXT_STROKE = [patheffects.withStroke(linewidth=2.5, foreground="black")]


@dataclass(frozen=True)
class PlaneSpec:
    """A view: in-plane unit vectors (LPS) for image columns (u) and rows downward (v)."""

    name: str
    u: tuple[float, float, float]
    v: tuple[float, float, float]
    edges: tuple[str, str, str, str]  # letters at left, right, top, bottom

    @property
    def normal(self) -> np.ndarray:
        return np.cross(np.asarray(self.u), np.asarray(self.v))


#: LPS: +x = patient left, +y = posterior, +z = superior
PLANES: dict[str, PlaneSpec] = {
    "axial": PlaneSpec("axial", (1.0, 0.0, 0.0), (0.0, 1.0, 0.0), ("R", "L", "A", "P")),
    "coronal": PlaneSpec("coronal", (1.0, 0.0, 0.0), (0.0, 0.0, -1.0), ("R", "L", "S", "I")),
    "sagittal": PlaneSpec("sagittal", (0.0, 1.0, 0.0), (0.0, 0.0, -1.0), ("A", "P", "S", "I")),
}


@dataclass
class LegendEntry:
    label: str
    colour: str
    kind: str = "line"  # line | dashed | fill | marker


@dataclass
class SliceDrawing:
    """What one slice shows: for legends, tests and the web app's hover text."""

    plane: str
    centre_mm: np.ndarray
    fov_mm: float
    pixel_mm: float
    structures: list[str] = field(default_factory=list)
    legend: list[LegendEntry] = field(default_factory=list)
    isodose_gy: dict[float, float] = field(default_factory=dict)  # percent → Gy actually drawn

    def mm_to_pixel(self, point_mm: Sequence[float] | np.ndarray) -> tuple[float, float]:
        """(column, row) in image pixels of an LPS point projected on this plane."""
        spec = PLANES[self.plane]
        d = np.asarray(point_mm, float) - self.centre_mm
        n = round(self.fov_mm / self.pixel_mm)
        c = float(d @ np.asarray(spec.u)) / self.pixel_mm + (n - 1) / 2
        r = float(d @ np.asarray(spec.v)) / self.pixel_mm + (n - 1) / 2
        return c, r


# --------------------------------------------------------------------------------------------
# sampling
# --------------------------------------------------------------------------------------------
def _plane_points(spec: PlaneSpec, centre_mm: np.ndarray, fov_mm: float, pixel_mm: float) -> np.ndarray:
    n = max(round(fov_mm / pixel_mm), 2)
    offs = (np.arange(n) - (n - 1) / 2) * pixel_mm
    cc, rr = np.meshgrid(offs, offs, indexing="xy")  # rr varies along rows
    return centre_mm + cc[..., None] * np.asarray(spec.u) + rr[..., None] * np.asarray(spec.v)


def _sample(volume: Volume, points_mm: np.ndarray, *, order: int, cval: float, as_float_of: Any = None) -> np.ndarray:
    """Sample ``volume`` at LPS points (n, n, 3); outside the grid → ``cval``.

    Only the index bounding box of the points is read, so sampling one plane of a large
    CT touches a thin slab, not the whole array.
    """
    idx = volume.mm_to_index(points_mm)  # (n, n, 3) k, j, i
    shape = np.asarray(volume.shape)
    lo = np.floor(idx.reshape(-1, 3).min(axis=0)).astype(int) - 1
    hi = np.ceil(idx.reshape(-1, 3).max(axis=0)).astype(int) + 2
    lo_c = np.clip(lo, 0, shape)
    hi_c = np.clip(hi, 0, shape)
    out_shape = points_mm.shape[:2]
    if np.any(hi_c <= lo_c):
        return np.full(out_shape, cval, dtype=float)
    sub = volume.array[lo_c[0] : hi_c[0], lo_c[1] : hi_c[1], lo_c[2] : hi_c[2]]
    sub = sub.astype(np.float32) if as_float_of is None else as_float_of(sub)
    coords = (idx - lo_c).transpose(2, 0, 1)
    # points outside the whole grid (not just outside the crop) get cval
    inside = np.all((idx > -0.5) & (idx < shape - 0.5), axis=-1)
    res = ndimage.map_coordinates(sub, coords, order=order, mode="nearest", output=np.float64)
    res[~inside] = cval
    return res


def lesion_centre_mm(mask: Volume) -> np.ndarray:
    """Centroid (LPS mm) of a boolean mask; raises EmptyStructureError on an empty mask."""
    arr = np.asarray(mask.array, bool)
    if not arr.any():
        raise EmptyStructureError("cannot place a slice on an empty structure: its mask holds no voxel.")
    kji = np.argwhere(arr).mean(axis=0)
    return mask.index_to_mm(kji)


def _extent_mm(mask: Volume) -> float:
    """Largest bounding-box side (mm) of a mask, measured in LPS."""
    pts = mask.index_to_mm(np.argwhere(np.asarray(mask.array, bool)).astype(float))
    if len(pts) == 0:
        return 0.0
    return float(np.max(pts.max(axis=0) - pts.min(axis=0)) + max(mask.spacing_mm))


def _default_fov_mm(case: Any, lesion_id: str | None) -> float:
    if lesion_id is None:
        return 160.0
    ext = _extent_mm(case.lesion_mask(lesion_id))
    return float(min(max(100.0, 2.5 * ext + 40.0), 240.0))


def _nice_length(target_mm: float) -> float:
    for step in (5, 10, 20, 25, 50, 100, 200):
        if step >= target_mm:
            return float(step)
    return 500.0


# --------------------------------------------------------------------------------------------
# one slice
# --------------------------------------------------------------------------------------------
def draw_slice(
    ax: Any,
    case: Any,
    plane: str,
    centre_mm: Sequence[float] | np.ndarray,
    *,
    fov_mm: float = 120.0,
    pixel_mm: float | None = None,
    window_hu: tuple[float, float] | None = None,
    structures: Iterable[str] | None = None,
    highlight: str | None = None,
    fill: Mapping[str, float] | None = None,
    fill_colour: str | None = None,
    zone: Volume | None = None,
    zone_label: str = "predicted ablation zone",
    target: Volume | None = None,
    target_label: str = "target (PTV/CTV)",
    heat_sink_lost: Volume | None = None,
    dose: Volume | None = None,
    prescription_gy: float | None = None,
    isodose_percents: Sequence[float] = DEFAULT_ISODOSE_PERCENTS,
    field_v_per_cm: Volume | None = None,
    field_threshold_v_per_cm: float | None = None,
    markers: Sequence[tuple[Sequence[float], str]] = (),
    applicators: Sequence[Mapping[str, Any]] = (),
    title: str | None = None,
    scale_bar: bool = True,
    small: bool = False,
) -> SliceDrawing:
    """Draw one resampled slice with outlines and overlays on the matplotlib axes ``ax``.

    Parameters (units in names): ``centre_mm`` LPS point the plane passes through;
    ``fov_mm`` side of the square field of view; ``pixel_mm`` display pixel (default
    fov/256); ``window_hu`` (width, level) for CT; ``structures`` names to outline
    (default: every structure except segments/body/other); ``fill`` name → alpha of a
    translucent fill; ``zone``/``target`` boolean Volumes (own grid allowed);
    ``dose`` in Gy with ``prescription_gy``; ``field_v_per_cm`` with its threshold;
    ``markers`` (LPS point, label). Returns a :class:`SliceDrawing`.
    """
    if plane not in PLANES:
        raise InvalidInputError(f"unknown plane {plane!r}; expected one of {', '.join(PLANES)}.")
    spec = PLANES[plane]
    centre = np.asarray(centre_mm, dtype=float)
    pixel_mm = float(pixel_mm or fov_mm / 256.0)
    pts = _plane_points(spec, centre, fov_mm, pixel_mm)
    n = pts.shape[0]
    drawing = SliceDrawing(plane, centre, fov_mm, pixel_mm)

    _draw_image(ax, case, pts, window_hu)
    lw = 1.0 if small else 1.4
    _draw_structures(ax, case, drawing, pts, structures, highlight=highlight, fill=dict(fill or {}),
                     fill_colour=fill_colour, lw=lw)
    _draw_mask_overlays(ax, drawing, pts, lw, zone=zone, zone_label=zone_label, heat_sink_lost=heat_sink_lost,
                        target=target, target_label=target_label, field_v_per_cm=field_v_per_cm,
                        field_threshold_v_per_cm=field_threshold_v_per_cm)
    if dose is not None:
        _draw_isodoses(ax, drawing, pts, lw, dose, prescription_gy, isodose_percents)
    _draw_applicators(ax, drawing, applicators, lw)
    _draw_markers(ax, drawing, markers, small)

    fs = 8 if small else 11
    _draw_orientation_letters(ax, spec, fs)
    if scale_bar:
        _draw_scale_bar(ax, n, fov_mm, pixel_mm, fs, small)
    if title is None:
        title = _default_title(plane, centre)
    ax.set_title(title, fontsize=fs - 1)
    return drawing


def _draw_image(ax: Any, case: Any, pts: np.ndarray, window_hu: tuple[float, float] | None) -> None:
    """The grey image of the plane: CT in a (width, level) window, other modalities in their 1–99 % range."""
    n = pts.shape[0]
    img = _sample(case.image, pts, order=1, cval=np.nan)
    modality = str(getattr(case, "image_modality", "CT") or "CT").upper()
    if modality == "CT":
        width, level = window_hu or CT_WINDOW_HU
        vmin, vmax = level - width / 2, level + width / 2
    else:
        finite = img[np.isfinite(img)]
        vmin, vmax = (np.percentile(finite, [1, 99]) if finite.size else (0.0, 1.0))
    cmap = _grey_cmap()
    ax.imshow(img, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="bilinear", origin="upper")
    ax.set_xlim(-0.5, n - 0.5)
    ax.set_ylim(n - 0.5, -0.5)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_facecolor("black")


def _draw_structures(
    ax: Any,
    case: Any,
    drawing: SliceDrawing,
    pts: np.ndarray,
    structures: Iterable[str] | None,
    *,
    highlight: str | None,
    fill: dict[str, float],
    fill_colour: str | None,
    lw: float,
) -> None:
    """Outline (and optionally fill) the structures on the plane, recording them and their legend entries.

    One nearest-neighbour sample of the label map; each outline is the 0.5 contour of a
    structure's 2-D mask on the display grid (pixel ≤ voxel, so outlines follow voxel edges).
    """
    names = _structures_on_plane(case, case.labels.mm_to_index(pts), structures)
    label_plane = _sample(case.labels, pts, order=0, cval=0.0) if names else None
    for name in names:
        try:
            role = case.role(name)
        except Exception:
            role = None
        if structures is None and role in _SKIP_ROLES and name not in fill and name != highlight:
            continue
        assert label_plane is not None  # names is non-empty here, so the plane was sampled
        m = np.isin(label_plane, _structure_values(case, name)).astype(np.float32)
        if not m.any():
            continue
        colour = colour_for(name, role)
        width = lw * (2.0 if name == highlight else 1.0)
        if name in fill:
            _fill_between(ax, m, 0.5, 1.5, fill_colour or colour, alpha=fill[name])
        _iso_line(ax, m, 0.5, colour, width)
        drawing.structures.append(name)
        drawing.legend.append(_structure_legend(name, role, colour, fill, fill_colour))


def _structure_legend(name: str, role: Any, colour: str, fill: Mapping[str, float],
                      fill_colour: str | None) -> LegendEntry:
    """The legend entry of one drawn structure."""
    if name in fill and fill_colour:
        return LegendEntry(f"{name.replace('_', ' ')} (treated territory)", fill_colour, "fill")
    if role == StructureRole.LIVER_SEGMENT and name not in fill:
        return LegendEntry("other liver segments (boundaries)", colour, "line")
    return LegendEntry(name.replace("_", " "), colour, "fill" if name in fill else "line")


def _draw_mask_overlays(
    ax: Any,
    drawing: SliceDrawing,
    pts: np.ndarray,
    lw: float,
    *,
    zone: Volume | None,
    zone_label: str,
    heat_sink_lost: Volume | None,
    target: Volume | None,
    target_label: str,
    field_v_per_cm: Volume | None,
    field_threshold_v_per_cm: float | None,
) -> None:
    """Ablation zone, heat-sink loss, target and electric-field overlays, in that order."""
    if zone is not None:
        z = _sample(zone, pts, order=1, cval=0.0)
        if z.max() >= 0.5:
            _fill_between(ax, z, 0.5, 1.5, OVERLAY_COLOURS["zone"], alpha=0.22)
            _iso_line(ax, z, 0.5, OVERLAY_COLOURS["zone"], lw * 1.4)
        drawing.legend.append(LegendEntry(zone_label, OVERLAY_COLOURS["zone"], "fill"))
    if heat_sink_lost is not None:
        hl = _sample(heat_sink_lost, pts, order=0, cval=0.0)
        if hl.max() >= 0.5:
            ax.contourf(hl, levels=[0.5, 1.5], colors="none", hatches=["////"])
            _iso_line(ax, hl, 0.5, OVERLAY_COLOURS["heat_sink"], lw * 1.2)
        drawing.legend.append(LegendEntry("zone lost to the vessel's heat sink", OVERLAY_COLOURS["heat_sink"], "line"))
    if target is not None:
        t = _sample(target, pts, order=1, cval=0.0)
        if t.max() >= 0.5:
            _iso_line(ax, t, 0.5, OVERLAY_COLOURS["target"], lw, linestyle="dashed")
        drawing.legend.append(LegendEntry(target_label, OVERLAY_COLOURS["target"], "dashed"))
    if field_v_per_cm is not None and field_threshold_v_per_cm is not None:
        f = _sample(field_v_per_cm, pts, order=1, cval=0.0)
        if f.max() >= field_threshold_v_per_cm:
            _iso_line(ax, f, field_threshold_v_per_cm, OVERLAY_COLOURS["zone"], lw * 1.4, linestyle="dotted")
        drawing.legend.append(
            LegendEntry(f"|E| ≥ {field_threshold_v_per_cm:.0f} V/cm", OVERLAY_COLOURS["zone"], "dashed")
        )


def _draw_isodoses(ax: Any, drawing: SliceDrawing, pts: np.ndarray, lw: float, dose: Volume,
                   prescription_gy: float | None, isodose_percents: Sequence[float]) -> None:
    """Isodose lines at percentages of the prescription dose, recording the Gy actually drawn."""
    if prescription_gy is None or not prescription_gy > 0:
        raise InvalidInputError("isodose lines need the prescription dose (Gy > 0) of the plan.")
    d = _sample(dose, pts, order=1, cval=0.0)
    for pct in sorted(isodose_percents):
        level_gy = prescription_gy * pct / 100.0
        colour = isodose_colour(pct)
        if d.max() >= level_gy:
            _iso_line(ax, d, level_gy, colour, lw * 1.2)
        drawing.isodose_gy[float(pct)] = level_gy
        drawing.legend.append(LegendEntry(f"{pct:g} % = {level_gy:.1f} Gy", colour, "line"))


# Contours drawn as plain path collections. ``ax.contour``/``ax.contourf`` build a ContourSet with a
# colormap, a norm and level bookkeeping for every outline (measured: a quarter of a report's figure
# time); these draw the same paths -- contourpy's mpl2014 algorithm with corner masking on the
# pixel-index grid, as matplotlib's contour uses by default -- with the same styles (lines: zorder 2,
# antialiased; fills: zorder 1, not antialiased, no edge), so the pictures are unchanged.
def _contour_generator(z: np.ndarray) -> Any:
    import contourpy

    return contourpy.contour_generator(z=np.ma.masked_invalid(np.asarray(z, np.float64), copy=False),
                                       name="mpl2014", corner_mask=True, line_type=contourpy.LineType.SeparateCode,
                                       fill_type=contourpy.FillType.OuterCode, chunk_size=0)


def _iso_line(ax: Any, z: np.ndarray, level: float, colour: str, linewidth: float, *,
              linestyle: str = "solid") -> None:
    """The ``level`` contour line of ``z`` (pixel-index coordinates), as ``ax.contour`` draws it."""
    vertices, codes = _contour_generator(z).create_contour(level)
    if not len(vertices):
        return
    coll = PathCollection([Path(np.concatenate(vertices), np.concatenate(codes))], facecolors="none",
                          edgecolors=[colour], linewidths=[linewidth], linestyles=[linestyle], zorder=2,
                          label="_nolegend_")
    ax.add_collection(coll, autolim=False)


def _fill_between(ax: Any, z: np.ndarray, lower: float, upper: float, colour: str, *, alpha: float) -> None:
    """The region lower < z <= upper filled, as ``ax.contourf(z, levels=[lower, upper])`` draws it."""
    if float(np.nanmin(z)) == lower:  # contourf includes the minimum in its lowest interval
        lower -= 1.0
    vertices, codes = _contour_generator(z).create_filled_contour(lower, upper)
    if not len(vertices):
        return
    coll = PathCollection([Path(np.concatenate(vertices), np.concatenate(codes))], facecolors=[colour],
                          edgecolors="none", alpha=alpha, antialiaseds=False, zorder=1)
    ax.add_collection(coll, autolim=False)


def _draw_applicators(ax: Any, drawing: SliceDrawing, applicators: Sequence[Mapping[str, Any]], lw: float) -> None:
    """Applicators projected on the plane; one legend entry for all of them."""
    for app in applicators:
        seg = _applicator_segment(app)
        if seg is None:
            continue
        (c0, r0), (c1, r1) = (drawing.mm_to_pixel(p) for p in seg)
        ax.plot([c0, c1], [r0, r1], color=OVERLAY_COLOURS["applicator"], lw=lw, ls=(0, (4, 2)), alpha=0.9)
        if not any(e.label.startswith("applicator") for e in drawing.legend):
            drawing.legend.append(LegendEntry("applicator (projected)", OVERLAY_COLOURS["applicator"], "dashed"))


def _draw_markers(ax: Any, drawing: SliceDrawing, markers: Sequence[tuple[Sequence[float], str]],
                  small: bool) -> None:
    """Labelled point markers (for instance the minimal-margin point)."""
    for point, label in markers:
        c, r = drawing.mm_to_pixel(point)
        ax.plot([c], [r], marker="x", ms=11 if not small else 7, mew=2.5, color=OVERLAY_COLOURS["min_margin"],
                path_effects=_TEXT_STROKE)
        drawing.legend.append(LegendEntry(label, OVERLAY_COLOURS["min_margin"], "marker"))


def _draw_orientation_letters(ax: Any, spec: PlaneSpec, fs: float) -> None:
    """Patient-direction letters at the four edges of the image."""
    left, right, top, bottom = spec.edges
    kw = dict(color="white", fontsize=fs, fontweight="bold", path_effects=_TEXT_STROKE, transform=ax.transAxes)
    ax.text(0.015, 0.5, left, ha="left", va="center", **kw)
    ax.text(0.985, 0.5, right, ha="right", va="center", **kw)
    ax.text(0.5, 0.985, top, ha="center", va="top", **kw)
    ax.text(0.5, 0.015, bottom, ha="center", va="bottom", **kw)


def _draw_scale_bar(ax: Any, n: int, fov_mm: float, pixel_mm: float, fs: float, small: bool) -> None:
    """A scale bar of a round length (about a fifth of the field of view) at the lower right."""
    bar_mm = _nice_length(fov_mm / 5.0)
    bar_px = bar_mm / pixel_mm
    x1 = n - 0.05 * n
    y = n - 0.06 * n
    ax.plot([x1 - bar_px, x1], [y, y], color="white", lw=2.5 if not small else 1.6, solid_capstyle="butt",
            path_effects=[patheffects.withStroke(linewidth=4, foreground="black")])
    ax.text(x1 - bar_px / 2, y - 0.015 * n, f"{bar_mm:g} mm", color="white", ha="center", va="bottom",
            fontsize=fs - 2, path_effects=_TEXT_STROKE)


def _default_title(plane: str, centre: np.ndarray) -> str:
    """``"<plane> · <axis> = <coordinate> mm"`` of the plane through ``centre``."""
    axis = {"axial": 2, "coronal": 1, "sagittal": 0}[plane]
    letter = "xyz"[axis]
    return f"{plane} · {letter} = {centre[axis]:.1f} mm"


def _grey_cmap() -> Any:
    import matplotlib

    return matplotlib.colormaps["gray"].with_extremes(bad="black")


def _structures_on_plane(case: Any, idx: np.ndarray, wanted: Iterable[str] | None) -> list[str]:
    """Names of structures whose labels occur in the index bounding box of the plane."""
    shape = np.asarray(case.labels.shape)
    lo = np.clip(np.floor(idx.reshape(-1, 3).min(axis=0)).astype(int) - 1, 0, shape)
    hi = np.clip(np.ceil(idx.reshape(-1, 3).max(axis=0)).astype(int) + 2, 0, shape)
    if np.any(hi <= lo):
        return []
    sub = case.labels.array[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
    present = set(np.unique(sub).tolist())
    names = [nm for nm in case.label_table.names() if any(v in present for v in _structure_values(case, nm))]
    if "liver" not in names and any(v in present for v in _structure_values(case, "liver")):
        names.insert(0, "liver")
    if wanted is not None:
        wanted = list(wanted)
        names = [nm for nm in names if nm in wanted]
    # lesions last so that they are drawn on top of organs
    return sorted(names, key=lambda nm: nm.startswith("lesion"))


def _structure_values(case: Any, name: str) -> list[int]:
    """Label values of a structure; the liver is the union of its own label and its segments.

    Why: a label map holds one value per voxel, so a case with Couinaud segments labels
    liver parenchyma as segments; the liver outline must still be drawn.
    """
    values = list(case.label_table.values_for(name))
    if name == "liver":
        for nm in case.label_table.names():
            if nm.startswith("liver_segment_"):
                values.extend(case.label_table.values_for(nm))
    return values


def _applicator_segment(app: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray] | None:
    """Two LPS end points of an applicator dict, whichever key convention the planner used."""
    for a, b in (("tip_mm", "entry_mm"), ("start_mm", "end_mm"), ("tip_mm", "hub_mm"), ("p0_mm", "p1_mm")):
        if a in app and b in app:
            try:
                return np.asarray(app[a], float).reshape(3), np.asarray(app[b], float).reshape(3)
            except (TypeError, ValueError):
                return None
    pts = app.get("points_mm") or app.get("path_mm")
    if pts is not None:
        arr = np.asarray(pts, float)
        if arr.ndim == 2 and arr.shape[1] == 3 and len(arr) >= 2:
            return arr[0], arr[-1]
    return None


# --------------------------------------------------------------------------------------------
# composite figures
# --------------------------------------------------------------------------------------------
def _new_figure(width_in: float, height_in: float) -> Figure:
    fig = Figure(figsize=(width_in, height_in), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _add_legend(fig: Figure, entries: Iterable[LegendEntry], *, ncol: int = 4, fontsize: float = 9) -> None:
    seen: dict[str, LegendEntry] = {}
    for e in entries:
        seen.setdefault(e.label, e)
    handles: list[Any] = []  # Patch and Line2D legend handles
    for e in seen.values():
        if e.kind == "fill":
            handles.append(Patch(facecolor=e.colour, edgecolor=e.colour, alpha=0.8, label=e.label))
        elif e.kind == "marker":
            handles.append(Line2D([], [], color="black", marker="x", ls="", ms=8, mew=2, label=e.label))
        else:
            handles.append(Line2D([], [], color=e.colour, lw=2.2, ls="--" if e.kind == "dashed" else "-", label=e.label))
    if handles:
        fig.legend(handles=handles, loc="lower center", ncol=min(ncol, len(handles)), fontsize=fontsize,
                   frameon=False, handlelength=1.8, columnspacing=1.2)


def _three_views(
    case: Any,
    centre_mm: np.ndarray,
    *,
    fov_mm: float,
    suptitle: str | None,
    planes: Sequence[str] = ("axial", "coronal", "sagittal"),
    legend: bool = True,
    small: bool = False,
    panel_in: float = 3.4,
    **kwargs: Any,
) -> tuple[Figure, list[SliceDrawing]]:
    fig = _new_figure(panel_in * len(planes), panel_in)
    drawings = []
    axes = np.atleast_1d(fig.subplots(1, len(planes)))
    for ax, plane in zip(axes, planes, strict=True):
        drawings.append(draw_slice(ax, case, plane, centre_mm, fov_mm=fov_mm, small=small, **kwargs))
    entries = [e for d in drawings for e in d.legend] if legend else []
    n_rows = math.ceil(len({e.label for e in entries}) / 4)
    panel_h = panel_in * 0.97 + (0.0 if small else 0.3)          # square image + its title
    title_h = (0.45 if suptitle else 0.05) if not small else 0.05
    legend_h = 0.12 + 0.24 * n_rows if n_rows else 0.05
    height = panel_h + title_h + legend_h
    fig.set_size_inches(panel_in * len(planes), height)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=legend_h / height, top=1 - title_h / height, wspace=0.04)
    if entries:
        _add_legend(fig, entries)
    if suptitle:
        fig.suptitle(suptitle, fontsize=12 if not small else 9, fontweight="bold", y=1 - 0.06 / height)
    return fig, drawings


def lesion_views_figure(
    case: Any, lesion_id: str, *, fov_mm: float | None = None, centre_mm: Sequence[float] | None = None,
    title: str | None = None,
) -> tuple[Figure, list[SliceDrawing]]:
    """Axial, coronal and sagittal slices through a lesion with all structures outlined + legend."""
    mask = case.lesion_mask(lesion_id)
    centre = lesion_centre_mm(mask) if centre_mm is None else np.asarray(centre_mm, float)
    fov = fov_mm or _default_fov_mm(case, lesion_id)
    return _three_views(case, centre, fov_mm=fov, highlight=lesion_id,
                        suptitle=title if title is not None else f"{lesion_id.replace('_', ' ')}: anatomy")


def thumbnail_figure(case: Any, lesion_id: str, *, fov_mm: float | None = None) -> tuple[Figure, list[SliceDrawing]]:
    """Small 3-view thumbnail of a lesion (for the lesions table): outlines, letters, no legend."""
    mask = case.lesion_mask(lesion_id)
    fov = fov_mm or _default_fov_mm(case, lesion_id)
    return _three_views(case, lesion_centre_mm(mask), fov_mm=fov, highlight=lesion_id, suptitle=None,
                        legend=False, small=True, panel_in=1.45, title="", scale_bar=True)


def minimal_margin_point(lesion: Volume, zone: Volume) -> tuple[float, np.ndarray]:
    """Signed minimal margin (mm) of a zone around a lesion, and the LPS point where it occurs.

    For every lesion surface voxel: + distance to the nearest voxel outside the zone when
    the voxel lies inside the zone, − distance to the nearest zone voxel otherwise; the
    minimum over the surface is the minimal margin (voxel-resolution estimate, used here to
    *place the marker*; the plan's own ``min_margin_mm`` is the number reported). The lesion
    is brought onto the zone grid by nearest-neighbour lookup when the grids differ.
    """
    z = np.asarray(zone.array, bool)
    if not z.any():
        raise EmptyStructureError("the ablation zone is empty: no margin can be located.")
    if lesion.same_geometry(zone):
        les = np.asarray(lesion.array, bool)
    else:
        les = _sample_on_grid(lesion, zone) >= 0.5
    if not les.any():
        raise EmptyStructureError("the lesion does not overlap the zone's grid: no margin can be located.")
    # work in the bounding box of zone ∪ lesion (+ 3 voxels): the distances beyond it are not needed
    both = np.argwhere(z | les)
    lo = np.maximum(both.min(axis=0) - 3, 0)
    hi = np.minimum(both.max(axis=0) + 4, np.asarray(z.shape))
    box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    z, les = z[box], les[box]
    surface = les & ~ndimage.binary_erosion(les, border_value=0)
    sp = zone.spacing_kji_mm
    d_in = ndimage.distance_transform_edt(z, sampling=sp)     # inside zone: distance to outside
    d_out = ndimage.distance_transform_edt(~z, sampling=sp)   # outside zone: distance to zone
    signed = np.where(z, d_in - 0.5 * sp.min(), -(d_out - 0.5 * sp.min()))
    vals = np.where(surface, signed, np.inf)
    flat = int(np.argmin(vals))
    kji = np.unravel_index(flat, vals.shape)
    margin = float(vals[kji])
    kji_full = [int(k) + int(o) for k, o in zip(kji, lo, strict=True)]
    return margin, zone.index_to_mm(np.asarray(kji_full, float))


def _sample_on_grid(src: Volume, grid: Volume) -> np.ndarray:
    pts = grid.grid_mm()
    idx = src.mm_to_index(pts)
    return ndimage.map_coordinates(np.asarray(src.array, np.float32), idx.transpose(3, 0, 1, 2), order=0,
                                   mode="constant", cval=0.0)


def ablation_figure(case: Any, plan: Any, *, fov_mm: float | None = None) -> tuple[Figure, list[SliceDrawing], dict]:
    """Zone (or |E| ≥ threshold) overlay through the point of minimal margin, marked ×.

    Returns (figure, drawings, info) where info holds ``margin_mm`` and ``point_mm`` of the
    marker (None when the plan has no zone).
    """
    lesion_id = plan.lesion_id
    mask = case.lesion_mask(lesion_id)
    info: dict[str, Any] = {"margin_mm": None, "point_mm": None}
    markers: list[tuple[np.ndarray, str]] = []
    centre = lesion_centre_mm(mask)
    if plan.zone is not None and np.asarray(plan.zone.array).any():
        margin, point = minimal_margin_point(mask, plan.zone)
        info.update(margin_mm=margin, point_mm=point.tolist())
        reported = plan.metrics.get("min_margin_mm") if isinstance(plan.metrics, Mapping) else None
        shown = reported if isinstance(reported, (int, float)) else margin
        markers.append((point, f"minimal margin {shown:.1f} mm"))
        centre = point
    threshold = plan.parameters.get("threshold_v_per_cm") if isinstance(plan.parameters, Mapping) else None
    if not isinstance(threshold, (int, float)) or isinstance(threshold, bool):
        threshold = None  # e.g. "tissue-specific": the zone (|E| ≥ each tissue's threshold) is drawn instead
    zone_label = ("predicted electroporated zone (|E| ≥ threshold)" if plan.field_v_per_cm is not None
                  else "predicted ablation zone")
    fov = fov_mm or _default_fov_mm(case, lesion_id)
    title = f"{lesion_id.replace('_', ' ')} · {plan.modality.upper()}: predicted zone, planes through the minimal margin"
    fig, drawings = _three_views(
        case, np.asarray(centre), fov_mm=fov, suptitle=title, highlight=lesion_id,
        structures=None, zone=plan.zone, zone_label=zone_label, target=plan.target, target_label=_target_label(plan),
        field_v_per_cm=plan.field_v_per_cm if plan.zone is None else None,
        field_threshold_v_per_cm=threshold if plan.zone is None else None,
        markers=markers, applicators=plan.applicators,
    )
    return fig, drawings, info


def heat_sink_figure(case: Any, plan: Any, *, fov_mm: float | None = None) -> tuple[Figure, list[SliceDrawing]]:
    """Thermal plan: the predicted zone after the heat sink, the part the vessels' heat sink
    removes (hatched yellow) and the vessels, in planes through the lost voxel nearest the lesion."""
    lost = plan.heat_sink_lost
    if lost is None or not np.asarray(lost.array).any():
        raise InvalidInputError(f"plan {plan.modality} for {plan.lesion_id} has no zone lost to a heat sink to draw.")
    mask = case.lesion_mask(plan.lesion_id)
    centre = lesion_centre_mm(mask)
    pts = lost.index_to_mm(np.argwhere(np.asarray(lost.array, bool)).astype(float))
    point = pts[int(np.argmin(np.linalg.norm(pts - centre, axis=1)))]
    hs = plan.metrics.get("heat_sink", {}) if isinstance(plan.metrics, Mapping) else {}
    fov = fov_mm or _default_fov_mm(case, plan.lesion_id)
    title = (f"{plan.lesion_id.replace('_', ' ')} · {plan.modality.upper()}: heat sink cuts the zone back by up to "
             f"{hs.get('cut_back_mm', float('nan')):.1f} mm")
    return _three_views(case, np.asarray(point), fov_mm=fov, suptitle=title, highlight=plan.lesion_id,
                        structures=None, zone=plan.zone, zone_label="predicted ablation zone (after heat sink)",
                        heat_sink_lost=lost, applicators=plan.applicators)


def isodose_figure(
    case: Any, plan: Any, *, percents: Sequence[float] = DEFAULT_ISODOSE_PERCENTS, fov_mm: float | None = None
) -> tuple[Figure, list[SliceDrawing]]:
    """Isodose lines at % of the prescription through the lesion, legend in Gy and %."""
    if plan.dose is None:
        raise InvalidInputError(f"plan {plan.modality} for {plan.lesion_id} has no dose grid to draw isodoses from.")
    mask = case.lesion_mask(plan.lesion_id)
    fov = fov_mm or _default_fov_mm(case, plan.lesion_id)
    rx = plan.prescription_gy
    title = f"{plan.lesion_id.replace('_', ' ')} · {plan.modality.upper()}: isodoses (prescription {rx:.1f} Gy)" if rx else None
    return _three_views(case, lesion_centre_mm(mask), fov_mm=fov, suptitle=title, highlight=plan.lesion_id,
                        dose=plan.dose, prescription_gy=rx, isodose_percents=percents, target=plan.target,
                        target_label=_target_label(plan), applicators=plan.applicators)


def _target_label(plan: Any) -> str:
    """The legend of a plan's target outline in words the plan defines: "CTV (lesion + 10 mm)" (IBT), "target
    (lesion + 5 mm)" (ablation), else the generic label (an ablation figure read "target (PTV/CTV)")."""
    m = plan.metrics if isinstance(plan.metrics, Mapping) else {}
    for key, word in (("ctv_margin_mm", "CTV"), ("target_margin_mm", "target")):
        v = m.get(key)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return f"{word} (lesion + {v:g} mm)"
    return "target (PTV/CTV)"


def territory_figure(case: Any, lesion_id: str, segments: Sequence[str], *, plan: Any = None,
                     modality: str = "") -> tuple[Figure, list[SliceDrawing]]:
    """TACE/TARE territory: the liver segments holding the lesion filled, others outlined."""
    mask = case.lesion_mask(lesion_id)
    seg_names = [_segment_name(s) for s in segments]
    present_segments = [n for n in case.structure_names() if n.startswith("liver_segment_")]
    fill = {n: 0.30 for n in seg_names if n in present_segments}
    wanted = ["liver", lesion_id, *present_segments, "portal_vein", "hepatic_artery"]
    liver_fov = _extent_mm(case.mask("liver")) + 20.0 if case.has("liver") else 200.0
    seg_txt = ", ".join(s.replace("liver_segment_", "") for s in seg_names) or "unknown"
    what = "regional options" if modality in ("", "regional") else modality.upper()
    title = f"{lesion_id.replace('_', ' ')} · {what}: territory (segment {seg_txt})"
    target = plan.target if plan is not None else None
    return _three_views(case, lesion_centre_mm(mask), fov_mm=float(min(max(liver_fov, 120.0), 300.0)), suptitle=title,
                        planes=("axial", "coronal"), structures=wanted, fill=fill, highlight=lesion_id,
                        fill_colour=OVERLAY_COLOURS["territory"],
                        target=target, target_label="treated territory (plan)")


def _segment_name(s: Any) -> str:
    s = str(s).strip()
    if s.startswith("liver_segment_"):
        return s
    s = s.lower().removeprefix("segment").removeprefix("seg").strip().lstrip("_ ")
    roman = {"i": "1", "ii": "2", "iii": "3", "iv": "4", "iva": "4a", "ivb": "4b", "v": "5", "vi": "6",
             "vii": "7", "viii": "8"}
    return f"liver_segment_{roman.get(s, s)}"


def sbrt_figure(case: Any, plan: Any, *, fov_mm: float | None = None) -> tuple[Figure, list[SliceDrawing]]:
    """SBRT screen: PTV with the limiting organ filled on three views and a constraint chart.

    The chart shows, per organ, the *estimated* dose as % of its constraint when the plan's
    metrics list them (``constraints`` items with organ, estimate_gy/dose_gy, limit_gy);
    the title repeats that this is a screening estimate, not a treatment plan.
    """
    metrics = plan.metrics if isinstance(plan.metrics, Mapping) else {}
    limiting = metrics.get("limiting_organ")
    nearest = metrics.get("nearest_limit_organ")
    feasible = metrics.get("feasible")
    mask = case.lesion_mask(plan.lesion_id)
    fov = fov_mm or max(_default_fov_mm(case, plan.lesion_id), 140.0)
    shown = limiting or nearest
    fill = {shown: 0.35} if shown and case.has(shown) else {}
    verdict = "feasible" if feasible is True else ("NOT feasible" if feasible is False else "feasibility unknown")
    if limiting:
        verdict += f", limiting organ {limiting.replace('_', ' ')}"
    elif nearest:
        verdict += f", closest to its limit: {nearest.replace('_', ' ')}"
    title = f"{plan.lesion_id.replace('_', ' ')} · SBRT screen (estimate, not a plan): {verdict}"
    rows = _constraint_rows(plan.metrics)
    if not rows:
        return _three_views(case, lesion_centre_mm(mask), fov_mm=fov, suptitle=title, highlight=plan.lesion_id,
                            fill=fill, target=plan.target, target_label="PTV")
    fig, drawings = _three_views(case, lesion_centre_mm(mask), fov_mm=fov, suptitle=title, highlight=plan.lesion_id,
                                 fill=fill, target=plan.target, target_label="PTV", planes=("axial", "coronal"))
    w, h = fig.get_size_inches()
    fig.set_size_inches(w + 3.6, h)
    fig.subplots_adjust(right=w / (w + 3.6))
    ax = fig.add_axes((w / (w + 3.6) + 0.07, 0.3, 3.6 / (w + 3.6) - 0.09, 0.5))
    _constraint_bars(ax, rows, shown)
    return fig, drawings


def _constraint_rows(metrics: Any) -> list[tuple[str, float, float]]:
    """(organ, estimated Gy, limit Gy) of serial-organ constraints in an SBRT screen's metrics."""
    rows = []
    items = None
    if isinstance(metrics, Mapping):
        items = metrics.get("constraints") or metrics.get("organs")
    if isinstance(items, Mapping):
        items = [dict(v, organ=k) if isinstance(v, Mapping) else {"organ": k} for k, v in items.items()]
    for it in items or []:
        if not isinstance(it, Mapping):
            continue
        est = next((it[k] for k in ("estimate_gy", "dose_estimate_gy", "dose_gy", "estimated_gy", "value_gy")
                    if k in it), None)
        lim = next((it[k] for k in ("limit_gy", "threshold_gy", "constraint_gy", "max_gy") if k in it), None)
        if it.get("spared_ml_required") is not None:
            continue  # parallel-organ (spared volume) constraints are listed in the report's table
        if isinstance(est, (int, float)) and isinstance(lim, (int, float)) and lim > 0:
            rows.append((str(it.get("organ", it.get("structure", "?"))), float(est), float(lim)))
    return rows


def _constraint_bars(ax: Any, rows: list[tuple[str, float, float]], limiting: str | None) -> None:
    names = [r[0].replace("_", " ") for r in rows]
    ratio = [100.0 * r[1] / r[2] for r in rows]
    colours = ["#d62728" if p > 100 else ("#ff9f1a" if r[0] == limiting else "#2ca02c")
               for r, p in zip(rows, ratio, strict=True)]
    y = np.arange(len(rows))
    ax.barh(y, ratio, color=colours)
    ax.axvline(100, color="black", ls="--", lw=1)
    ax.set_yticks(y, names, fontsize=8)
    ax.set_xlabel("estimated dose, % of constraint", fontsize=8)
    for yi, r in zip(y, rows, strict=True):
        ax.text(1, yi, f" {r[1]:.1f} / {r[2]:.1f} Gy", va="center", fontsize=7, color="white", fontweight="bold")
    ax.tick_params(axis="x", labelsize=8)
    ax.set_title("organ constraints", fontsize=9)


def dvh_figure(curves: Sequence[Any], *, prescription_gy: float | None = None, title: str | None = None,
               target: str | None = None, d90_gy: float | None = None) -> Figure:
    """Cumulative DVH, one curve per structure (colour table), prescription marked; ``d90_gy`` (the
    plan's D90, from its metrics) is marked at 90 % volume so the board reads it off the curve."""
    fig = _new_figure(6.4, 3.9)
    ax = fig.add_subplot(1, 1, 1)
    for c in curves:
        colour = colour_for(c.structure) if not c.structure.lower().startswith(("ptv", "ctv", "gtv", "target")) \
            else OVERLAY_COLOURS["target"]
        lw = 2.4 if c.structure == target else 1.6
        ax.plot(np.asarray(c.dose_gy, float), np.asarray(c.volume_percent, float), color=_darken(colour), lw=lw,
                label=f"{c.structure.replace('_', ' ')} ({c.volume_ml:.1f} ml)")
    if prescription_gy:
        ax.axvline(prescription_gy, color="black", ls="--", lw=1)
        ax.text(prescription_gy, 102, f" prescription {prescription_gy:.1f} Gy", fontsize=8, va="bottom")
    if d90_gy is not None and math.isfinite(d90_gy):
        ax.plot([d90_gy], [90.0], marker="o", color="black", ms=6, zorder=5)
        ax.axhline(90.0, color="grey", ls=":", lw=0.8)
        ax.annotate(f"D90 {d90_gy:.1f} Gy", (d90_gy, 90.0), xytext=(6, -14), textcoords="offset points", fontsize=9,
                    fontweight="bold")
    ax.set_xlabel("dose (Gy)")
    ax.set_ylabel("volume receiving ≥ dose (%)")
    ax.set_ylim(0, 110)
    ax.set_xlim(left=0)
    if prescription_gy:  # brachytherapy hot spots beside the dwells reach 10–40× the prescription: show 0–4×
        ax.set_xlim(0, 4.0 * prescription_gy)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper right")
    ax.set_title(title or "cumulative dose–volume histogram" + (" (0–4× prescription)" if prescription_gy else ""),
                 fontsize=10)
    fig.tight_layout()
    return fig


def _darken(hex_colour: str, factor: float = 0.8) -> str:
    """Slightly darker variant for lines on a white background (pale outline colours)."""
    import matplotlib.colors as mcolors

    r, g, b = mcolors.to_rgb(hex_colour)
    return mcolors.to_hex((r * factor, g * factor, b * factor))


_MARGIN_BINS = (("<0", "< 0 mm (tumour not covered)"), ("0-5", "0–5 mm"), (">=5", "≥ 5 mm"))


def margin_histogram_figure(histogram: Mapping[str, float], *, title: str | None = None) -> Figure:
    """Bar chart of the tumour surface (%) by margin: < 0, 0–5, ≥ 5 mm."""
    values = [float(_hist_get(histogram, key)) for key, _ in _MARGIN_BINS]
    fig = _new_figure(4.2, 2.9)
    ax = fig.add_subplot(1, 1, 1)
    x = np.arange(3)
    ax.bar(x, values, color=[MARGIN_BIN_COLOURS[k] for k, _ in _MARGIN_BINS])
    ax.set_xticks(x, [lbl for _, lbl in _MARGIN_BINS], fontsize=8)
    for xi, v in zip(x, values, strict=True):
        ax.text(float(xi), v + 2, f"{v:.0f} %", ha="center", fontsize=9, fontweight="bold")
    ax.set_ylim(0, 115)
    ax.set_ylabel("tumour surface (%)")
    ax.set_title(title or "margin of the predicted zone around the tumour", fontsize=9)
    fig.tight_layout()
    return fig


def _hist_get(hist: Mapping[str, float], key: str) -> float:
    aliases = {"<0": ("<0", "lt0", "below_0", "negative"), "0-5": ("0-5", "0_5", "0–5"),
               ">=5": (">=5", "ge5", "≥5", "5+", "at_least_5")}
    for k in aliases[key]:
        if k in hist:
            return float(hist[k])
    return 0.0


def figure_png(fig: Figure, *, dpi: int = 110) -> bytes:
    """PNG bytes (RGB, white background) of a figure drawn at ``dpi``; then drops its axes.

    The same pixels as ``fig.savefig(format="png", dpi=dpi, facecolor="white")``, written as RGB: the
    white figure background makes every pixel opaque, and an RGBA PNG made WeasyPrint split off and
    re-encode an all-opaque alpha mask for every picture of every PDF. The axes are removed without
    ``Figure.clear()``, which re-initialises each Axes before deleting it (measured: ~10 % of a
    report's figure time) — the figure is not drawn again.
    """
    from PIL import Image

    fig.set_dpi(dpi)
    fig.patch.set_facecolor("white")
    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    canvas.draw()
    rgba = np.asarray(canvas.buffer_rgba())
    buf = io.BytesIO()
    # compress_level 4: ~2× faster than PIL's default 6 for a few % larger files
    Image.fromarray(np.ascontiguousarray(rgba[..., :3]), "RGB").save(buf, format="png", compress_level=4,
                                                                      dpi=(dpi, dpi))
    for ax in tuple(fig.axes):
        fig.delaxes(ax)
    return buf.getvalue()


# --------------------------------------------------------------------------------------------
# all figures of one plan
# --------------------------------------------------------------------------------------------
@dataclass
class PlanFigure:
    key: str       # zone | heat_sink | isodose | dvh | margins | sbrt | territory
    caption: str
    png: bytes


def plan_figures(case: Any, plan: Any, *, segments: Sequence[str] = (), dpi: int = 110) -> list[PlanFigure]:
    """Every picture that fits one TreatmentPlan, in reading order, as PNG bytes.

    Which pictures: a zone or field → zone overlay with the minimal margin (+ histogram);
    a dose grid → isodoses + DVH; SBRT → screen picture; TACE/TARE → territory.
    """
    out: list[PlanFigure] = []
    modality = str(plan.modality).lower()
    if modality == "sbrt":
        fig, _ = sbrt_figure(case, plan)
        out.append(PlanFigure("sbrt", "SBRT screen: PTV and the organ that limits the dose (an estimate, not a plan).",
                              figure_png(fig, dpi=dpi)))
    elif plan.zone is not None or plan.field_v_per_cm is not None:
        fig, _, info = ablation_figure(case, plan)
        where = "" if info["margin_mm"] is None else " The × marks the point of minimal margin; the planes pass through it."
        out.append(PlanFigure("zone", f"Predicted treated zone around the lesion.{where}", figure_png(fig, dpi=dpi)))
        lost = getattr(plan, "heat_sink_lost", None)
        if lost is not None and np.asarray(lost.array).any():
            hs = plan.metrics.get("heat_sink", {})
            fig, _ = heat_sink_figure(case, plan)
            out.append(PlanFigure(
                "heat_sink",
                f"Heat sink: tissue beside the vessels that the simulation leaves unablated (hatched yellow, "
                f"{hs.get('zone_lost_ml', 0):.2f} ml); minimal margin {hs.get('min_margin_without_heat_sink_mm', 0):.1f} mm "
                f"without and {hs.get('min_margin_with_heat_sink_mm', 0):.1f} mm with the heat sink.",
                figure_png(fig, dpi=dpi)))
        if plan.margin_histogram:
            out.append(PlanFigure("margins", "Share of the tumour surface by margin width.",
                                  figure_png(margin_histogram_figure(plan.margin_histogram), dpi=dpi)))
    if plan.dose is not None and modality != "sbrt" and plan.prescription_gy:
        fig, _ = isodose_figure(case, plan)
        out.append(PlanFigure("isodose", f"Isodose lines at % of the prescription ({plan.prescription_gy:.1f} Gy).",
                              figure_png(fig, dpi=dpi)))
    if plan.dvh:
        d90 = (plan.metrics or {}).get("d90_gy")
        d90 = float(d90) if isinstance(d90, (int, float)) and not isinstance(d90, bool) else None
        fig = dvh_figure(plan.dvh, prescription_gy=plan.prescription_gy, target=plan.lesion_id, d90_gy=d90)
        caption = "Cumulative dose–volume histogram." + (f" The dot marks the plan's D90 ({d90:.1f} Gy)." if d90 else "")
        out.append(PlanFigure("dvh", caption, figure_png(fig, dpi=dpi)))
    if modality in ("tace", "tare", "hai"):
        fig, _ = territory_figure(case, plan.lesion_id, segments, plan=plan, modality=modality)
        out.append(PlanFigure("territory", "Territory treated through the artery (segments holding the lesion).",
                              figure_png(fig, dpi=dpi)))
    return out
