"""Shipped demo cases: each builds, matches its story, and its measurements follow the schema; CLI round trip."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from latplan.anatomy import measure_case, validate_measurements
from latplan.cli import app
from latplan.errors import PhantomSpecError
from latplan.phantom import build_demo_case, build_phantom, demo_cases, demo_spec

EXPECTED = {
    "fig1-seg8-between-hepatic-veins", "fig2-seg4a8-third-line", "seg6-peripheral-18mm", "four-lesions-right-lobe",
    "seg3-abutting-stomach-30mm", "large-60mm", "perivascular-rfa",
}
H = 2.0  # demo grid (mm)


@pytest.fixture(scope="module")
def measured():
    return {n: measure_case(build_demo_case(n)) for n in demo_cases()}


def test_all_demo_cases_ship_and_validate(measured):
    """The 7 demo specs of the brief ship in the package; every output follows measure.schema.json."""
    assert EXPECTED <= set(demo_cases())
    for n, m in measured.items():
        validate_measurements(json.loads(json.dumps(m)))
        spec = demo_spec(n)
        assert [les["id"] for les in m["lesions"]] == [les.id for les in spec.lesions]
        for les, s in zip(m["lesions"], spec.lesions, strict=True):
            assert abs(les["max_diameter_mm"] - s.diameter_mm) <= 2 * H, n  # lobulated shapes: within 2 voxels
            assert s.segment in les["segments"], n


def test_figure_cases_tell_the_seed_story(measured):
    """Seed Fig. 1: solitary metastasis in segment VIII between the hepatic veins (right and middle
    hepatic veins both within 2 cm), after resections; Fig. 2: border of segments IVa/VIII, third line."""
    f1 = measured["fig1-seg8-between-hepatic-veins"]
    les = f1["lesions"][0]
    assert les["segments"][0] == "8"
    assert les["distances_mm"]["hepatic_vein_right"] < 20 and les["distances_mm"]["hepatic_vein_middle"] < 20
    p1 = demo_spec("fig1-seg8-between-hepatic-veins").patient
    assert sum(t.kind == "resection" for t in p1.prior_therapies) >= 3
    f2 = measured["fig2-seg4a8-third-line"]
    assert {"4a", "8"} <= set(f2["lesions"][0]["segments"])
    p2 = demo_spec("fig2-seg4a8-third-line").patient
    assert max(t.line or 0 for t in p2.systemic_lines()) == 3
    assert p2.systemic_lines()[-1].response == "progression"
    for m in (f1, f2):
        assert m["patient"]["lesion_count"] == 1
        assert m["patient"]["oligometastatic"]["status"] == "oligometastatic"


def test_special_cases(measured):
    """Stomach case: gap 1 mm ± 1 voxel, near hollow organ; perivascular case: 2 mm ± 1 voxel from a
    portal branch of calibre ≥ 5 mm − 1 voxel; peripheral case: subcapsular; large case: ≈ 60 mm."""
    st = measured["seg3-abutting-stomach-30mm"]["lesions"][0]
    assert abs(st["distances_mm"]["stomach"] - 1.0) <= H and st["near_hollow_organ"] is True
    pv = measured["perivascular-rfa"]["lesions"][0]
    vessel = next(v for v in pv["nearest_vessels"] if v["name"] == "portal_vein")
    assert abs(vessel["distance_mm"] - 2.0) <= H and vessel["calibre_mm"] >= 5.0 - H
    assert pv["perivascular"] is True
    assert measured["seg6-peripheral-18mm"]["lesions"][0]["subcapsular"] is True
    assert abs(measured["large-60mm"]["lesions"][0]["max_diameter_mm"] - 60) <= 2 * H
    four = measured["four-lesions-right-lobe"]["patient"]
    assert four["lesion_count"] == 4 and four["future_liver_remnant"]["percent"] < 60


def test_unknown_demo_name():
    with pytest.raises(PhantomSpecError, match="no demo case 'nope'"):
        build_demo_case("nope")


def test_cli_phantom_and_measure_round_trip(tmp_path):
    """`latplan phantom --spec … --out` writes a case folder; `latplan measure --json` reads it back."""
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "seed: 1\nvoxel_mm: [4, 4, 4]\npatient: {id: CLI-1, primary: colorectal, primary_status: resected,\n"
        "  extrahepatic_sites: []}\nlesions:\n  - {id: lesion_1, segment: 7, diameter_mm: 24}\n"
    )
    runner = CliRunner()
    out = tmp_path / "case"
    r = runner.invoke(app, ["phantom", "--spec", str(spec), "--out", str(out)])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["measure", str(out), "--json"])
    assert r.exit_code == 0, r.output
    m = json.loads(r.output)
    validate_measurements(m)
    assert m["lesions"][0]["segments"][0] == "7"
    r = runner.invoke(app, ["measure", str(out)])
    assert r.exit_code == 0 and "oligometastatic" in r.output


def test_docs_example_spec_builds():
    """docs/phantom.md's example spec (every placement mode) builds and lands in the named segments."""
    from pathlib import Path

    import yaml

    doc = Path(__file__).resolve().parents[2] / "docs" / "phantom.md"
    spec = yaml.safe_load(doc.read_text(encoding="utf-8").split("```yaml")[1].split("```")[0])
    spec["voxel_mm"] = [3, 3, 3]
    spec.pop("field_of_view_mm")
    m = measure_case(build_phantom(spec))
    for les, s in zip(m["lesions"], spec["lesions"], strict=True):
        assert str(s["segment"]) in les["segments"], les["id"]
