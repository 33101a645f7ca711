"""The image series every exported DICOM object refers to, and the header parts they share.

The input series when the case was read from DICOM and its geometry is the case grid (patient,
study and frame of reference kept, nothing rewritten); otherwise a CT or MR series written from
the case volume, with a new study and frame of reference (``OUT/dicom/image/``).

Research marking (issue [M]): every series description written here ends with
``RESEARCH_NOTE``; RT objects add RT Plan Intent RESEARCH and Approval Status UNAPPROVED.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID, ExplicitVRLittleEndian, generate_uid

from latplan._version import __version__
from latplan.case import Case
from latplan.imaging.io import load_dicom_series

__all__ = ["RESEARCH_NOTE", "ImageSeries", "base_dataset", "image_series", "save"]

RESEARCH_NOTE = "research, not for clinical use"
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"


@dataclass
class ImageSeries:
    """The referenced image series: its slices (dataset ``i`` lies on case-grid slice ``k_of[i]``)."""

    datasets: list[Dataset]
    k_of: list[int]
    study_uid: str
    series_uid: str
    for_uid: str
    modality: str
    written: bool
    files: list[Path] = field(default_factory=list)
    repaired: bool = False  # the input series with blank UIDs filled in (see _repaired_copy)

    def sop_at(self, k: int) -> tuple[str, str] | None:
        """(SOP class, SOP instance) of the slice at case-grid index ``k``."""
        for ds, kk in zip(self.datasets, self.k_of, strict=True):
            if kk == k:
                return str(ds.SOPClassUID), str(ds.SOPInstanceUID)
        return None

    def sop_by_k(self) -> dict[int, tuple[str, str]]:
        """``{case-grid slice index k: (SOP class, SOP instance)}`` (the first slice where two share a k, as sop_at)."""
        out: dict[int, tuple[str, str]] = {}
        for ds, kk in zip(self.datasets, self.k_of, strict=True):
            out.setdefault(int(kk), (str(ds.SOPClassUID), str(ds.SOPInstanceUID)))
        return out


def _input_dicom_folder(case: Case) -> Path | None:
    src = case.source_dir
    if src is None:
        return None
    image = "dicom"
    spec_path = src / "case.yaml"
    if spec_path.is_file():
        spec = yaml.safe_load(spec_path.read_text(encoding="utf-8")) or {}
        if isinstance(spec, dict) and isinstance(spec.get("image"), str):
            image = spec["image"]
    folder = src / image
    return folder if folder.is_dir() else None


def _input_series(case: Case, folder_out: Path) -> ImageSeries | None:
    folder = _input_dicom_folder(case)
    if folder is None:
        return None
    series = load_dicom_series(folder)
    if not series.volume.same_geometry(case.image, tol_mm=1e-2):
        return None  # resampled or cropped on reading: the slices are not the case grid
    k_of = []
    for ds in series.datasets:
        ipp = np.asarray([float(x) for x in ds.ImagePositionPatient])
        k_of.append(round(float(case.image.mm_to_index(ipp[None])[0][2])))
    datasets, files, repaired = list(series.datasets), list(series.files), False
    first = datasets[0]
    if not all(str(getattr(first, kw, "") or "") for kw in ("StudyInstanceUID", "SeriesInstanceUID",
                                                             "FrameOfReferenceUID")) or \
            not all(str(getattr(d, "SOPInstanceUID", "") or "") and str(getattr(d, "SOPClassUID", "") or "")
                    for d in datasets):
        datasets, files = _repaired_copy(series.files, folder_out)
        repaired = True
        first = datasets[0]
    return ImageSeries(datasets, k_of, str(first.StudyInstanceUID), str(first.SeriesInstanceUID),
                       str(first.FrameOfReferenceUID), str(series.modality or "CT"), False, files, repaired)


def _repaired_copy(paths: list[Path], folder: Path) -> tuple[list[Dataset], list[Path]]:
    """De-identified series often blank the UIDs in the data set (the file meta keeps the SOP UIDs): an
    object cannot refer to a blank series. Copy the slices with the blanks filled — SOP class and
    instance from the file meta, one new study and series UID, a new frame of reference only if none —
    pixel data and every other attribute unchanged."""
    import pydicom

    folder.mkdir(parents=True, exist_ok=True)
    study, series_uid, frame = generate_uid(), generate_uid(), generate_uid()
    datasets: list[Dataset] = []
    files: list[Path] = []
    for n, path in enumerate(paths, start=1):
        ds = pydicom.dcmread(str(path))
        meta = ds.file_meta
        ds.SOPClassUID = str(getattr(ds, "SOPClassUID", "") or meta.MediaStorageSOPClassUID)
        ds.SOPInstanceUID = str(getattr(ds, "SOPInstanceUID", "") or meta.MediaStorageSOPInstanceUID)
        ds.StudyInstanceUID = str(getattr(ds, "StudyInstanceUID", "") or study)
        ds.SeriesInstanceUID = str(getattr(ds, "SeriesInstanceUID", "") or series_uid)
        ds.FrameOfReferenceUID = str(getattr(ds, "FrameOfReferenceUID", "") or frame)
        out = folder / f"{ds.Modality or 'IMG'}-{n:04d}.dcm"
        ds.save_as(str(out), enforce_file_format=True)
        datasets.append(ds)
        files.append(out)
    # the sort order of load_dicom_series is kept: the copies are written in the input's order
    return datasets, files


def _file_meta(sop_class: str, sop_instance: str) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(sop_class)
    meta.MediaStorageSOPInstanceUID = UID(sop_instance)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    return meta


def base_dataset(ref: ImageSeries, case: Case, sop_class: str, modality: str, description: str,
                 series_number: int, like: Dataset | None = None) -> Dataset:
    """Patient, study, series, equipment and SOP common attributes of a new object in ``ref``'s study."""
    now = dt.datetime.now(dt.UTC)
    ds = Dataset()
    ds.file_meta = _file_meta(sop_class, generate_uid())
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    src = like if like is not None else (ref.datasets[0] if ref.datasets and not ref.written else None)
    ds.PatientName = str(getattr(src, "PatientName", "") or case.patient.id)
    ds.PatientID = str(getattr(src, "PatientID", "") or case.patient.id)
    ds.PatientBirthDate = str(getattr(src, "PatientBirthDate", "") or "")
    ds.PatientSex = str(getattr(src, "PatientSex", "") or "")
    ds.StudyInstanceUID = ref.study_uid
    ds.StudyDate = str(getattr(src, "StudyDate", "") or now.strftime("%Y%m%d"))
    ds.StudyTime = str(getattr(src, "StudyTime", "") or now.strftime("%H%M%S"))
    ds.ReferringPhysicianName = str(getattr(src, "ReferringPhysicianName", "") or "")
    ds.StudyID = str(getattr(src, "StudyID", "") or "")
    ds.AccessionNumber = str(getattr(src, "AccessionNumber", "") or "")
    ds.Modality = modality
    ds.SeriesInstanceUID = generate_uid()
    ds.SeriesNumber = series_number
    ds.SeriesDescription = f"latplan {description} - {RESEARCH_NOTE}"[:64]
    ds.OperatorsName = ""
    ds.Manufacturer = "latplan"
    ds.ManufacturerModelName = "latplan"
    ds.SoftwareVersions = __version__
    ds.InstanceCreationDate = now.strftime("%Y%m%d")
    ds.InstanceCreationTime = now.strftime("%H%M%S")
    ds.InstanceNumber = 1
    return ds


def _written_series(case: Case, folder: Path) -> ImageSeries:
    """A CT or MR series of the case volume, one file per slice, new study and frame of reference."""
    modality = "MR" if str(case.image_modality).upper().startswith("MR") else "CT"
    sop_class = MR_IMAGE_STORAGE if modality == "MR" else CT_IMAGE_STORAGE
    ref = ImageSeries([], [], generate_uid(), "", generate_uid(), modality, True)
    aff = np.asarray(case.image.affine, float)
    sp = np.linalg.norm(aff[:3, :3], axis=0)
    row_dir, col_dir = aff[:3, 0] / sp[0], aff[:3, 1] / sp[1]
    arr = np.asarray(case.image.array, dtype=np.float64)
    pixels = np.clip(np.rint(arr), -32768, 32767).astype(np.int16)
    folder.mkdir(parents=True, exist_ok=True)
    series_uid = generate_uid()
    for k in range(arr.shape[0]):
        ds = base_dataset(ref, case, sop_class, modality, f"{modality} from the case volume", 1)
        ds.SeriesInstanceUID = series_uid
        ds.ImageType = ["DERIVED", "SECONDARY", "AXIAL"]
        ds.FrameOfReferenceUID = ref.for_uid
        ds.PositionReferenceIndicator = ""
        ds.InstanceNumber = k + 1
        ds.PatientOrientation = ""
        ds.Laterality = ""
        ds.PatientPosition = ""  # not known from a NIfTI volume (Type 2C: present, empty)
        ds.ImagePositionPatient = [float(f"{x:.4f}") for x in aff[:3, :3] @ np.array([0.0, 0.0, k]) + aff[:3, 3]]
        ds.ImageOrientationPatient = [float(f"{x:.6f}") for x in (*row_dir, *col_dir)]
        ds.PixelSpacing = [float(f"{sp[1]:.6f}"), float(f"{sp[0]:.6f}")]
        ds.SliceThickness = float(f"{sp[2]:.6f}")
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows, ds.Columns = int(arr.shape[1]), int(arr.shape[2])
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        if modality == "CT":
            ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = 0, 1, "HU"
            ds.KVP = ""
            ds.AcquisitionNumber = ""
        else:
            for kw in ("ScanningSequence", "SequenceVariant", "ScanOptions", "MRAcquisitionType", "EchoTime",
                       "EchoTrainLength", "RepetitionTime"):
                setattr(ds, kw, "RM" if kw == "ScanningSequence" else ("NONE" if kw == "SequenceVariant" else ""))
            ds.AcquisitionNumber = ""
        ds.PixelData = np.ascontiguousarray(pixels[k]).tobytes()
        path = folder / f"{modality}-{k + 1:04d}.dcm"
        save(ds, path)
        ref.datasets.append(ds)
        ref.k_of.append(k)
        ref.files.append(path)
    ref.series_uid = series_uid
    return ref


def image_series(case: Case, dicom_dir: Path) -> ImageSeries:
    """The series the exported objects refer to: the input DICOM series if it is the case grid, else a new one."""
    return _input_series(case, dicom_dir / "image") or _written_series(case, dicom_dir / "image")


def save(ds: Dataset, path: Path) -> Path:
    ds.save_as(str(path), enforce_file_format=True)
    return path
