"""The real cases of ../shared/data/external imported and planned end to end (issue [L] "Done when").

Data (see its README; each test names its origin): TotalSegmentator CT (wasserth/TotalSegmentator @0e65a448,
Apache-2.0) as NIfTI and as DICOM, the dcmqi DICOM CT + SEG liver (QIICR/dcmqi @b6137d9e, BSD-3), the
dicompyler RTSTRUCT case (dicompyler/dicompyler-core @0d5729d7, BSD-style). None has a tumour: a synthetic
lesion is inserted at the liver's deepest point (≥ 95 % inside the liver, issue [L]).

Capsule and entry checks (references: analytic geometry on the grid; the Hounsfield scale for the body):
the liver of the TotalSegmentator CT is cut by the scan's top or bottom face, so a lesion placed one
lesion radius from that face must not take the face for the capsule (its capsule distance comes from
liver surface inside the image and is flagged limited by the field of view); a needle path from it along
the cut axis reaches the edge of the image inside the body and is "cannot be verified", while a lateral
path leaves the body inside the image at a skin point.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from real_cases import dcmqi_seg_case_folder
from scipy import ndimage
from typer.testing import CliRunner

from latplan.cli import app
from latplan.imaging.case_folder import load_case_folder, save_case_folder
from latplan.imaging.fov import (
    body_mask_from_image,
    capsule_distance_in_fov,
    edge_faces,
    path_inside_image_and_through_body,
)
from latplan.imaging.insert import insert_lesion
from latplan.pipeline import PlanOptions, plan_case_folder

pytestmark = [pytest.mark.shared_data, pytest.mark.slow]

OPTIONS = PlanOptions(simulate=False, pdf=False)


def _plan(case_dir: Path, out: Path) -> dict[str, object]:
    result = plan_case_folder(case_dir, out, OPTIONS)
    assert result.files["plan_json"].is_file()
    doc: dict[str, object] = json.loads(result.files["plan_json"].read_text(encoding="utf-8"))
    return doc


def test_totalsegmentator_ct_import_capsule_entry_and_plan(shared_data: Path, tmp_path: Path) -> None:
    """Import (multilabel, task total) → lesion near the cut face of the liver → capsule from the surface
    inside the image, entries verifiable only through a wall shown in the image → planned."""
    d = shared_data / "external" / "totalseg-ct-3mm"
    clinical = tmp_path / "clinical.yaml"
    clinical.write_text("patient: {id: E2E-TS, primary: colorectal}\n", encoding="utf-8")
    imported = tmp_path / "imported"
    r = CliRunner().invoke(app, ["case", "import-totalsegmentator", str(d / "image.nii.gz"), str(d / "labels.nii.gz"),
                                 "--task", "total", "--out", str(imported), "--clinical", str(clinical)])
    assert r.exit_code == 0, r.output
    case = load_case_folder(imported)
    liver = case.mask_array("liver")
    faces = [f for f in edge_faces(liver) if f.startswith("k")]
    assert faces, "this liver is cut by the scan's top or bottom face (README: liver inside the field of view)"
    k_face = 0 if "k0" in faces else liver.shape[0] - 1
    k = 2 if k_face == 0 else k_face - 2  # lesion centre 2 slices (6 mm) from the cut face
    depth = ndimage.distance_transform_edt(liver[k], sampling=case.image.spacing_kji_mm[1:])
    j, i = np.unravel_index(int(np.argmax(depth)), depth.shape)
    assert depth[j, i] >= 15.0
    centre = case.image.index_to_mm(np.array([k, j, i], float))
    with_lesion = insert_lesion(case, list(centre), 9.0)
    lesion = with_lesion.mask_array("lesion_1")
    envelope = liver | lesion
    d_caps = capsule_distance_in_fov(with_lesion.labels, lesion, envelope)
    assert d_caps.limited_by_fov
    assert d_caps.edge_distance_mm <= 2 * 3.0  # the face is ≤ 2 slices away
    assert d_caps.distance_mm is not None and d_caps.distance_mm >= 10.0 > d_caps.edge_distance_mm

    body = body_mask_from_image(with_lesion.image, "CT")
    along_cut = path_inside_image_and_through_body(with_lesion.image, body, centre,
                                                   centre + np.array([0.0, 0.0, 80.0 if k_face else -80.0]))
    assert not along_cut.verifiable and "cannot be verified" in (along_cut.reason or "")
    lateral = path_inside_image_and_through_body(with_lesion.image, body, centre, centre + np.array([-150.0, 0, 0]))
    assert lateral.verifiable and lateral.skin_point_mm is not None
    skin_idx = np.rint(with_lesion.image.mm_to_index(np.array(lateral.skin_point_mm))).astype(int)
    assert with_lesion.image.array[tuple(skin_idx)] > -400  # last body voxel: tissue, not air

    case_dir = save_case_folder(with_lesion, tmp_path / "case")
    shutil.copyfile(imported / "case.yaml", case_dir / "case.yaml")
    doc = _plan(case_dir, tmp_path / "plan")
    assert [les["id"] for les in doc["lesions"]] == ["lesion_1"]  # type: ignore[attr-defined]


def test_totalsegmentator_dicom_ct_planned(shared_data: Path, tmp_path: Path) -> None:
    """DICOM series + y-flipped label map (README): loads (resampled, noted), lesion inserted, planned."""
    src = tmp_path / "src"
    shutil.copytree(shared_data / "external" / "totalseg-ct-dicom", src)
    (src / "case.yaml").write_text("patient: {id: E2E-DCM, primary: colorectal}\n", encoding="utf-8")
    notes: list[str] = []
    case = load_case_folder(src, notes=notes)
    assert any("resampled by physical position" in n for n in notes)
    case_dir = save_case_folder(insert_lesion(case, None, 15.0), tmp_path / "case")
    doc = _plan(case_dir, tmp_path / "plan")
    assert [les["id"] for les in doc["lesions"]] == ["lesion_1"]  # type: ignore[attr-defined]


def test_dcmqi_dicom_seg_liver_planned(shared_data: Path, tmp_path: Path) -> None:
    """Three real CT slices + the dcmqi liver SEG as a case folder: SEG names → liver, lesion in it, planned."""
    src = dcmqi_seg_case_folder(shared_data, tmp_path / "src", "E2E-SEG")
    case = load_case_folder(src)
    assert case.structure_names() == ["liver"]
    case_dir = save_case_folder(insert_lesion(case, None, 3.0), tmp_path / "case")
    doc = _plan(case_dir, tmp_path / "plan")
    assert [les["id"] for les in doc["lesions"]] == ["lesion_1"]  # type: ignore[attr-defined]


def test_dicompyler_rtstruct_case_planned(shared_data: Path, tmp_path: Path) -> None:
    """The real RTSTRUCT on its one CT slice (a breast case, no liver): structures outside the slice and the
    empty 'Areola' are reported, BODY is on the grid, and planning runs to a plan.json without lesions."""
    d = shared_data / "external" / "dicompyler-rt"
    src = tmp_path / "src"
    (src / "dicom").mkdir(parents=True)
    shutil.copyfile(d / "ct.0.dcm", src / "dicom" / "ct.0.dcm")
    shutil.copyfile(d / "rtss.dcm", src / "rtstruct.dcm")
    (src / "case.yaml").write_text("patient: {id: E2E-RT, primary: breast}\n", encoding="utf-8")
    notes: list[str] = []
    case = load_case_folder(src, notes=notes)
    assert case.structure_names() == ["body"]
    assert any("Areola" in n for n in notes)
    doc = _plan(src, tmp_path / "plan")
    assert doc["lesions"] == [] and "rtstruct.dcm" in doc["input_hashes"]  # type: ignore[operator]
