"""Figure content tests ([E]): what is drawn where, not only that a PNG exists.

Cases and plans come from tests/report/report_builders.py (numpy phantoms with known geometry).
"""

from __future__ import annotations

import io

import matplotlib.colors as mcolors
import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from report_builders import LESION_CENTRE_MM, LESION_RADIUS_MM, make_case, make_plans

from latplan.case import Case
from latplan.imaging.volume import Volume
from latplan.report import figures as F
from latplan.report.colours import (
    ISODOSE_COLOURS,
    LESION_COLOURS,
    STRUCTURE_COLOURS,
    colour_for,
    lesion_colour,
)

N_PX = 300  # rendered image size for pixel tests


def _render(case, plane, centre_mm, fov_mm=140.0, **kw):
    """Draw one slice on axes that fill an N_PX × N_PX canvas; return (rgb array, drawing)."""
    fig = Figure(figsize=(3, 3), dpi=N_PX / 3)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0, 0, 1, 1))
    drawing = F.draw_slice(ax, case, plane, centre_mm, fov_mm=fov_mm, pixel_mm=fov_mm / N_PX, scale_bar=False,
                           **kw)
    ax.set_title("")
    fig.canvas.draw()
    rgb = np.asarray(fig.canvas.buffer_rgba())[..., :3].astype(int)
    return rgb, drawing, fig


def _pixels_of(rgb, hex_colour, tol=40):
    target = np.array([round(255 * c) for c in mcolors.to_rgb(hex_colour)])
    dist = np.abs(rgb - target).sum(axis=-1)
    return np.argwhere(dist <= tol)  # (row, col)


@pytest.mark.parametrize(
    ("plane", "expect"),
    [
        # lesion_2 sits at LPS (-30, -20, +15): patient's right, anterior, superior of the centre (0, 0, 0)
        ("axial", {"col": "left", "row": "top"}),        # R on image left, A on top
        ("coronal", {"col": "left", "row": "top"}),      # R on image left, S on top
        ("sagittal", {"col": "left", "row": "top"}),     # A on image left, S on top
    ],
)
def test_lesion_outline_colour_at_lesion_position_and_orientation(plane, expect):
    """Reference: radiological convention (patient's right on the image left; anterior left on
    sagittal; superior up) and the lesion's known LPS position. The lesion_2 outline colour must
    appear around the lesion's expected pixel position, computed here by hand from its mm
    coordinates (tolerance: lesion radius 6 mm + 2 display pixels)."""
    case = make_case()
    centre = np.array([0.0, 0.0, 15.0])
    fov = 140.0
    # lesion_2 lies in every plane through z=15, but not in x=0 / y=0 planes: centre the cut on it per view
    if plane == "coronal":
        centre = np.array([0.0, -20.0, 0.0])
    elif plane == "sagittal":
        centre = np.array([-30.0, 0.0, 0.0])
    rgb, drawing, _ = _render(case, plane, centre, fov_mm=fov)
    assert "lesion_2" in drawing.structures
    px = _pixels_of(rgb, lesion_colour("lesion_2"))
    assert len(px) > 20, "the lesion_2 outline colour is absent from the picture"
    row_c, col_c = px.mean(axis=0)
    lesion = np.array([-30.0, -20.0, 15.0])
    d = lesion - centre
    # expected pixel by hand: columns along +x (axial/coronal) or +y (sagittal); rows along +y (axial) or -z
    col_mm = {"axial": d[0], "coronal": d[0], "sagittal": d[1]}[plane]
    row_mm = {"axial": d[1], "coronal": -d[2], "sagittal": -d[2]}[plane]
    exp_col = N_PX / 2 + col_mm * N_PX / fov
    exp_row = N_PX / 2 + row_mm * N_PX / fov
    tol_px = (6.0 + 1.0) * N_PX / fov
    assert abs(col_c - exp_col) < tol_px and abs(row_c - exp_row) < tol_px
    assert (col_c < N_PX / 2) == (expect["col"] == "left")
    assert (row_c < N_PX / 2) == (expect["row"] == "top")


@pytest.mark.parametrize("plane", ["axial", "coronal", "sagittal"])
def test_orientation_letters_on_every_slice(plane):
    """Reference: radiological display convention (orientation letters as in DICOM PS3.3 C.7.6.1.1.1, which writes H/F where latplan shows S/I) — orientation labels A/P/L/R/S/I on every slice; radiological layout."""
    _, _, fig = _render(make_case(), plane, LESION_CENTRE_MM)
    texts = {t.get_text() for t in fig.axes[0].texts}
    expected = {"axial": {"R", "L", "A", "P"}, "coronal": {"R", "L", "S", "I"}, "sagittal": {"A", "P", "S", "I"}}[plane]
    assert expected <= texts
    # left edge letter of axial/coronal is R (patient's right on the image left)
    left = min(fig.axes[0].texts, key=lambda t: t.get_position()[0]).get_text()
    assert left == {"axial": "R", "coronal": "R", "sagittal": "A"}[plane]


def test_flipped_storage_gives_the_same_picture():
    """Metamorphic (geometry travels with every grid, as in highdicom volume.py): the same anatomy stored with the
    i axis reversed (array flipped, affine column negated) must render the same slice, because
    slices are sampled at LPS mm points. Tolerance: ≥ 99 % identical pixels (anti-aliasing)."""
    case = make_case()
    aff = np.array(case.image.affine)
    n_i = case.image.shape[2]
    flipped_aff = aff.copy()
    flipped_aff[:3, 3] = aff[:3, 3] + aff[:3, 0] * (n_i - 1)
    flipped_aff[:3, 0] = -aff[:3, 0]
    img = Volume(case.image.array[:, :, ::-1].copy(), flipped_aff)
    lab = Volume(case.labels.array[:, :, ::-1].copy(), flipped_aff)
    flipped = Case(case.patient, img, lab, case.label_table)
    a, _, _ = _render(case, "axial", LESION_CENTRE_MM)
    b, _, _ = _render(flipped, "axial", LESION_CENTRE_MM)
    same = np.mean(np.abs(a - b).sum(axis=-1) < 30)
    assert same > 0.99


def test_true_aspect_ratio_with_anisotropic_voxels():
    """Reference: geometry of the phantom — the spherical lesion (r = 10 mm) sits on 2 × 2 × 2.5 mm
    voxels; on the coronal view (in-plane x and z) its outline must span the same width and height
    in pixels (sampling in mm). Tolerance: 15 % (voxel staircase)."""
    case = make_case()
    fov = 60.0
    rgb, _, _ = _render(case, "coronal", LESION_CENTRE_MM, fov_mm=fov, structures=["lesion_1"])
    px = _pixels_of(rgb, lesion_colour("lesion_1"))
    h = px[:, 0].max() - px[:, 0].min()
    w = px[:, 1].max() - px[:, 1].min()
    assert abs(h - w) / w < 0.15
    assert abs(w * fov / N_PX - 2 * LESION_RADIUS_MM) < 4.0


def test_isodose_legend_matches_prescription_and_line_position():
    """Reference: the test dose D(r) = Rx·(10 mm / r)² with Rx = 20 Gy, so the 100 % line is the
    circle r = 10 mm and the 50 % line r = 14.1 mm. The legend must read 10.0 / 20.0 / 30.0 /
    40.0 Gy for 50/100/150/200 %, and yellow (100 %) pixels lie 10 ± 2 mm from the centre."""
    case = make_case()
    plan = make_plans(case)[("lesion_1", "ibt")]
    fig, drawings = F.isodose_figure(case, plan)
    assert drawings[0].isodose_gy == {50.0: 10.0, 100.0: 20.0, 150.0: 30.0, 200.0: 40.0}
    legend_texts = {t.get_text() for lg in fig.legends for t in lg.get_texts()}
    for pct, gy in ((50, 10.0), (100, 20.0), (150, 30.0), (200, 40.0)):
        assert f"{pct} % = {gy:.1f} Gy" in legend_texts
    fov = 60.0
    rgb, _, _ = _render(case, "axial", LESION_CENTRE_MM, fov_mm=fov, structures=[], dose=plan.dose,
                        prescription_gy=plan.prescription_gy, isodose_percents=(100,))
    px = _pixels_of(rgb, ISODOSE_COLOURS[100], tol=60)
    assert len(px) > 50
    r_mm = np.hypot(px[:, 0] - N_PX / 2, px[:, 1] - N_PX / 2) * fov / N_PX
    assert abs(np.median(r_mm) - 10.0) < 2.0


def test_isodose_needs_prescription():
    """An isodose picture without a prescription would be unreadable: it is refused with a message."""
    case = make_case()
    plan = make_plans(case)[("lesion_1", "ibt")]
    plan.prescription_gy = None
    with pytest.raises(Exception, match="prescription"):
        F.isodose_figure(case, plan)


def test_minimal_margin_point_analytic():
    """Reference (analytic): lesion sphere r = 10 mm at c, zone sphere r = 16 mm at c + 4 mm x.
    Minimal margin = 16 − 4 − 10 = 2 mm at c − 10 mm x (patient's right side). The margin varies
    slowly around that point, so the marker is checked by the analytic margin at the marked
    point (within 1 mm of the minimum) and by its side (x < c). Tolerance: value ± 1.5 mm
    (2–2.5 mm voxels)."""
    case = make_case()
    plan = make_plans(case)[("lesion_1", "mwa")]
    margin, point = F.minimal_margin_point(case.lesion_mask("lesion_1"), plan.zone)
    assert abs(margin - 2.0) < 1.5
    zone_centre = LESION_CENTRE_MM + np.array([4.0, 0.0, 0.0])
    direction = (point - LESION_CENTRE_MM) / np.linalg.norm(point - LESION_CENTRE_MM)
    on_sphere = LESION_CENTRE_MM + LESION_RADIUS_MM * direction
    analytic_margin_there = 16.0 - np.linalg.norm(on_sphere - zone_centre)
    assert analytic_margin_there - 2.0 < 1.0
    assert point[0] < LESION_CENTRE_MM[0]


def test_minimal_margin_negative_when_zone_misses_tumour():
    """Reference (analytic): zone r = 8 mm inside a 10 mm lesion, concentric → margin −2 mm (± 1.5)."""
    case = make_case()
    r = np.linalg.norm(case.image.grid_mm() - LESION_CENTRE_MM, axis=-1)
    zone = case.image.with_array(r <= 8.0)
    margin, _ = F.minimal_margin_point(case.lesion_mask("lesion_1"), zone)
    assert -3.5 < margin < -0.5


def test_ablation_figure_marks_minimal_margin_and_legend():
    """The zone picture passes through the minimal-margin point, marks it and names it in the legend
    with the plan's reported min_margin_mm (2.0 mm)."""
    case = make_case()
    plan = make_plans(case)[("lesion_1", "mwa")]
    fig, drawings, info = F.ablation_figure(case, plan)
    assert info["point_mm"] is not None
    assert np.allclose(drawings[0].centre_mm, info["point_mm"])
    labels = {t.get_text() for lg in fig.legends for t in lg.get_texts()}
    assert "minimal margin 2.0 mm" in labels
    assert "predicted ablation zone" in labels


def test_margin_histogram_bars_match_plan():
    """Bars of the margin histogram equal the plan's {<0, 0–5, ≥5} percentages, in that order."""
    fig = F.margin_histogram_figure({"<0": 5.0, "0-5": 60.0, ">=5": 35.0})
    heights = [p.get_height() for p in fig.axes[0].patches]
    assert heights == [5.0, 60.0, 35.0]
    ticks = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert ticks[0].startswith("< 0") and ticks[2].startswith("≥ 5")


def test_dvh_one_curve_per_structure_with_table_colours():
    """Cumulative DVH: one line per structure, in the structure's table colour (darkened for white
    paper), axes in Gy and %."""
    case = make_case()
    plan = make_plans(case)[("lesion_1", "ibt")]
    fig = F.dvh_figure(plan.dvh, prescription_gy=plan.prescription_gy, target="lesion_1")
    ax = fig.axes[0]
    lines = [ln for ln in ax.get_lines() if ln.get_label() and not ln.get_label().startswith("_")]
    assert len(lines) == 3
    assert "Gy" in ax.get_xlabel() and "%" in ax.get_ylabel()
    stomach = next(ln for ln in lines if ln.get_label().startswith("stomach"))
    expect = np.array(mcolors.to_rgb(STRUCTURE_COLOURS["stomach"])) * 0.8
    assert np.allclose(mcolors.to_rgb(stomach.get_color()), expect, atol=0.01)


def test_sbrt_figure_names_limiting_organ_and_estimate():
    """The SBRT screen picture says it is an estimate, not a plan, names the limiting organ and fills it."""
    case = make_case()
    plan = make_plans(case)[("lesion_1", "sbrt")]
    fig, drawings = F.sbrt_figure(case, plan)
    title = fig._suptitle.get_text()
    assert "not a plan" in title and "stomach" in title
    assert any(e.label == "stomach" and e.kind == "fill" for d in drawings for e in d.legend)


def test_territory_fills_the_lesion_segment():
    """TACE/TARE territory: segment 6 (holding lesion_1) is filled; segment 7 only outlined."""
    case = make_case()
    _, drawings = F.territory_figure(case, "lesion_1", ["6"], modality="tare")
    labels = {e.label: e.kind for d in drawings for e in d.legend}
    assert labels.get("liver segment 6 (treated territory)") == "fill"
    assert labels.get("other liver segments (boundaries)") == "line"


def test_thumbnail_png_is_small_and_valid():
    """3-view thumbnail: a valid PNG, three panels, no legend."""
    fig, drawings = F.thumbnail_figure(make_case(), "lesion_1")
    assert len(drawings) == 3 and not fig.legends
    png = F.figure_png(fig, dpi=80)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    from PIL import Image

    im = Image.open(io.BytesIO(png))
    assert im.width > 2 * im.height


def test_colour_table_is_stable_and_reserves_red_for_lesions():
    """The colour table is fixed: canonical names map to their entries, unknown names to a
    deterministic colour (md5, not salted hash), and no organ uses a lesion colour."""
    assert colour_for("portal_vein") == STRUCTURE_COLOURS["portal_vein"]
    assert colour_for("lesion_1") == LESION_COLOURS[0]
    assert colour_for("lesion_2") == LESION_COLOURS[1]
    assert colour_for("my_custom_thing", "other") == colour_for("my_custom_thing", "other")
    assert not set(STRUCTURE_COLOURS.values()) & set(LESION_COLOURS)


def test_plan_figures_per_modality():
    """Each plan gets the pictures that fit it: zone+margins (MWA), isodose+DVH (IBT), SBRT screen, territory (TARE)."""
    case = make_case()
    plans = make_plans(case)
    keys = {m: [f.key for f in F.plan_figures(case, p, segments=["6"], dpi=60)] for (_, m), p in plans.items()}
    assert keys["mwa"] == ["zone", "margins"]
    assert keys["ibt"] == ["isodose", "dvh"]
    assert keys["sbrt"] == ["sbrt"]
    assert keys["tare"] == ["territory"]


def test_field_only_plan_draws_threshold_contour():
    """ECT/IRE plan carrying only |E| (no zone): the picture draws the contour at the plan's numeric
    threshold and names it in V/cm; a non-numeric threshold ('tissue-specific') never crashes."""
    case = make_case()
    from latplan.planning.types import TreatmentPlan

    r = np.linalg.norm(case.image.grid_mm() - LESION_CENTRE_MM, axis=-1)
    field = case.image.with_array((1200.0 * 10.0 / np.maximum(r, 5.0)).astype(np.float32))  # 600 V/cm at r = 20 mm
    plan = TreatmentPlan(modality="ire", lesion_id="lesion_1", metrics={}, field_v_per_cm=field,
                         parameters={"threshold_v_per_cm": 600.0})
    _, drawings, info = F.ablation_figure(case, plan)
    labels = {e.label for d in drawings for e in d.legend}
    assert "|E| ≥ 600 V/cm" in labels and info["margin_mm"] is None
    plan.parameters = {"threshold_v_per_cm": "tissue-specific"}
    _, drawings, _ = F.ablation_figure(case, plan)
    assert not any("V/cm" in e.label for d in drawings for e in d.legend)


def test_heat_sink_lost_region_drawn_where_it_is():
    """A thermal plan's heat-sink loss (a known 6 mm cube beside the lesion) is drawn in the
    heat-sink colour at its hand-computed pixel position (tolerance: half the cube + 2 pixels), and
    plan_figures adds the 'heat_sink' picture with the margins before/after in its caption."""
    from latplan.report.colours import OVERLAY_COLOURS

    case = make_case()
    fov = 140.0
    lost = np.zeros(case.labels.shape, bool)
    point = np.array([20.0, 0.0, 0.0])  # LPS mm: 20 mm to the patient's left of the centre
    k, j, i = np.round(case.labels.mm_to_index(point)).astype(int)
    r = max(1, round(3.0 / float(case.labels.spacing_kji_mm.min())))
    lost[k - r:k + r + 1, j - r:j + r + 1, i - r:i + r + 1] = True
    rgb, drawing, _ = _render(case, "axial", np.zeros(3), fov_mm=fov, heat_sink_lost=case.labels.with_array(lost))
    plain, _, _ = _render(case, "axial", np.zeros(3), fov_mm=fov)
    changed = np.abs(rgb - plain).sum(axis=-1) > 0
    px = np.argwhere(changed & (np.abs(rgb - plain).sum(axis=-1) > 30))
    assert len(px) > 10, "nothing drawn for the heat-sink region"
    assert len(_pixels_of(rgb[changed][None], OVERLAY_COLOURS["heat_sink"], tol=60)) > 10, "heat-sink colour absent"
    row_c, col_c = px.mean(axis=0)
    # axial: patient's left (+x) on the image right; columns grow with +x
    expect_col = N_PX / 2 + point[0] / (fov / N_PX)
    assert abs(col_c - expect_col) <= (3.0 + 1.0) / (fov / N_PX) + 2
    assert abs(row_c - N_PX / 2) <= (3.0 + 1.0) / (fov / N_PX) + 2
    assert any("heat sink" in e.label for e in drawing.legend)
    plan = make_plans(case)[("lesion_1", "mwa")]
    plan.heat_sink_lost = case.labels.with_array(lost)
    plan.metrics["heat_sink"] = {"cut_back_mm": 3.0, "zone_lost_ml": 0.3, "min_margin_without_heat_sink_mm": 6.0,
                                 "min_margin_with_heat_sink_mm": 2.0}
    figs = {f.key: f for f in F.plan_figures(case, plan)}
    assert "heat_sink" in figs and "6.0 mm without and 2.0 mm with" in figs["heat_sink"].caption
    assert figs["heat_sink"].png[:8] == b"\x89PNG\r\n\x1a\n"


def _agg_rgb(draw, dpi=100):
    """RGB pixels of a 3 × 3 in figure whose single axes ``draw(ax)`` fills."""
    fig = Figure(figsize=(3, 3), dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(-0.5, 63.5)
    ax.set_ylim(63.5, -0.5)
    draw(ax)
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()


def test_outlines_and_fills_are_the_pixels_of_matplotlib_contour():
    """Reference: matplotlib's own ``ax.contour``/``ax.contourf`` (the drawing the report used before
    its outlines became path collections). A disc and a ring at level 0.5, solid, dashed and dotted
    lines and an alpha fill must give the same pixels (tolerance: 0 differing pixels)."""
    yy, xx = np.mgrid[0:64, 0:64]
    r = np.hypot(xx - 30.3, yy - 33.7)
    z = ((r < 14) & (r > 5)).astype(np.float32)
    smooth = np.exp(-((r / 12.0) ** 2))
    for style in ("solid", "dashed", "dotted"):
        ref = _agg_rgb(lambda ax, s=style: (ax.contourf(z, levels=[0.5, 1.5], colors=["#2ca02c"], alpha=0.3),
                                            ax.contour(smooth, levels=[0.4], colors=["#d62728"], linewidths=1.7,
                                                       linestyles=s)))
        new = _agg_rgb(lambda ax, s=style: (F._fill_between(ax, z, 0.5, 1.5, "#2ca02c", alpha=0.3),
                                            F._iso_line(ax, smooth, 0.4, "#d62728", 1.7, linestyle=s)))
        assert np.count_nonzero(np.abs(ref.astype(int) - new).sum(axis=-1)) == 0, style


def test_figure_png_has_the_pixels_of_savefig():
    """Reference: matplotlib's ``savefig(format="png", dpi, facecolor="white")``. figure_png writes the
    same picture as an RGB PNG (the white background makes every pixel opaque). Tolerance: identical."""
    from PIL import Image

    case = make_case()
    plan = make_plans(case)[("lesion_1", "mwa")]
    fig, _, _ = F.ablation_figure(case, plan)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=70, facecolor="white")
    ref = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGBA"))
    png = F.figure_png(fig, dpi=70)
    im = Image.open(io.BytesIO(png))
    assert im.mode == "RGB" and (ref[..., 3] == 255).all()
    assert np.array_equal(np.asarray(im), ref[..., :3])


def test_target_outline_is_named_by_what_the_plan_defines() -> None:
    """Seen on a rendered MWA zone figure (real CT, this round): the dashed target read "target (PTV/CTV)", which
    an ablation plan has neither of. Reference: the plan's own definitions — IBT's CTV margin, an ablation's
    target margin; a plan with neither keeps the generic label."""
    from types import SimpleNamespace

    from latplan.report.figures import _target_label

    assert _target_label(SimpleNamespace(metrics={"ctv_margin_mm": 10.0, "target_margin_mm": 10.0})) == \
        "CTV (lesion + 10 mm)"
    assert _target_label(SimpleNamespace(metrics={"target_margin_mm": 5.0})) == "target (lesion + 5 mm)"
    assert _target_label(SimpleNamespace(metrics={"target_margin_mm": True})) == "target (PTV/CTV)"
    assert _target_label(SimpleNamespace(metrics=None)) == "target (PTV/CTV)"
