"""DICOM in → DICOM out for a case with an inserted synthetic lesion (``latplan insert-lesion``).

The new image is written as a *derived* series of the source (DICOM PS3.3 C.7.6.1 General Image:
Image Type value 1 ``DERIVED``, value 2 ``SECONDARY``; C.7.6.1.1.3 Derivation Description) and the
label map as a DICOM SEG referencing it (:func:`latplan.imaging.seg.write_seg`, highdicom):

- Patient and Study are kept (every Patient/Study module attribute is copied from the source);
- a new SeriesInstanceUID for the series, a new SOPInstanceUID per slice, SeriesDescription prefixed
  ``latplan synthetic lesion``, DerivationDescription saying which lesion was inserted;
- pixel data are stored uncompressed (Explicit VR Little Endian) as ``(value − intercept) / slope``
  rounded into the source's stored integer range; geometry attributes are the source's.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from latplan.case import Case
from latplan.errors import InvalidInputError
from latplan.imaging.dicom_series import DicomSeries, load_dicom_series
from latplan.imaging.output import output_dir
from latplan.imaging.paths import confine
from latplan.imaging.safe_yaml import load_yaml_file
from latplan.imaging.seg import write_seg
from latplan.imaging.volume import Volume

if TYPE_CHECKING:
    from pydicom import Dataset

__all__ = ["DERIVED_SERIES_NUMBER", "dicom_image_folder", "save_case_as_derived_dicom", "write_derived_series"]

#: series number of the derived image series (the SEG uses 900)
DERIVED_SERIES_NUMBER = 901


def _stored_values(ds: Dataset, hu_slice: np.ndarray) -> np.ndarray:
    slope = float(getattr(ds, "RescaleSlope", None) or 1.0)
    intercept = float(getattr(ds, "RescaleIntercept", None) or 0.0)
    bits = int(getattr(ds, "BitsStored", 16) or 16)
    signed = int(getattr(ds, "PixelRepresentation", 0) or 0) == 1
    lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    stored = np.clip(np.rint((hu_slice - intercept) / slope), lo, hi)
    out: np.ndarray = stored.astype(np.int16 if signed else np.uint16)
    return out


def write_derived_series(source: DicomSeries, image: Volume, folder: Path, description: str) -> list[Dataset]:
    """Write ``image`` (on the source grid) as a derived series of ``source`` into ``folder``."""
    import pydicom
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, MRImageStorage, generate_uid

    _STORAGE_BY_MODALITY = {"CT": CTImageStorage, "MR": MRImageStorage}

    source.volume.require_same_geometry(image, "the new image and its DICOM source series")
    series_uid = generate_uid()
    folder.mkdir(parents=True, exist_ok=True)
    out: list[Dataset] = []
    for k, (src, path) in enumerate(zip(source.datasets, source.files, strict=True)):
        ds = pydicom.dcmread(str(path))  # a full copy (the source datasets stay untouched)
        if "PixelData" in ds and ds.file_meta.TransferSyntaxUID.is_compressed:
            del ds.PixelData
        arr = _stored_values(src, np.asarray(image.array[k], float))
        bits = int(ds.get("BitsStored", 16) or 16)
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, bits, bits - 1
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.PixelData = arr.tobytes()
        ds["PixelData"].VR = "OW"
        ds.SeriesInstanceUID = series_uid
        ds.SOPInstanceUID = generate_uid()
        ds.SeriesNumber = DERIVED_SERIES_NUMBER
        ds.SeriesDescription = f"latplan synthetic lesion: {getattr(src, 'SeriesDescription', '') or ''!s}"[:64]
        image_type = [str(v) for v in (getattr(src, "ImageType", None) or ["ORIGINAL", "PRIMARY"])]
        ds.ImageType = ["DERIVED", "SECONDARY", *image_type[2:]]
        ds.DerivationDescription = description[:1024]
        if not str(getattr(ds, "SOPClassUID", "") or ""):  # some exports blank it; the modality decides
            ds.SOPClassUID = _STORAGE_BY_MODALITY.get(str(getattr(ds, "Modality", "CT")).upper(), CTImageStorage)
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.save_as(str(folder / f"{k + 1:04d}.dcm"), enforce_file_format=True)
        out.append(ds)
    return out


def dicom_image_folder(case_dir: str | os.PathLike[str]) -> Path | None:
    """The DICOM series folder a case folder's image comes from, or None (NIfTI/NRRD image)."""
    folder = Path(case_dir)
    name: object = "dicom"
    case_yaml = folder / "case.yaml"
    if case_yaml.is_file():
        data = load_yaml_file(case_yaml)
        if isinstance(data, dict) and data.get("image") is not None:
            name = data["image"]
    path = confine(folder, name, "image", str(case_yaml))
    return path if path.is_dir() else None


def save_case_as_derived_dicom(case: Case, source_folder: str | os.PathLike[str], out: str | os.PathLike[str],
                               description: str, overwrite: bool = False) -> Path:
    """Write ``case`` as a case folder holding ``dicom/`` (derived series) + ``seg.dcm`` + ``case.yaml``."""
    import yaml

    src_dir = Path(source_folder)
    series = load_dicom_series(src_dir)
    target = Path(out)
    if target.exists() and not overwrite:
        raise InvalidInputError(f"{target} already exists; choose another output folder or pass --overwrite.")
    names = {e.value: e.name for e in case.label_table.entries}
    with output_dir(target, overwrite=True, kind="case", replace_latplan_output=False, manifest=False) as staging:
        write_derived_series(series, case.image, staging / "dicom", description)
        labels = case.labels.with_array(np.asarray(case.labels.array))
        write_seg(labels, {v: n for v, n in names.items() if (labels.array == v).any()}, staging / "dicom",
                  staging / "seg.dcm")
        spec = {"patient": case.patient.model_dump(mode="json", exclude_none=True), "image_modality": case.image_modality}
        with open(staging / "case.yaml", "w", encoding="utf-8") as fh:
            fh.write("# latplan case folder: derived DICOM series + SEG with a synthetic lesion (docs/imaging.md)\n")
            yaml.safe_dump(spec, fh, sort_keys=False, allow_unicode=True)
    return target
