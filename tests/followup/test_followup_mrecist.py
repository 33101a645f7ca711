"""mRECIST on an HCC phantom and the synthetic generator's imaging cases (issue 8)."""

from __future__ import annotations

import numpy as np
import yaml

from latplan.followup._io import read_volume, write_volume
from latplan.followup.analysis import analyse_followup
from latplan.followup.imaging_phantom import PhantomScene, write_imaging_followup
from latplan.followup.synthetic import SyntheticCohortSpec, generate_cohort
from latplan.followup.timepoints import load_timepoints


def test_followup_mrecist_viable_part(tmp_path) -> None:
    """Reference: mRECIST (Lencioni & Llovet 2010) measures the enhancing (viable) tumour. An HCC
    lesion keeps its size at 3 months (RECIST SD: 24 → ~24 mm) while its enhancing part shrinks to
    a sphere of 4 mm radius (≈ 9 mm, −60 % or more) → mRECIST PR; at 6 months no viable tumour
    → mRECIST CR."""
    d = tmp_path / "hcc"
    d.mkdir()
    (d / "case.yaml").write_text(yaml.safe_dump({"patient": {"id": "HCC-1", "primary": "hcc"}}))
    write_imaging_followup(d, "stable", seed=4)
    import shutil

    shutil.rmtree(d / "timepoints" / "post-procedure")  # keep the 3-month scan as the first one
    scene = PhantomScene(4)
    folder = d / "timepoints" / "3m"
    lab = read_volume(folder / "labels.nii.gz")
    arr = np.asarray(lab.array, np.int16)
    xyz = lab.grid_mm()
    # draw on the timepoint grid at the baseline lesion position (registration is not used here)
    arr[np.linalg.norm(xyz - scene.lesion_centre_mm, axis=-1) <= 12.0] = 2
    arr[np.linalg.norm(xyz - scene.lesion_centre_mm, axis=-1) <= 4.0] = 9
    write_volume(lab.with_array(arr), folder / "labels.nii.gz", np.int16)
    table = yaml.safe_load((folder / "labels.yaml").read_text())
    table[9] = {"name": "lesion_1_enhancing", "role": "lesion"}
    (folder / "labels.yaml").write_text(yaml.safe_dump(table))
    a = analyse_followup(d, register_images=False)
    by = {t.label: t for t in a.timepoints}
    assert by["3m"].recist.target.value == "SD"
    assert by["3m"].mrecist is not None and by["3m"].mrecist.target.value == "PR"
    assert by["3m"].mrecist.current_sum_mm < 0.5 * by["3m"].mrecist.baseline_sum_mm
    assert by["6m"].mrecist is not None  # no lesion label → 0 mm viable → CR
    assert by["6m"].mrecist.target.value == "CR"
    assert "Lencioni" in by["3m"].mrecist.citation


def test_followup_synthetic_imaging_cases(tmp_path) -> None:
    """The generator's imaging option writes loadable timepoints for the first cases only, and the
    cohort table still reads every case."""
    folders = generate_cohort(tmp_path / "c", SyntheticCohortSpec(n_patients=3, seed=9, imaging_cases=1))
    assert [len(load_timepoints(f)) for f in folders] == [3, 0, 0]
    assert (folders[0] / "image.nii.gz").is_file() and not (folders[1] / "image.nii.gz").exists()


def test_followup_mrecist_not_assessable_without_enhancement(tmp_path) -> None:
    """mRECIST is never guessed: an HCC lesion present at follow-up without lesion_N_enhancing and
    without enhancement_threshold gives no mRECIST result and a note saying why."""
    d = tmp_path / "hcc"
    d.mkdir()
    (d / "case.yaml").write_text(yaml.safe_dump({"patient": {"id": "HCC-2", "primary": "hcc"}}))
    write_imaging_followup(d, "locally_recurring", seed=8)
    a = analyse_followup(d, register_images=False)
    six = a.timepoints[-1]
    assert six.mrecist is None and "not assessable" in (six.mrecist_note or "")
