"""Tests of latplan.physics.ablation_zones (device charts, interpolation, rasterisation)."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from latplan.errors import OutOfRangeError
from latplan.imaging.volume import Volume
from latplan.physics.ablation_zones import (
    Applicator,
    chart_caveat,
    cryo_zone_size,
    load_mwa_chart,
    mwa_devices,
    rasterise_zones,
    rfa_zone_size,
    zone_ellipsoid,
)

_SHARED_NAMES = {
    "covidien_emprint": "Covidien Emprint",
    "amica": "HS Amica",
    "acculis": "AngioDynamics Acculis",
}


@pytest.mark.shared_data
def test_zones_chart_matches_shared_chart_in_place(shared_data) -> None:
    """Reference: ../shared/data/ablation/mwa-charts.yaml (vendor brochures via
    rmsandu/segmentation-eval). Every row of latplan's transcription equals the shared chart
    (exact), and flagged rows are exactly the rows carrying a 'note'."""
    shared = yaml.safe_load((shared_data / "ablation" / "mwa-charts.yaml").read_text())
    for key, prefix in _SHARED_NAMES.items():
        dev = next(d for d in shared["devices"] if d["name"].startswith(prefix))
        chart = load_mwa_chart(key)
        assert len(chart.rows) == len(dev["settings"])
        for s in dev["settings"]:
            row = chart.row(s["power_w"], s["time_s"])
            assert row is not None
            assert (row.length_mm, row.width_mm, row.depth_mm) == (s["length_mm"], s["width_mm"], s["depth_mm"])
            assert row.centre_offset_from_tip_mm == s["centre_offset_from_tip_mm"]
            assert row.volume_ml == s["volume_ml"]
            assert bool(row.flag) == ("note" in s)
            z = chart.predict(s["power_w"], s["time_s"])
            assert z.method == "chart row"
            # the ellipsoid volume of the axes reproduces the chart volume (brochure rounding ≤ 1 %)
            assert z.volume_ml == pytest.approx(s["volume_ml"], rel=0.01)
        assert chart.caveat.startswith("Vendor charts come from")


def test_zones_interpolation_linear_in_time_then_power() -> None:
    """Reference: the documented interpolation rule applied by hand to chart rows.
    Covidien 75 W/195 s = midpoint of the 150 s and 240 s rows; 60 W/150 s = midpoint of
    45 W and 75 W rows (exact to 1e-9)."""
    c = load_mwa_chart("covidien_emprint")
    z = c.predict(75, 195)
    assert z.length_mm == pytest.approx(0.5 * (30 + 32))
    assert z.width_mm == pytest.approx(0.5 * (27 + 29))
    assert z.method == "chart, linear in time"
    z2 = c.predict(60, 150)
    assert z2.length_mm == pytest.approx(0.5 * (24 + 30))
    assert z2.centre_offset_from_tip_mm == pytest.approx(-11.0)
    assert "linear in power" in z2.method
    # monotonic: more power or more time never shrinks the zone on this chart
    vols = [[c.predict(p, t).volume_ml for t in (150, 200, 300, 450, 600)] for p in (45, 60, 75, 90, 100)]
    assert np.all(np.diff(vols, axis=0) > 0) and np.all(np.diff(vols, axis=1) > 0)


@pytest.mark.parametrize(("power", "time"), [(30, 300), (120, 300), (75, 100), (75, 700)])
def test_zones_no_silent_extrapolation(power: float, time: float) -> None:
    """Outside the chart the model refuses (OutOfRangeError naming the range)."""
    with pytest.raises(OutOfRangeError, match=r"does not extrapolate|outside"):
        load_mwa_chart("covidien_emprint").predict(power, time)


def test_zones_acculis_feed_point_and_flagged_rows_noted() -> None:
    """Chart 'use' note: Acculis offset treated as the feed point; Amica 900 s rows flagged."""
    z = load_mwa_chart("acculis").predict(100, 240)
    assert z.centre_offset_from_tip_mm == pytest.approx(-17.7)
    assert any("feed point" in n for n in z.notes)
    a = load_mwa_chart("amica")
    assert any("flagged" in n for n in a.predict(60, 750).notes)
    assert all(r.time_s != 900 for r in a.calibration_rows())
    assert set(mwa_devices()) == {"covidien_emprint", "amica", "acculis"}


@pytest.mark.parametrize(("device", "v3", "v5"), [("cooltip", 28.5, 48.3), ("rita_1500x", 17.1, 39.4),
                                                 ("rf3000", 29.7, 71.8), ("celon", 28.8, 93.9)])
def test_zones_rfa_volumes_match_ex_vivo_table(device: str, v3: float, v5: float) -> None:
    """Reference: PMC4463338 ex vivo RFA volumes (bovine liver, 3 cm / 5 cm protocols, abstract values); spheroid volume equals the
    published volume to 1e-6 relative."""
    assert rfa_zone_size(device, "3cm").volume_ml == pytest.approx(v3, rel=1e-6)
    assert rfa_zone_size(device, "5cm").volume_ml == pytest.approx(v5, rel=1e-6)
    with pytest.raises(OutOfRangeError):
        rfa_zone_size(device, "4cm")


def test_zones_cryo_diameters_by_probe_count() -> None:
    """Reference: PMC2762356 lethal isotherm diameters 1.2/3.3/4.1/4.9 cm for 1–4 probes (the
    largest extent across the probes: width ≥ depth). The length is no longer diameter + 20 mm
    (an assumption) but the physics-derived shape of the data file, re-derived in test_cryo.py;
    it is at least the 30 mm freezing segment the −30 °C isotherm encloses."""
    for n, d_mm in zip((1, 2, 3, 4), (12, 33, 41, 49), strict=True):
        z = cryo_zone_size(n)
        assert z.width_mm == pytest.approx(d_mm)
        assert z.depth_mm <= z.width_mm
        assert z.length_mm >= 30.0
        assert "lethal" in z.caveat
    with pytest.raises(OutOfRangeError):
        cryo_zone_size(5)
    assert "over-estimate" in chart_caveat("rfa")


def test_zones_rasterised_volume_and_union() -> None:
    """Reference: analytic ellipsoid volume π/6·L·W·D. A rasterised 1 mm zone holds that
    volume within 3 %; two disjoint applicators give the sum, overlapping ones less; the
    zone centre sits at tip + offset·direction (oblique direction, within one voxel)."""
    aff = np.eye(4)
    aff[:3, 3] = -60.0
    ref = Volume(np.zeros((120, 120, 120), np.uint8), aff)
    size = load_mwa_chart("covidien_emprint").predict(100, 600)
    d = np.array([1.0, 1.0, 0.5])
    app = Applicator("mwa", "covidien_emprint", (0.0, 0.0, 0.0), tuple(d), {"power_w": 100, "time_s": 600})
    e = zone_ellipsoid(app, size)
    m = rasterise_zones(ref, [e])
    vol = m.array.sum() * ref.voxel_volume_ml
    assert vol == pytest.approx(size.volume_ml, rel=0.03)
    centroid_mm = ref.index_to_mm(np.argwhere(m.array).mean(axis=0))
    expected = size.centre_offset_from_tip_mm * d / np.linalg.norm(d)
    assert np.linalg.norm(centroid_mm - expected) < 1.0
    far = Applicator("mwa", "covidien_emprint", (0.0, 45.0, 30.0), (0, 0, 1))
    near = Applicator("mwa", "covidien_emprint", (10.0, 0.0, 0.0), (0, 0, 1))
    base = Applicator("mwa", "covidien_emprint", (0.0, 0.0, 0.0), (0, 0, 1))
    v1 = rasterise_zones(ref, [zone_ellipsoid(base, size)]).array.sum()
    v2 = rasterise_zones(ref, [zone_ellipsoid(base, size), zone_ellipsoid(far, size)]).array.sum()
    v3 = rasterise_zones(ref, [zone_ellipsoid(base, size), zone_ellipsoid(near, size)]).array.sum()
    assert v2 == pytest.approx(2 * v1, rel=0.02)
    assert v1 < v3 < 2 * v1
