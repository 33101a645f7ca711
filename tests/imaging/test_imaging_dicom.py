"""DICOM series reader: geometry from ImagePositionPatient, HU rescale, and each named series error.

Bad series are built in tmp dirs from the real totalseg-ct-dicom slices (TotalSegmentator
@0e65a448, Apache-2.0), modified in memory with pydicom — never committed. Reference for
geometry: DICOM PS3.3 C.7.6.2.1.1 (voxel (c, r) of a slice lies at IPP + c·Δc·row_cos + r·Δr·col_cos).
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

from latplan.errors import DicomError
from latplan.imaging.dicom_series import list_dicom_series, load_dicom_series, read_dicom_series
from latplan.imaging.errors import (
    DuplicateSliceError,
    GantryTiltError,
    MissingSliceError,
    MixedSeriesError,
    NonOrthonormalOrientationError,
    NonUniformSpacingError,
    TruncatedDicomError,
)
from latplan.imaging.nifti import read_image


@pytest.fixture(scope="module")
def ct_datasets(shared_data) -> list[pydicom.Dataset]:
    folder = shared_data / "external" / "totalseg-ct-dicom" / "dicom"
    return [pydicom.dcmread(str(p)) for p in sorted(folder.iterdir())]


def _write(folder: Path, datasets, names=None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for n, ds in enumerate(datasets):
        ds.save_as(str(folder / (names[n] if names else f"s{n:03d}.dcm")))
    return folder


def _copies(ct_datasets, n=None):
    return [copy.deepcopy(ds) for ds in (ct_datasets[:n] if n else ct_datasets)]


def test_real_series_geometry_and_hu(shared_data, ct_datasets):
    """20 slices, 0.977 mm pixels, 2 mm spacing from IPP (not SliceThickness 3 mm, README); HU = raw − 1024;
    every voxel's mm position matches the DICOM PS3.3 formula (tol 1e-4 mm)."""
    ser = load_dicom_series(shared_data / "external" / "totalseg-ct-dicom" / "dicom")
    vol = ser.volume
    assert vol.shape == (20, 512, 512)
    np.testing.assert_allclose(vol.spacing_mm, [0.9765625, 0.9765625, 2.0], atol=1e-6)
    assert float(ct_datasets[0].SliceThickness) == 3.0
    assert vol.array.dtype == np.float32
    for ds in (ser.datasets[0], ser.datasets[13]):
        k = int(np.argmin(np.abs(vol.index_to_mm(np.array([[kk, 0, 0] for kk in range(20)]))[:, 2]
                                  - float(ds.ImagePositionPatient[2]))))
        raw = ds.pixel_array.astype(np.float32) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        np.testing.assert_array_equal(vol.array[k], raw)
        r, c = np.asarray(ds.ImageOrientationPatient[:3], float), np.asarray(ds.ImageOrientationPatient[3:], float)
        dr, dc = (float(x) for x in ds.PixelSpacing)
        expected = np.asarray(ds.ImagePositionPatient, float) + 7 * dc * r + 3 * dr * c
        np.testing.assert_allclose(vol.index_to_mm(np.array([k, 3, 7])), expected, atol=1e-4)


def test_file_order_does_not_matter(tmp_path, ct_datasets):
    """Slices are sorted by position along the normal, not by file name (reversed names, same volume)."""
    ds = _copies(ct_datasets, 6)
    a = read_dicom_series(_write(tmp_path / "a", ds))
    b = read_dicom_series(_write(tmp_path / "b", ds, names=[f"z{9 - n}.dcm" for n in range(6)]))
    np.testing.assert_array_equal(a.array, b.array)
    np.testing.assert_allclose(a.affine, b.affine)
    assert read_image(tmp_path / "a").shape == (6, 512, 512)


def test_truncated_file(tmp_path, ct_datasets):
    """A DICOM file cut in half: TruncatedDicomError naming the file."""
    folder = _write(tmp_path / "s", _copies(ct_datasets, 5))
    victim = folder / "s002.dcm"
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 2])
    with pytest.raises(TruncatedDicomError, match=r"s002.dcm"):
        read_dicom_series(folder)


def test_missing_slice(tmp_path, ct_datasets):
    """One slice removed: MissingSliceError naming both neighbours, the 4 mm gap and the 2 mm median."""
    ds = _copies(ct_datasets, 8)
    del ds[4]
    with pytest.raises(MissingSliceError, match=r"between s004.dcm .* and s003.dcm .* is 4.00 mm, .* median spacing 2.00 mm"):
        read_dicom_series(_write(tmp_path / "s", ds))


def test_two_series_mixed_then_split(tmp_path, ct_datasets):
    """Two SeriesInstanceUIDs in one folder: MixedSeriesError listing both; series_uid= picks one."""
    a = _copies(ct_datasets, 4)
    b = _copies(ct_datasets, 3)
    uid_a, uid_b = generate_uid(), generate_uid()
    for ds in a:
        ds.SeriesInstanceUID = uid_a
    for ds in b:
        ds.SeriesInstanceUID = uid_b
    folder = _write(tmp_path / "s", a + b)
    with pytest.raises(MixedSeriesError, match=r"mixes 2 DICOM series .*4 slices.*3 slices"):
        read_dicom_series(folder)
    assert {s["series_uid"]: s["slices"] for s in list_dicom_series(folder)} == {uid_a: 4, uid_b: 3}
    assert read_dicom_series(folder, series_uid=uid_b).shape == (3, 512, 512)


def test_orientation_mixed_within_series(tmp_path, ct_datasets):
    """One slice with another orientation inside the series: MixedSeriesError naming that file."""
    ds = _copies(ct_datasets, 4)
    ds[2].ImageOrientationPatient = [0, 1, 0, 0, 0, -1]
    with pytest.raises(MixedSeriesError, match=r"s002.dcm has orientation"):
        read_dicom_series(_write(tmp_path / "s", ds))


def test_non_orthonormal_orientation(tmp_path, ct_datasets):
    """Row/column cosines not perpendicular: NonOrthonormalOrientationError with the dot product."""
    ds = _copies(ct_datasets, 3)
    for d in ds:
        d.ImageOrientationPatient = [1, 0, 0, 0.1, 0.995, 0]
    with pytest.raises(NonOrthonormalOrientationError, match=r"not orthonormal .*row·column = 0.1000"):
        read_dicom_series(_write(tmp_path / "s", ds))


def test_gantry_tilt(tmp_path, ct_datasets):
    """Slice origins drifting 1 mm/slice in y (sheared stack): GantryTiltError with the drift and angle."""
    ds = _copies(ct_datasets, 5)
    for n, d in enumerate(ds):
        ipp = [float(x) for x in d.ImagePositionPatient]
        d.ImagePositionPatient = [ipp[0], ipp[1] + n * 1.0, ipp[2]]
    with pytest.raises(GantryTiltError, match=r"drift 4.00 mm sideways .*26.57°"):
        read_dicom_series(_write(tmp_path / "s", ds))


def test_non_uniform_spacing_and_duplicates(tmp_path, ct_datasets):
    """A slice moved by 0.5 mm: NonUniformSpacingError; two slices at one position: DuplicateSliceError."""
    ds = _copies(ct_datasets, 6)
    ipp = [float(x) for x in ds[3].ImagePositionPatient]
    ds[3].ImagePositionPatient = [ipp[0], ipp[1], ipp[2] + 0.5]
    with pytest.raises(NonUniformSpacingError, match=r"non-uniform slice spacing .*s004.dcm → s003.dcm is 2.500 mm while the median is 2.000 mm"):
        read_dicom_series(_write(tmp_path / "a", ds))
    ds = _copies(ct_datasets, 4)
    ds[2].ImagePositionPatient = list(ds[1].ImagePositionPatient)
    with pytest.raises(DuplicateSliceError, match=r"same position"):
        read_dicom_series(_write(tmp_path / "b", ds))


def test_localizer_skipped(tmp_path, ct_datasets):
    """A LOCALIZER image in the series folder is skipped (and reported), the axial stack loads."""
    ds = _copies(ct_datasets, 4)
    loc = copy.deepcopy(ct_datasets[0])
    loc.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
    loc.ImageOrientationPatient = [1, 0, 0, 0, 0, -1]
    loc.SOPInstanceUID = generate_uid()
    folder = _write(tmp_path / "s", [*ds, loc])
    ser = load_dicom_series(folder)
    assert ser.volume.shape == (4, 512, 512)
    assert any("localizer" in s for s in ser.skipped)


def test_sagittal_series_affine(tmp_path, ct_datasets):
    """A (synthetic) sagittal stack: i along +y, j along −z, k along the normal row×col = −x (slices
    sorted along the normal, so k = 0 is the slice at x = 16); affine follows PS3.3 (tol 1e-6 mm)."""
    ds = _copies(ct_datasets, 3)
    for n, d in enumerate(ds):
        d.ImageOrientationPatient = [0, 1, 0, 0, 0, -1]
        d.ImagePositionPatient = [10.0 + 3.0 * n, -100.0, 50.0]
    vol = read_dicom_series(_write(tmp_path / "s", ds))
    np.testing.assert_allclose(vol.direction, [[0, 0, -1], [1, 0, 0], [0, -1, 0]], atol=1e-9)
    np.testing.assert_allclose(vol.spacing_mm, [0.9765625, 0.9765625, 3.0])
    np.testing.assert_allclose(vol.index_to_mm(np.array([2, 4, 5])), [10.0, -100 + 5 * 0.9765625, 50 - 4 * 0.9765625])


def test_dicom_errors_are_dicom_errors():
    """All named series errors derive from DicomError (one base for callers)."""
    for exc in (TruncatedDicomError, MissingSliceError, MixedSeriesError, NonOrthonormalOrientationError,
                GantryTiltError, NonUniformSpacingError, DuplicateSliceError):
        assert issubclass(exc, DicomError)


def test_empty_or_nested_folder(tmp_path):
    """A folder without slices: NotDicomSeriesError; with sub-folders the message points to them."""
    from latplan.imaging.errors import NotDicomSeriesError

    (tmp_path / "series_1").mkdir()
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(NotDicomSeriesError, match=r"no DICOM image slices found .*sub-folders \(series_1\)"):
        read_dicom_series(tmp_path)


def test_cli_inspect_image(shared_data):
    """`latplan inspect-image --json` reports the DICOM grid: LPS, 0.977/0.977/2 mm, 20 slices."""
    import json

    from typer.testing import CliRunner

    from latplan.cli import app

    res = CliRunner().invoke(app, ["inspect-image", str(shared_data / "external" / "totalseg-ct-dicom" / "dicom"), "--json"])
    assert res.exit_code == 0, res.output
    info = json.loads(res.output)
    assert info["orientation"] == "LPS" and info["shape_kji"] == [20, 512, 512]
    assert info["spacing_mm_ijk"] == [0.97656, 0.97656, 2.0]
