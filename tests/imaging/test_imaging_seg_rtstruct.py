"""DICOM SEG (highdicom) and RTSTRUCT: real files, write/read round trip, even-odd holes.

Data: dcmqi-liver-seg (QIICR/dcmqi @b6137d9e, BSD-3), dicompyler-rt (dicompyler-core @0d5729d7, BSD-style).
"""

from __future__ import annotations

import shutil

import numpy as np
import pydicom
import pytest
from dicom_builders import rtstruct_dataset
from pydicom.uid import generate_uid

from latplan.errors import EmptyStructureError, GeometryMismatchError
from latplan.imaging import Volume
from latplan.imaging.dicom_series import read_dicom_series
from latplan.imaging.rtstruct import read_rtstruct, rtstruct_masks
from latplan.imaging.seg import read_seg, write_seg


@pytest.fixture(scope="module")
def dcmqi(shared_data):
    d = shared_data / "external" / "dcmqi-liver-seg"
    return d, read_dicom_series(d / "ct")


def test_dcmqi_seg_aligns_with_ct(dcmqi):
    """dcmqi liver SEG: every frame lands on a CT slice (in-plane offset 0, slice index integral within 0.1);
    the liver covers each of the 3 slices; mean HU inside is soft tissue (−100..250 HU, liver on CT),
    outside includes air (< −500 HU somewhere). The SEG's own grid equals the CT grid."""
    d, ct = dcmqi
    assert ct.shape == (3, 512, 512)
    np.testing.assert_allclose(ct.spacing_mm[2], 1.0, atol=1e-6)  # IPP spacing (SliceThickness says 1.25)
    labels, names = read_seg(d / "liver-seg.dcm", ct)
    assert names == {1: "Liver"}
    per_slice = (labels.array == 1).sum(axis=(1, 2))
    assert np.all(per_slice > 10000)
    inside = ct.array[labels.array == 1]
    assert -100 < float(inside.mean()) < 250
    assert float(ct.array[labels.array == 0].min()) < -500
    own, _ = read_seg(d / "liver-seg.dcm")
    assert own.same_geometry(ct)
    np.testing.assert_array_equal(own.array, labels.array)


def test_seg_write_read_round_trip(tmp_path, dcmqi):
    """write_seg then read_seg gives back the same label values, voxels and names (round-trip habit)."""
    d, ct = dcmqi
    liver, _ = read_seg(d / "liver-seg.dcm", ct)
    arr = liver.array.copy()
    arr[1, 200:220, 300:330] = 7
    arr[2, 100:105, 100:140] = 12
    labels = liver.with_array(arr)
    names = {1: "liver", 7: "lesion_1", 12: "portal_vein"}
    out = write_seg(labels, names, d / "ct", tmp_path / "seg.dcm")
    back, back_names = read_seg(out, ct)
    assert back_names == names
    np.testing.assert_array_equal(back.array, arr)
    ds = pydicom.dcmread(str(out))
    assert ds.Modality == "SEG" and len(ds.SegmentSequence) == 3


def test_seg_write_rejects_other_grid(tmp_path, dcmqi):
    """A label map not on the source series grid: GeometryMismatchError naming what differs."""
    d, ct = dcmqi
    shifted = Volume(np.ones(ct.shape, np.int32), ct.affine + np.pad(np.eye(3)[:, :1] * 0, ((0, 1), (3, 0))))
    aff = np.array(ct.affine)
    aff[2, 3] += 5.0
    with pytest.raises(GeometryMismatchError, match=r"origin differs by 5 mm"):
        write_seg(Volume(shifted.array, aff), {1: "liver"}, d / "ct", tmp_path / "x.dcm")
    assert not (tmp_path / "x.dcm").exists()


def test_seg_frames_off_the_reference_grid(dcmqi):
    """SEG read onto a series it was not drawn on (shifted 0.4 slice): GeometryMismatchError, not misplacement."""
    d, ct = dcmqi
    aff = np.array(ct.affine)
    aff[2, 3] += 0.4
    with pytest.raises(GeometryMismatchError, match=r"does not fall on a voxel"):
        read_seg(d / "liver-seg.dcm", Volume(ct.array, aff))


def _square(half: float, z: float) -> np.ndarray:
    return np.array([[-half, -half, z], [half, -half, z], [half, half, z], [-half, half, z]])


def test_rtstruct_hole_by_even_odd(tmp_path):
    """Square 19×19 mm with a 9×9 mm inner contour on 5 planes (2 mm): even-odd gives a ring of
    19² − 9² = 280 mm² per slice (analytic; edges on half-voxels so pixel-centre counting is exact),
    i.e. 280 × 2 × 5 / 1000 = 2.8 ml. An ROI without contours is reported empty."""
    ref = Volume(np.zeros((7, 30, 30), np.float32), np.array([[1.0, 0, 0, -15], [0, 1, 0, -15], [0, 0, 2, -2], [0, 0, 0, 1]]))
    contours = [c for z in (0, 2, 4, 6, 8) for c in (_square(9.5, z), _square(4.5, z))]
    path = tmp_path / "rt.dcm"
    rtstruct_dataset({"liver": contours, "empty_one": []}).save_as(str(path), enforce_file_format=True)
    labels, names, empty = read_rtstruct(path, ref)
    assert labels.same_geometry(ref)
    assert names == {1: "liver"}
    assert empty == ["empty_one"]
    per_slice = (labels.array == 1).sum(axis=(1, 2))
    np.testing.assert_array_equal(per_slice, [0, 280, 280, 280, 280, 280, 0])
    assert labels.array[3, 15, 15] == 0  # centre of the hole
    ml = (labels.array == 1).sum() * labels.voxel_volume_ml
    assert ml == pytest.approx(2.8, abs=1e-9)


def test_rtstruct_without_contours_is_an_error(tmp_path):
    """An RTSTRUCT with no contour at all: EmptyStructureError saying nothing can be rasterised."""
    path = tmp_path / "rt.dcm"
    rtstruct_dataset({"a": [], "b": []}).save_as(str(path), enforce_file_format=True)
    with pytest.raises(EmptyStructureError, match=r"no closed planar contours"):
        read_rtstruct(path, None)


def _polygon_ml(contours: list[np.ndarray], dz_mm: float) -> float:
    area = 0.0
    for p in contours:
        x, y = p[:, 0], p[:, 1]
        area += abs(0.5 * float(np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y)))
    return area * dz_mm / 1000.0


def test_dicompyler_rtstruct_volumes_match_polygon_areas(shared_data):
    """dicompyler-rt: one CT slice, contours over ≈ 290 mm → rasterised on the contours' own grid (README);
    each ROI's voxel volume matches Σ shoelace polygon area × slice spacing: 3 % for ROIs ≥ 10 ml,
    10 % for 0.5–10 ml (voxelisation of small outlines). 'Areola' has no contours: reported empty."""
    from latplan.imaging.rtstruct import _rt_contours

    d = shared_data / "external" / "dicompyler-rt"
    ct = read_dicom_series(d)
    assert ct.shape[0] == 1
    notes: list[str] = []
    grid, masks, empty = rtstruct_masks(d / "rtss.dcm", ct, notes)
    assert empty == ["Areola"]
    assert any("contours' own extent" in n for n in notes)
    np.testing.assert_allclose(grid.spacing_mm[:2], ct.spacing_mm[:2])
    extent_z = grid.spacing_mm[2] * (grid.shape[0] - 1)
    assert 280 <= extent_z <= 300
    names, contours = _rt_contours(pydicom.dcmread(str(d / "rtss.dcm")))
    checked = 0
    for num, name in names.items():
        ref_ml = _polygon_ml(contours[num], float(grid.spacing_mm[2]))
        if ref_ml < 0.5:
            continue
        got_ml = float(masks[name].sum()) * grid.voxel_volume_ml
        tol = 0.03 if ref_ml >= 10 else 0.10
        assert got_ml == pytest.approx(ref_ml, rel=tol), name
        checked += 1
    assert checked >= 7
    labels, table, empty2 = read_rtstruct(d / "rtss.dcm", ct)
    assert "Heart" in table.values() and "Areola" not in table.values() and empty2 == ["Areola"]
    # small structures survive in the label map although BODY contains them
    heart_value = next(v for v, n in table.items() if n == "Heart")
    assert (labels.array == heart_value).sum() == masks["Heart"].sum()


def test_case_folder_with_dicom_and_seg(tmp_path, dcmqi):
    """Case folder = dicom/ (copies of the dcmqi CT slices: a symlink leaving the folder is refused) + seg.dcm:
    loads, SEG names become the label table ('Liver' → liver), labels on the CT grid, DICOM slices hashed."""
    from latplan.imaging.case_folder import load_case_folder

    d, ct = dcmqi
    case_dir = tmp_path / "case"
    (case_dir / "dicom").mkdir(parents=True)
    for f in sorted((d / "ct").iterdir()):
        shutil.copyfile(f, case_dir / "dicom" / f.name)
    shutil.copyfile(d / "liver-seg.dcm", case_dir / "seg.dcm")
    (case_dir / "case.yaml").write_text("patient: {id: SEG-1, primary: hcc}\n")
    case = load_case_folder(case_dir)
    assert case.structure_names() == ["liver"]
    assert case.labels.same_geometry(ct)
    assert case.image_modality == "CT"
    assert sum(k.startswith("dicom/") for k in case.input_hashes) == 3


def test_case_folder_with_rtstruct(tmp_path, shared_data):
    """Case folder = dicom/ (the single dicompyler CT slice) + rtstruct.dcm: contours are resampled onto
    the one-slice image grid with notes; BODY/Heart map to canonical names, 'Lt Lung' gets role other,
    the empty 'Areola' is reported."""
    from latplan.imaging.case_folder import load_case_folder

    d = shared_data / "external" / "dicompyler-rt"
    case_dir = tmp_path / "case"
    (case_dir / "dicom").mkdir(parents=True)
    shutil.copyfile(d / "ct.0.dcm", case_dir / "dicom" / "ct.0.dcm")  # copies: symlinks leaving are refused
    shutil.copyfile(d / "rtss.dcm", case_dir / "rtstruct.dcm")
    notes: list[str] = []
    case = load_case_folder(case_dir, patient={"id": "RT-1", "primary": "breast"}, notes=notes)
    assert case.image.shape[0] == 1
    assert {"body", "heart"} <= set(case.label_table.names())
    assert case.label_table.role("lt_lung").value == "other"
    assert any("Areola" in n for n in notes)
    assert any("resampled onto the image grid" in n for n in notes)
    assert case.has("body")


@pytest.mark.parametrize("seg_type", ["FRACTIONAL", "LABELMAP"])
def test_read_seg_fractional_and_labelmap(tmp_path, dcmqi, seg_type):
    """SEGs written by highdicom itself (independent writer) as FRACTIONAL (probability, read at ≥ 0.5) and
    LABELMAP (pixel = segment number) read back to the same label map."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    d, ct = dcmqi
    sources = [pydicom.dcmread(str(f)) for f in sorted((d / "ct").iterdir())]
    sources.sort(key=lambda ds: float(ds.ImagePositionPatient[2]))
    for ds in sources:  # this export has an empty SpecificCharacterSet that highdicom refuses
        if "SpecificCharacterSet" in ds and not str(ds.SpecificCharacterSet or "").strip():
            del ds.SpecificCharacterSet
    lab = np.zeros(ct.shape, np.uint8)
    lab[:, 100:150, 200:260] = 1
    lab[1, 300:320, 300:330] = 2
    # source order sorted by z ascending = our k order (normal +z)
    descs = [
        hd.seg.SegmentDescription(n, name, codes.SCT.Organ, codes.SCT.Organ, hd.seg.SegmentAlgorithmTypeValues.MANUAL)
        for n, name in ((1, "liver"), (2, "lesion_1"))
    ]
    if seg_type == "FRACTIONAL":
        pix = np.stack([(lab == 1), (lab == 2)], axis=-1).astype(np.float32) * 0.8
    else:
        pix = lab
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # single-component PatientName in the source
        seg = hd.seg.Segmentation(
            source_images=sources, pixel_array=pix, segmentation_type=seg_type, segment_descriptions=descs,
            series_instance_uid=generate_uid(), series_number=1, sop_instance_uid=generate_uid(), instance_number=1,
            manufacturer="test", manufacturer_model_name="test", software_versions="0", device_serial_number="0",
        )
    path = tmp_path / "seg.dcm"
    seg.save_as(str(path))
    back, names = read_seg(path, ct)
    assert names == {1: "liver", 2: "lesion_1"}
    np.testing.assert_array_equal(back.array, lab)
