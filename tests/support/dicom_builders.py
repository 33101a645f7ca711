"""Small DICOM objects built by hand with pydicom for the imaging tests (not by latplan's writers, so a
reader's test does not rest on latplan's own export)."""

from __future__ import annotations

import numpy as np
import pydicom
from pydicom.dataset import FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

#: RT Structure Set Storage (DICOM PS3.4 Annex B.5)
RTSTRUCT_SOP_CLASS_UID = "1.2.840.10008.5.1.4.1.1.481.3"


def rtstruct_dataset(rois: dict[str, list[np.ndarray]]) -> pydicom.Dataset:
    """A minimal RTSTRUCT: one ROI per entry of ``rois`` (numbered from 1 in order), each contour a CLOSED_PLANAR
    polygon of (n, 3) patient points in mm; explicit VR little endian file meta, ready for ``save_as``."""
    ds = pydicom.Dataset()
    ds.SOPClassUID = RTSTRUCT_SOP_CLASS_UID
    ds.SOPInstanceUID = generate_uid()
    ds.Modality = "RTSTRUCT"
    ds.StructureSetROISequence = Sequence()
    ds.ROIContourSequence = Sequence()
    for num, (name, contours) in enumerate(rois.items(), start=1):
        roi = pydicom.Dataset()
        roi.ROINumber, roi.ROIName = num, name
        ds.StructureSetROISequence.append(roi)
        rc = pydicom.Dataset()
        rc.ReferencedROINumber = num
        rc.ContourSequence = Sequence()
        for pts in contours:
            c = pydicom.Dataset()
            c.ContourGeometricType = "CLOSED_PLANAR"
            c.NumberOfContourPoints = len(pts)
            c.ContourData = [float(x) for x in np.asarray(pts).reshape(-1)]
            rc.ContourSequence.append(c)
        ds.ROIContourSequence.append(rc)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    return ds
