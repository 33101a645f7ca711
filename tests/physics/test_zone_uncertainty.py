"""Zone-size uncertainty bands derived from parameter uncertainty (issue 14 part 6): the data
file's derived entries (cryo, MWA, RFA, IRE) are re-derived with the physics at the parameter bounds."""

from __future__ import annotations

import math

import pytest
import yaml

from latplan.errors import InvalidInputError, SourceDataError
from latplan.physics import ablation_zones as az
from latplan.physics import zone_uncertainty as zu

#: re-derivation tolerance of a stored fraction (absolute): the derivation is deterministic on its
#: grid; 0.02 of the diameter leaves room for small engine changes, not for a different method
TOL = 0.02


def _stored(key: str) -> dict:
    return az.uncertainty_data()["derived"][key]


def _assert_matches_stored(comps: list[zu.ComponentBand], stored: dict) -> None:
    """Every re-derived component and the combined band equal the stored entry within TOL."""
    for c in comps:
        s = stored["components"][c.name]
        assert c.lower == pytest.approx(float(s["lower"]), abs=TOL), (c, s)
        assert c.upper == pytest.approx(float(s["upper"]), abs=TOL), (c, s)
    lo, hi = zu.combine(comps)
    assert lo == pytest.approx(float(stored["lower"]), abs=TOL)
    assert hi == pytest.approx(float(stored["upper"]), abs=TOL)


def test_band_combination_is_root_sum_square_of_each_side() -> None:
    """Reference: first-order propagation of independent parameters (root-sum-square), written
    out by hand: components (−0.3, +0.4), (−0.4, +0.3) and (−0.1, −0.05) give
    −√(0.3² + 0.4² + 0.1²) = −0.5099 and +√(0.4² + 0.3²) = +0.5."""
    lo, hi = zu.combine([zu.ComponentBand("a", -0.3, 0.4, ""), zu.ComponentBand("b", 0.3, -0.4, ""),
                         zu.ComponentBand("c", -0.1, -0.05, "")])
    assert lo == pytest.approx(-math.sqrt(0.26), abs=1e-12)
    assert hi == pytest.approx(0.5, abs=1e-12)


def test_cryo_band_rederived_from_the_physics_at_the_parameter_bounds() -> None:
    """Reference: the data file's cryo entry (liver perfusion × 0.5…2, lethal isotherm −40…−20 °C
    of cryo_isotherms.yaml, device spread 24 ± 2 mm of Hinshaw 2010). Re-derived: every component
    and the combined band within 0.02 of the diameter. Physical checks: more perfusion shrinks
    the zone (Pennes: the sink term grows), −20 °C encloses more than −40 °C."""
    comps = zu.derive_cryo()
    stored = _stored("cryo")
    _assert_matches_stored(comps, stored)
    perf = next(c for c in comps if c.name == "perfusion")
    thr = next(c for c in comps if c.name == "threshold")
    assert perf.lower < 0.0 < perf.upper and thr.lower < 0.0 < thr.upper
    assert az.zone_uncertainty_fraction("cryo") == max(-float(stored["lower"]), float(stored["upper"]))


@pytest.mark.slow
@pytest.mark.parametrize("modality", ["mwa", "rfa"])
def test_heating_band_rederived_from_the_physics_at_the_parameter_bounds(modality: str) -> None:
    """Reference: the data file's MWA/RFA entry, derived with the planner's physics at the bounds:
    liver perfusion × 0.5…2 (lower bound: cirrhotic liver by CT perfusion, 67 ± 23 vs 108 ± 34
    ml/min/100 ml, Van Beers et al., AJR 2001;176:667-673; upper bound a declared assumption),
    zone criterion Ω ≥ 4.6 (99 % cell death) … peak ≥ 50 °C around the nominal criterion (MWA
    Ω ≥ 1, RFA the calibrated level of rfa_generator.yaml). Re-derived on the same 2 mm grid (3
    runs, ≈ 10–25 s): every component and the combined band within 0.02 of the diameter, so an
    MWA/RFA model change that moves the band fails here until
    ``python -m latplan.physics.zone_uncertainty --only mwa rfa`` is re-run. Physical check
    (Pennes: the sink term grows with ω): more perfusion shrinks the zone, less enlarges it."""
    comps = zu.derive_heating(modality)
    stored = _stored(modality)
    assert stored["grid_mm"] == 2.0
    _assert_matches_stored(comps, stored)
    perf = next(c for c in comps if c.name == "perfusion")
    assert perf.lower < 0.0 < perf.upper
    assert az.zone_uncertainty_bounds(modality) == (float(stored["lower"]), float(stored["upper"]))


def test_derivation_rewrites_only_the_entries_asked_for(tmp_path, monkeypatch) -> None:
    """Reference: the data-file contract of the module command (``--only``): the entries given are
    replaced, the others and the hand-written head (parameters, citation) stay byte-for-byte; an
    unknown entry raises the named input error."""
    f = tmp_path / "zone_uncertainty.yaml"
    f.write_text(zu.UNCERTAINTY_FILE.read_text(encoding="utf-8"), encoding="utf-8")
    monkeypatch.setattr(zu, "UNCERTAINTY_FILE", f)
    before = yaml.safe_load(f.read_text(encoding="utf-8"))
    head = f.read_text(encoding="utf-8").split("\nderived:", 1)[0]
    new = {"lower": -0.5, "upper": 0.5, "components": {}}
    zu.write_derived({"rfa": new})
    after = yaml.safe_load(f.read_text(encoding="utf-8"))
    assert after["derived"]["rfa"] == new
    assert {k: v for k, v in after["derived"].items() if k != "rfa"} == \
        {k: v for k, v in before["derived"].items() if k != "rfa"}
    assert list(after["derived"]) == list(before["derived"])
    assert f.read_text(encoding="utf-8").split("\nderived:", 1)[0] == head
    with pytest.raises(InvalidInputError):
        zu.derive_entry("laser")


def test_ire_band_from_the_calibration_data_threshold_range() -> None:
    """Reference: Ben-David et al., AJR 2012;198:W62, 3000 V arm 3.1 ± 0.4 × 2.0 ± 0.2 cm (width ×
    depth), the IRE calibration data. The lethal field refitted at mean ± 1 SD reproduces the
    stored threshold band within 0.02 (and the nominal fit, 438 V/cm, within 2 %); a larger
    zone needs a lower field. ECT uses the same band (data file, stated assumption)."""
    nominal, lo, hi = zu.derive_ire_threshold_fraction()
    stored = _stored("ire_threshold")
    assert nominal == pytest.approx(float(stored["nominal_v_per_cm"]), rel=0.02)
    assert lo == pytest.approx(float(stored["lower"]), abs=TOL)
    assert hi == pytest.approx(float(stored["upper"]), abs=TOL)
    assert lo < 0.0 < hi
    assert az.zone_uncertainty_bounds("ect") == az.zone_uncertainty_bounds("ire")


def test_every_planned_modality_has_a_band_with_its_provenance() -> None:
    """Reference: issue 14 part 6 (each zone with a band from parameter uncertainty). The thermal
    entries name their engine version, grid and components; HIFU (no physics model) is the one
    assumed fraction; an unknown modality raises the named data error."""
    for mod in ("cryo", "mwa", "rfa"):
        s = _stored(mod)
        assert {"engine_version", "grid_mm", "date"} <= set(s)
        assert {"perfusion", "threshold", "device"} == set(s["components"])
        lo, hi = az.zone_uncertainty_bounds(mod)
        assert lo < 0.0 < hi
    assert az.zone_uncertainty_fraction("hifu") == 0.15
    with pytest.raises(SourceDataError):
        az.zone_uncertainty_bounds("laser")
