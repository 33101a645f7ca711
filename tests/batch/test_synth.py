"""The synthetic cohort generator: deterministic by seed, stated distributions, valid files.

References: numpy's PCG64 generator is reproducible for a given seed (numpy.random docs,
"Reproducibility"); the primary/lesion-count frequencies are checked against the stated
probabilities with a 4-sigma binomial bound; files are validated with the follow-up models
(docs/followup.md formats) and the phantom spec parser.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import nibabel as nib
import numpy as np
import yaml

from latplan.batch.synth import draw_patient, synth_cohort
from latplan.followup.models import Outcomes, TreatmentsFile
from latplan.phantom import parse_spec
from tests.batch.conftest import VOXEL_MM


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_same_seed_same_cohort(tiny_cohort: Path, tmp_path: Path) -> None:
    again = synth_cohort(tmp_path / "again", n=4, seed=3, voxel_mm=VOXEL_MM)
    assert [f.name for f in again] == sorted(p.name for p in tiny_cohort.iterdir())
    for folder in again:
        for name in ("phantom.yaml", "treatments.yaml", "outcomes.yaml", "case.yaml", "labels.yaml"):
            assert _sha(folder / name) == _sha(tiny_cohort / folder.name / name), (folder.name, name)
        a = np.asarray(nib.load(folder / "labels.nii.gz").dataobj)
        b = np.asarray(nib.load(tiny_cohort / folder.name / "labels.nii.gz").dataobj)
        np.testing.assert_array_equal(a, b)  # exact: same spec, same phantom


def test_other_seed_other_cohort() -> None:
    a = [draw_patient(3, i, VOXEL_MM).spec for i in range(4)]
    b = [draw_patient(4, i, VOXEL_MM).spec for i in range(4)]
    assert [s["lesions"] for s in a] != [s["lesions"] for s in b]


def test_stated_distributions() -> None:
    n = 1500
    drawn = [draw_patient(11, i, 4.0) for i in range(n)]
    crc = sum(d.spec["patient"]["primary"] == "colorectal" for d in drawn)
    assert abs(crc / n - 0.7) < 4 * np.sqrt(0.7 * 0.3 / n)
    counts = np.bincount([len(d.spec["lesions"]) for d in drawn], minlength=5)[1:]
    for observed, p in zip(counts, (0.4, 0.3, 0.2, 0.1), strict=True):
        assert abs(observed / n - p) < 4 * np.sqrt(p * (1 - p) / n)
    diameters = [les["diameter_mm"] for d in drawn for les in d.spec["lesions"]]
    assert min(diameters) >= 12 and max(diameters) <= 45
    for d in drawn[:50]:
        segs = [les["segment"] for les in d.spec["lesions"]]
        assert len(set(segs)) == len(segs)  # one lesion per segment
        hcc = d.spec["patient"]["primary"] == "hcc"
        assert d.spec["patient"]["cirrhosis"] is hcc


def test_files_are_valid(tiny_cohort: Path) -> None:
    for folder in sorted(tiny_cohort.iterdir()):
        spec = parse_spec(folder / "phantom.yaml")
        treatments = TreatmentsFile.model_validate(yaml.safe_load((folder / "treatments.yaml").read_text()))
        outcomes = Outcomes.model_validate(yaml.safe_load((folder / "outcomes.yaml").read_text()))
        assert {t.lesion for t in treatments.treatments} == {les.id for les in spec.lesions} == set(outcomes.lesions)
        assert min(t.date for t in treatments.treatments) <= outcomes.last_follow_up
