"""DICOM SEG (highdicom): read a SEG onto its reference grid, write a label map as a BINARY SEG."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from latplan._version import __version__
from latplan.errors import DicomError, EmptyStructureError, GeometryMismatchError, InvalidInputError
from latplan.imaging.dicom_series import datasets_from_source, dcmread_checked, slice_orientation
from latplan.imaging.errors import NotDicomSeriesError, TruncatedDicomError
from latplan.imaging.integrity import require_file
from latplan.imaging.volume import Volume

if TYPE_CHECKING:
    from pydicom import Dataset

__all__ = ["LABEL_TRACKING_PREFIX", "SEG_SOP_CLASSES", "read_seg", "write_seg"]

SEG_SOP_CLASSES = ("1.2.840.10008.5.1.4.1.1.66.4", "1.2.840.10008.5.1.4.1.1.66.7")  # SEG, Label Map SEG
LABEL_TRACKING_PREFIX = "latplan-label-"


def _seg_frame_attr(ds: Dataset, frame: int, seq: str) -> Any:
    pf = getattr(ds, "PerFrameFunctionalGroupsSequence", None)
    if pf is not None and seq in pf[frame]:
        return pf[frame][seq][0]
    sf = getattr(ds, "SharedFunctionalGroupsSequence", None)
    if sf is not None and seq in sf[0]:
        return sf[0][seq][0]
    return None


def read_seg(
    path: str | os.PathLike[str], reference: Volume | None = None
) -> tuple[Volume, dict[int, str]]:
    """Read a DICOM SEG into a label map on the ``reference`` grid (or the SEG's own grid).

    Each frame is placed by its ImagePositionPatient (mm), so frame order does not matter.
    Label value = segment number, unless the segment was written by latplan (TrackingID
    ``latplan-label-<value>``), which restores the original label values. Overlapping
    segments: the higher segment number wins (a label map holds one value per voxel).
    """
    p = Path(path)
    require_file(p, "SEG file")
    ds = dcmread_checked(p)
    if str(getattr(ds, "SOPClassUID", "")) not in SEG_SOP_CLASSES:
        raise NotDicomSeriesError(f"{p.name} is not a DICOM SEG (SOP class {getattr(ds, 'SOPClassUID', '?')}).")
    try:
        frames = np.asarray(ds.pixel_array)
    except Exception as exc:
        raise TruncatedDicomError(f"pixel data of SEG {p.name} cannot be decoded: {type(exc).__name__}: {exc}.") from None
    n_frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    if frames.ndim == 2:
        frames = frames[None]
    if frames.shape[0] != n_frames:
        raise TruncatedDicomError(f"SEG {p.name} declares {n_frames} frames but holds {frames.shape[0]}.")
    seg_type = str(getattr(ds, "SegmentationType", "BINARY")).upper()
    if seg_type == "FRACTIONAL":
        maxv = float(getattr(ds, "MaximumFractionalValue", 255) or 255)
        frames = (frames.astype(float) / maxv) >= 0.5
    # segment number → label value and name
    seg_value: dict[int, int] = {}
    names: dict[int, str] = {}
    for item in ds.SegmentSequence:
        num = int(item.SegmentNumber)
        if num == 0:  # LABELMAP SEGs may describe the background as segment 0
            continue
        value = num
        tid = str(getattr(item, "TrackingID", "") or "")
        if tid.startswith(LABEL_TRACKING_PREFIX):
            try:
                value = int(tid[len(LABEL_TRACKING_PREFIX) :])
            except ValueError:
                value = num
        seg_value[num] = value
        names[value] = str(getattr(item, "SegmentLabel", "") or f"segment_{num}")
    # geometry of frames
    orient = _seg_frame_attr(ds, 0, "PlaneOrientationSequence")
    measures = _seg_frame_attr(ds, 0, "PixelMeasuresSequence")
    if orient is None or measures is None:
        raise DicomError(f"SEG {p.name} lacks PlaneOrientationSequence/PixelMeasuresSequence: cannot place its frames.")
    r, c = slice_orientation(orient, p.name)
    ps = [float(x) for x in measures.PixelSpacing]
    positions = []
    segnums = []
    for f in range(n_frames):
        pp = _seg_frame_attr(ds, f, "PlanePositionSequence")
        si = _seg_frame_attr(ds, f, "SegmentIdentificationSequence")
        if pp is None:
            raise DicomError(f"SEG {p.name} frame {f + 1} has no ImagePositionPatient; cannot place it.")
        positions.append([float(x) for x in pp.ImagePositionPatient])
        segnums.append(int(si.ReferencedSegmentNumber) if si is not None else 1)
    positions_arr = np.asarray(positions)
    if reference is None:
        normal = np.cross(r, c)
        along = positions_arr @ normal
        uniq = np.unique(np.round(along, 3))
        if uniq.size > 1:
            dz = float(np.median(np.diff(uniq)))
        else:
            dz = float(getattr(measures, "SpacingBetweenSlices", None) or getattr(measures, "SliceThickness", None) or 1.0)
        first = positions_arr[int(np.argmin(along))]
        n_k = int(np.rint((uniq[-1] - uniq[0]) / dz)) + 1 if uniq.size > 1 else 1
        aff = np.eye(4)
        aff[:3, 0], aff[:3, 1], aff[:3, 2], aff[:3, 3] = r * ps[1], c * ps[0], normal * dz, first
        reference = Volume(np.zeros((n_k, int(ds.Rows), int(ds.Columns)), np.int32), aff)
    else:
        if np.max(np.abs(reference.direction[:, 0] - r)) > 1e-3 or np.max(np.abs(reference.direction[:, 1] - c)) > 1e-3:
            raise GeometryMismatchError(
                f"SEG {p.name} frames are oriented {np.round(np.r_[r, c], 4).tolist()} but the reference image "
                f"rows/columns run along {np.round(reference.direction[:, :2].T.reshape(-1), 4).tolist()}; "
                "give the series the SEG was drawn on."
            )
        if abs(reference.spacing_mm[0] - ps[1]) > 1e-3 or abs(reference.spacing_mm[1] - ps[0]) > 1e-3:
            raise GeometryMismatchError(
                f"SEG {p.name} pixel spacing {ps} mm differs from the reference's "
                f"{np.round(reference.spacing_mm[1::-1], 4).tolist()} mm (row, column)."
            )
    out = np.zeros(reference.shape, dtype=np.int32)
    lut = np.zeros(max(seg_value, default=0) + 1, dtype=np.int32)
    for num, value in seg_value.items():
        lut[num] = value
    idx = reference.mm_to_index(positions_arr)  # (k, j, i) of each frame's first pixel
    rows, cols = frames.shape[1:]
    order = np.argsort(segnums, kind="stable")  # higher segment numbers painted last
    for f in order:
        k, j0, i0 = idx[f]
        kr, jr, ir = int(np.rint(k)), int(np.rint(j0)), int(np.rint(i0))
        if abs(k - kr) > 0.1 or abs(j0 - jr) > 0.1 or abs(i0 - ir) > 0.1:
            raise GeometryMismatchError(
                f"SEG {p.name} frame {f + 1} at {np.round(positions_arr[f], 2).tolist()} mm does not fall on a voxel "
                f"of the reference grid (index k, j, i = {np.round(idx[f], 2).tolist()}); the SEG was not drawn on "
                "this series."
            )
        if not 0 <= kr < reference.shape[0]:
            raise GeometryMismatchError(
                f"SEG {p.name} frame {f + 1} at {np.round(positions_arr[f], 2).tolist()} mm lies outside the reference "
                f"series (slice index {kr}, series has {reference.shape[0]}); the referenced series is incomplete."
            )
        j1, i1 = max(jr, 0), max(ir, 0)
        j2, i2 = min(jr + rows, reference.shape[1]), min(ir + cols, reference.shape[2])
        if j2 <= j1 or i2 <= i1:
            continue
        window = frames[f][j1 - jr : j2 - jr, i1 - ir : i2 - ir]
        if seg_type == "LABELMAP":  # pixel values are segment numbers
            vals = lut[np.clip(window.astype(np.int64), 0, lut.size - 1)]
            out[kr, j1:j2, i1:i2][vals > 0] = vals[vals > 0]
        else:
            out[kr, j1:j2, i1:i2][window.astype(bool)] = seg_value.get(segnums[f], segnums[f])
    return reference.with_array(out), names


def _segment_codes(name: str) -> tuple[Any, Any]:
    from pydicom.sr.codedict import codes

    if name.startswith("lesion") or name in ("tumour", "tumor"):
        return codes.SCT.MorphologicallyAbnormalStructure, codes.SCT.Neoplasm
    if name == "liver":
        return codes.SCT.Organ, codes.SCT.Liver
    return codes.SCT.AnatomicalStructure, codes.SCT.Organ


def write_seg(
    labels: Volume,
    label_names: Mapping[int, str],
    source_folder_or_datasets: str | os.PathLike[str] | Sequence[Dataset],
    path: str | os.PathLike[str],
) -> Path:
    """Write a label map as a BINARY DICOM SEG (highdicom) referencing its source series.

    ``labels`` must lie on the source series grid (checked). Each label value present becomes a
    segment (numbered 1..N in value order) named by ``label_names`` with TrackingID
    ``latplan-label-<value>``, so :func:`read_seg` restores the original values.
    """
    import highdicom as hd
    from pydicom.uid import generate_uid

    series = datasets_from_source(source_folder_or_datasets)
    series.volume.require_same_geometry(labels, "label map and SEG source series")
    arr = np.asarray(labels.array)
    values = [int(v) for v in np.unique(arr) if v != 0]
    if not values:
        raise EmptyStructureError("the label map is empty (all zero): a DICOM SEG needs at least one labelled voxel.")
    missing = [v for v in values if v not in label_names]
    if missing:
        raise InvalidInputError(f"label values {missing} present in the map have no name in label_names; name them.")
    seg_arr = np.zeros(arr.shape, dtype=np.uint16)
    descriptions = []
    for num, v in enumerate(values, start=1):
        seg_arr[arr == v] = num
        cat, typ = _segment_codes(label_names[v])
        descriptions.append(
            hd.seg.SegmentDescription(
                segment_number=num,
                segment_label=str(label_names[v])[:64],
                segmented_property_category=cat,
                segmented_property_type=typ,
                algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
                tracking_uid=generate_uid(),
                tracking_id=f"{LABEL_TRACKING_PREFIX}{v}",
            )
        )
    import warnings

    import pydicom

    datasets = []
    for src in series.datasets:  # shallow copies: clean header quirks without touching the source
        ds = pydicom.Dataset(src)
        ds.file_meta = getattr(src, "file_meta", pydicom.dataset.FileMetaDataset())
        if "SpecificCharacterSet" in ds and not str(ds.SpecificCharacterSet or "").strip():
            del ds.SpecificCharacterSet
        datasets.append(ds)
    for ds in datasets:  # highdicom needs a series UID; some exports leave it empty
        if not str(getattr(ds, "SeriesInstanceUID", "") or ""):
            raise DicomError(
                "the source series has an empty SeriesInstanceUID; a DICOM SEG must reference it. "
                "Give the slices a SeriesInstanceUID first."
            )
    version = __version__
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # person-name style warnings about the source header
        try:
            seg = _make_seg(hd, datasets, seg_arr, descriptions, version)
        except (KeyError, ValueError, AttributeError, TypeError) as exc:
            raise DicomError(
                f"cannot write a DICOM SEG for the series {series.files[0].parent}: highdicom refused it "
                f"({type(exc).__name__}: {exc}). The source headers lack attributes a SEG must reference "
                "(SOPClassUID, Study/Patient module); re-export the series."
            ) from None
    out = Path(path)
    seg.save_as(str(out))
    return out


def _make_seg(hd: Any, datasets: list[Dataset], seg_arr: np.ndarray, descriptions: list[Any], version: str) -> Any:
    from pydicom.uid import generate_uid

    return hd.seg.Segmentation(  # type: ignore[attr-defined]
        source_images=datasets,
        pixel_array=seg_arr,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=generate_uid(),
        series_number=900,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer="latplan",
        manufacturer_model_name="latplan",
        software_versions=str(version),
        device_serial_number="0",
        omit_empty_frames=True,
    )
