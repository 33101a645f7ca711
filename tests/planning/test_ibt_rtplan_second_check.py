"""Independent second check from the exported DICOM objects (issue [K] item 9): the RTPLAN written by
``latplan.export`` is read back with pydicom (dwell positions = control-point pairs, dwell times = their
cumulative-time-weight steps, S_K = ReferenceAirKermaRate), the dose is recomputed with the plain TG-43U1
implementation of ``independent_tg43.py`` (Rivard 2004) at the RTDOSE voxel centres, and must match the RTDOSE
within 1 % wherever the point is farther than 5 mm from every source and above 2 Gy (16-bit RTDOSE steps
there are < 0.5 %)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from independent_tg43 import PlainTG43
from pydicom.uid import generate_uid
from rad_case_helpers import make_case

from latplan.export.dicom_image import image_series
from latplan.export.dicom_rt import RTPLAN_BRACHY_STORAGE, write_rtdose, write_rtplan_brachy
from latplan.planning.ibt import plan_ibt


def _read_rtplan(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    ds = pydicom.dcmread(path)
    sk_u = float(ds.SourceSequence[0].ReferenceAirKermaRate)
    pos, axes, times = [], [], []
    for ch in ds.ApplicationSetupSequence[0].ChannelSequence:
        cps = list(ch.BrachyControlPointSequence)
        p = np.array([cp.ControlPoint3DPosition for cp in cps[::2]], float)
        t = np.array([float(b.CumulativeTimeWeight) - float(a.CumulativeTimeWeight)
                      for a, b in zip(cps[::2], cps[1::2], strict=True)])
        assert len(p) >= 2  # the catheter axis is the line through its dwell positions (entry → tip order)
        u = (p[-1] - p[0]) / np.linalg.norm(p[-1] - p[0])
        pos.append(p)
        axes.append(np.repeat(u[None], len(p), 0))
        times.append(t)
    return np.concatenate(pos), np.concatenate(axes), np.concatenate(times), sk_u


def _read_rtdose(path: Path) -> tuple[np.ndarray, np.ndarray]:
    ds = pydicom.dcmread(path)
    arr = ds.pixel_array.astype(float) * float(ds.DoseGridScaling)
    ipp = np.asarray(ds.ImagePositionPatient, float)
    iop = np.asarray(ds.ImageOrientationPatient, float)
    row_dir, col_dir = iop[:3], iop[3:]
    normal = np.cross(row_dir, col_dir)
    dr, dc = (float(x) for x in ds.PixelSpacing)
    k, r, c = np.indices(arr.shape).reshape(3, -1)
    off = np.asarray(ds.GridFrameOffsetVector, float)[k]
    pts = ipp[None] + (c * dc)[:, None] * row_dir + (r * dr)[:, None] * col_dir + off[:, None] * normal
    return pts, arr.reshape(-1)


def test_rtdose_matches_independent_dose_from_rtplan(tmp_path: Path) -> None:
    case = make_case(stomach_gap_mm=15.0)
    plan = plan_ibt(case, "lesion_1", target_margin_mm=10.0)
    ref = image_series(case, tmp_path / "dicom")
    rtplan = write_rtplan_brachy(case, ref, plan, tmp_path / "rtplan.dcm",
                                 structure_set_sop=("1.2.840.10008.5.1.4.1.1.481.3", generate_uid()),
                                 ctv_roi_number=None)
    plan_uid = str(pydicom.dcmread(rtplan).SOPInstanceUID)
    assert plan.dose is not None
    rtdose = write_rtdose(case, ref, plan.dose, tmp_path / "rtdose.dcm", plan_sop=(RTPLAN_BRACHY_STORAGE, plan_uid),
                          description="IBT dose")
    pos, axes, times, sk_u = _read_rtplan(rtplan)
    assert sk_u == pytest.approx(plan.parameters["sk_u"], rel=1e-6)
    assert times.sum() == pytest.approx(plan.metrics["total_dwell_time_s"], abs=0.05)
    pts, dose = _read_rtdose(rtdose)
    keep = (dose > 2.0) & (np.min(np.linalg.norm(pts[:, None] - pos[None], axis=2), axis=1) > 5.0)
    assert keep.sum() > 1000
    independent = PlainTG43().dose_gy(pts[keep], pos, axes, times, sk_u)
    assert np.max(np.abs(dose[keep] - independent) / independent) <= 0.01
