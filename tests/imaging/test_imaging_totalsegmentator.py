"""TotalSegmentator-native input: class maps, `latplan case import-totalsegmentator`, merged task outputs.

References: TotalSegmentator's class maps (wasserth/TotalSegmentator @0e65a448,
totalsegmentator/map_to_binary.py: `total` 117 classes, `total_mr` 50, `liver_vessels` 2,
`liver_segments` 8, `body` 2, `liver_lesions` 1); the real CT of ../shared/data/external/totalseg-ct-3mm
(same repository; README: liver ≈ 1.04 L inside the field of view, 2 % tolerance for voxel rounding);
synthetic tumour masks written by the test (round trip: the imported lesions hold exactly those voxels).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from latplan.case.vocabulary import StructureRole
from latplan.cli import app
from latplan.imaging.case_folder import load_case_folder
from latplan.imaging.nifti import read_image, read_labels, write_nifti


@pytest.fixture()
def clinical(tmp_path: Path) -> Path:
    p = tmp_path / "clinical.yaml"
    p.write_text("patient: {id: TS-1, primary: colorectal}\n", encoding="utf-8")
    return p


@pytest.mark.shared_data
def test_import_multilabel_total_then_measure(shared_data: Path, tmp_path: Path, clinical: Path) -> None:
    """The real TotalSegmentator CT imports (multilabel, task total); labels.yaml keeps TotalSegmentator's names;
    the liver is the README's ≈ 1.04 L; `latplan measure` reads the folder (exit 0)."""
    d = shared_data / "external" / "totalseg-ct-3mm"
    out = tmp_path / "case"
    result = CliRunner().invoke(app, ["case", "import-totalsegmentator", str(d / "image.nii.gz"), str(d / "labels.nii.gz"),
                                      "--task", "total", "--out", str(out), "--clinical", str(clinical)])
    assert result.exit_code == 0, result.output
    names = set(yaml.safe_load((out / "labels.yaml").read_text(encoding="utf-8")).values())
    assert {"liver", "portal_vein_and_splenic_vein", "vertebrae_L1", "autochthon_left"} <= names
    case = load_case_folder(out)
    liver_ml = case.mask_array("liver").sum() * case.image.voxel_volume_ml
    assert liver_ml == pytest.approx(1040.0, rel=0.02)
    assert case.role("portal_vein") == StructureRole.PORTAL_VEIN
    measured = CliRunner().invoke(app, ["measure", str(out), "--json"])
    assert measured.exit_code == 0, measured.output


def _sphere(shape: tuple[int, int, int], centre_kji: tuple[int, int, int], r_vox: float) -> np.ndarray:
    k, j, i = np.ogrid[: shape[0], : shape[1], : shape[2]]
    return (k - centre_kji[0]) ** 2 + (j - centre_kji[1]) ** 2 + (i - centre_kji[2]) ** 2 <= r_vox**2


@pytest.mark.shared_data
def test_import_per_class_folders_and_several_tasks_merge(shared_data: Path, tmp_path: Path, clinical: Path) -> None:
    """`total` as a folder of per-class files + `liver_vessels` (multilabel, no stored names) + `body`:
    merged by precedence — the two tumours inside the liver stay lesions (two components → lesion_1 and
    lesion_1_2), vessels overwrite liver, the body does not overwrite organs; measure and plan accept it."""
    d = shared_data / "external" / "totalseg-ct-3mm"
    image = read_image(d / "image.nii.gz")
    labels = read_labels(d / "labels.nii.gz")
    table = yaml.safe_load((d / "labels.yaml").read_text(encoding="utf-8"))
    total_dir = tmp_path / "total"
    total_dir.mkdir()
    for value, name in table.items():
        write_nifti(labels.with_array((labels.array == int(value)).astype(np.uint8)), total_dir / f"{name}.nii.gz")
    liver = labels.array == next(int(v) for v, n in table.items() if n == "liver")
    from scipy import ndimage

    depth = ndimage.distance_transform_edt(liver)  # voxels (3 mm isotropic)
    a = np.unravel_index(int(np.argmax(depth)), liver.shape)
    far = np.linalg.norm(np.indices(liver.shape) - np.reshape(a, (3, 1, 1, 1)), axis=0) >= 9
    b = np.unravel_index(int(np.argmax(np.where(far, depth, 0))), liver.shape)
    assert depth[a] >= 3.5 and depth[b] >= 3.5  # both spheres (r = 2.5 voxels) lie wholly in the liver
    centre = np.asarray(a)
    lv = np.zeros(labels.shape, np.uint8)
    lv[centre[0], centre[1] - 3 : centre[1] + 3, centre[2] - 2] = 1  # a liver_vessels segment
    spheres = [_sphere(labels.shape, tuple(c), 2.5) for c in (a, b)]
    for sph in spheres:
        lv[sph] = 2  # liver_tumor (written after the vessel: the tumour's voxels are exact)
    write_nifti(labels.with_array(lv), tmp_path / "liver_vessels.nii.gz")
    body = labels.with_array((image.array > -500).astype(np.uint8))
    write_nifti(body, tmp_path / "body.nii.gz")
    out = tmp_path / "case"
    result = CliRunner().invoke(app, [
        "case", "import-totalsegmentator", str(d / "image.nii.gz"), str(total_dir), str(tmp_path / "liver_vessels.nii.gz"),
        str(tmp_path / "body.nii.gz"), "--task", "total", "--task", "liver_vessels", "--task", "body",
        "--out", str(out), "--clinical", str(clinical)])
    assert result.exit_code == 0, result.output
    case = load_case_folder(out)
    assert case.lesion_ids == ["lesion_1", "lesion_1_2"]
    for lid in case.lesion_ids:  # round trip: each tumour keeps exactly the voxels written for it
        assert any(np.array_equal(case.mask_array(lid), sph) for sph in spheres), lid
        assert not (case.mask_array(lid) & case.mask_array("liver")).any()
    assert case.has("liver_vessels") and case.has("body")
    assert not (case.mask_array("body") & case.mask_array("liver")).any()
    written = set(yaml.safe_load((out / "labels.yaml").read_text(encoding="utf-8")).values())
    assert {"liver_tumor", "liver_vessels", "body_trunc", "liver"} <= written
    measured = CliRunner().invoke(app, ["measure", str(out), "--json"])
    assert measured.exit_code == 0, measured.output
    assert '"lesion_1_2"' in measured.output
