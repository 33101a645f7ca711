"""RTSTRUCT (pydicom): rasterise closed planar contours (even-odd rule) into masks / a label map."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from latplan.errors import DicomError, EmptyStructureError
from latplan.imaging.dicom_series import dcmread_checked
from latplan.imaging.errors import NotDicomSeriesError
from latplan.imaging.integrity import require_file
from latplan.imaging.volume import Volume

__all__ = ["RTSTRUCT_SOP_CLASS", "read_rtstruct", "rtstruct_masks"]

log = logging.getLogger(__name__)

RTSTRUCT_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.481.3"


def _contour_data(item: Any) -> np.ndarray:
    """ContourData as floats; parses the raw DS bytes directly (pydicom's DS conversion is slow)."""
    raw = item.get_item(0x30060050)  # type: ignore[attr-defined]
    value = getattr(raw, "value", None)
    if isinstance(value, bytes | bytearray):
        try:
            return np.asarray(bytes(value).strip(b" \x00").split(b"\\"), dtype=float)
        except ValueError:
            pass
    return np.asarray([float(x) for x in item.ContourData], dtype=float)  # type: ignore[attr-defined]


def _fill_even_odd(polygons: Sequence[np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    """Rasterise polygons (each (N, 2) as fractional (row, col)) with the even-odd rule.

    A pixel is inside when its centre lies inside an odd number of polygons (so inner
    contours are holes). Scanline with half-open crossing rule, vectorised over all edges.
    """
    nj, ni = shape
    rows_all: list[np.ndarray] = []
    xs_all: list[np.ndarray] = []
    for poly in polygons:
        y0, x0 = poly[:, 0], poly[:, 1]
        y1, x1 = np.roll(y0, -1), np.roll(x0, -1)
        lo, hi = np.minimum(y0, y1), np.maximum(y0, y1)
        r_lo = np.maximum(np.ceil(lo), 0).astype(int)  # rows j with lo <= j < hi
        r_hi = np.minimum(np.ceil(hi), nj).astype(int)
        n = np.maximum(r_hi - r_lo, 0)
        if not n.any():
            continue
        e = np.repeat(np.arange(y0.size), n)
        start = np.repeat(r_lo, n)
        offs = np.arange(e.size) - np.repeat(np.cumsum(n) - n, n)
        rows = start + offs
        t = (rows - y0[e]) / (y1[e] - y0[e])
        rows_all.append(rows)
        xs_all.append(x0[e] + t * (x1[e] - x0[e]))
    out = np.zeros(shape, dtype=bool)
    if not rows_all:
        return out
    rows = np.concatenate(rows_all)
    xs = np.concatenate(xs_all)
    order = np.lexsort((xs, rows))
    rows, xs = rows[order], xs[order]
    # pair consecutive crossings within each row (counts are even for closed polygons)
    diff = np.zeros((nj, ni + 1), dtype=np.int32)
    start_of_row = np.r_[True, rows[1:] != rows[:-1]]
    rank = np.arange(rows.size) - np.maximum.accumulate(np.where(start_of_row, np.arange(rows.size), 0))
    opens = np.nonzero(rank % 2 == 0)[0]
    closes = opens + 1
    ok = closes < rows.size
    ok[ok] &= rows[closes[ok]] == rows[opens[ok]]  # an odd crossing count leaves the last one unpaired
    opens, closes = opens[ok], closes[ok]
    ia = np.clip(np.ceil(xs[opens]).astype(int), 0, ni)
    ib = np.clip(np.ceil(xs[closes]).astype(int), 0, ni)
    np.add.at(diff, (rows[opens], ia), 1)
    np.add.at(diff, (rows[closes], ib), -1)
    out[:] = np.cumsum(diff, axis=1)[:, :ni] > 0
    return out


def _rt_contours(ds: Any) -> tuple[dict[int, str], dict[int, list[np.ndarray]]]:
    names: dict[int, str] = {}
    for roi in getattr(ds, "StructureSetROISequence", []) or []:
        names[int(roi.ROINumber)] = str(getattr(roi, "ROIName", "") or f"roi_{roi.ROINumber}")
    contours: dict[int, list[np.ndarray]] = {n: [] for n in names}
    for rc in getattr(ds, "ROIContourSequence", []) or []:
        num = int(rc.ReferencedROINumber)
        for ct in getattr(rc, "ContourSequence", []) or []:
            if str(getattr(ct, "ContourGeometricType", "CLOSED_PLANAR")).upper() not in ("CLOSED_PLANAR", ""):
                continue
            data = _contour_data(ct)
            if data.size < 9 or data.size % 3:
                continue
            contours.setdefault(num, []).append(data.reshape(-1, 3))
    return names, contours


def _grid_from_contours(contours: Mapping[int, list[np.ndarray]], reference: Volume | None) -> Volume:
    """Grid built from the contours' own extent (in-plane spacing/orientation from ``reference``)."""
    if reference is not None:
        r, c = reference.direction[:, 0], reference.direction[:, 1]
        di, dj = float(reference.spacing_mm[0]), float(reference.spacing_mm[1])
    else:
        r, c = np.array([1.0, 0, 0]), np.array([0, 1.0, 0])
        di = dj = 1.0
    normal = np.cross(r, c)
    pts = np.concatenate([p for lst in contours.values() for p in lst], axis=0)
    planes = np.unique(np.round(np.concatenate([[float(np.mean(p @ normal))] for lst in contours.values() for p in lst]), 2))
    dz = float(np.median(np.diff(planes))) if planes.size > 1 else (float(reference.spacing_mm[2]) if reference else 1.0)
    if dz <= 0:
        dz = 1.0
    u, v = pts @ r, pts @ c
    pad = 2
    u0, v0 = u.min() - pad * di, v.min() - pad * dj
    ni = int(np.ceil((u.max() - u.min()) / di)) + 2 * pad + 1
    nj = int(np.ceil((v.max() - v.min()) / dj)) + 2 * pad + 1
    nk = int(np.rint((planes[-1] - planes[0]) / dz)) + 1
    aff = np.eye(4)
    aff[:3, 0], aff[:3, 1], aff[:3, 2] = r * di, c * dj, normal * dz
    aff[:3, 3] = r * u0 + c * v0 + normal * planes[0]
    return Volume(np.zeros((nk, nj, ni), dtype=np.int32), aff)


def rtstruct_masks(
    path: str | os.PathLike[str], reference: Volume | None = None, notes: list[str] | None = None
) -> tuple[Volume, dict[str, np.ndarray], list[str]]:
    """Rasterise every RTSTRUCT ROI to its own boolean mask (overlaps kept).

    Contours are rasterised slice by slice in mm: a voxel belongs to the ROI when its centre
    lies inside an odd number of the ROI's contours on that slice (even-odd rule, so inner
    contours are holes). When ``reference`` is None or does not cover every contour plane
    (e.g. an incomplete CT series), a grid is built from the contours' own extent with the
    reference's in-plane spacing and orientation, and the slice spacing of the contour planes.

    Returns the grid (zeros), ``{roi name: mask (k, j, i)}`` and the names of empty ROIs.
    """
    p = Path(path)
    require_file(p, "RTSTRUCT file")
    ds = dcmread_checked(p)
    if str(getattr(ds, "SOPClassUID", "")) != RTSTRUCT_SOP_CLASS and str(getattr(ds, "Modality", "")) != "RTSTRUCT":
        raise NotDicomSeriesError(f"{p.name} is not an RTSTRUCT (Modality {getattr(ds, 'Modality', '?')}).")
    names, contours = _rt_contours(ds)
    with_data = {n: lst for n, lst in contours.items() if lst}
    if not with_data:
        raise EmptyStructureError(f"RTSTRUCT {p.name} holds no closed planar contours; nothing to rasterise.")
    grid = reference
    if grid is not None:
        all_pts = np.concatenate([q for lst in with_data.values() for q in lst])
        k = grid.mm_to_index(all_pts)[:, 0]
        if k.min() < -0.5 or k.max() > grid.shape[0] - 0.5:
            msg = (
                f"RTSTRUCT {p.name}: contours span slice indices {k.min():.1f}..{k.max():.1f} but the referenced series "
                f"has {grid.shape[0]} slice(s); rasterised onto a grid built from the contours' own extent "
                "(in-plane spacing from the image), not on the image grid."
            )
            log.warning(msg)
            if notes is not None:
                notes.append(msg)
            grid = _grid_from_contours(with_data, reference)
    else:
        grid = _grid_from_contours(with_data, None)
    nk, nj, ni = grid.shape
    masks: dict[str, np.ndarray] = {}
    empty: list[str] = []
    for num, name in names.items():
        m = np.zeros(grid.shape, dtype=bool)
        per_slice: dict[int, list[np.ndarray]] = {}
        for pts in contours.get(num, []):
            idx = grid.mm_to_index(pts)
            kk = idx[:, 0]
            kr = int(np.rint(float(np.mean(kk))))
            if np.ptp(kk) > 0.5:
                raise DicomError(
                    f"RTSTRUCT {p.name}: a contour of ROI {name!r} is not planar in the image grid "
                    f"(spans slice indices {kk.min():.2f}..{kk.max():.2f}); oblique contours are not supported."
                )
            if 0 <= kr < nk:
                per_slice.setdefault(kr, []).append(idx[:, 1:])
        for kr, polys in per_slice.items():
            m[kr] = _fill_even_odd(polys, (nj, ni))
        if name in masks:  # duplicate ROI names: merge
            masks[name] |= m
        else:
            masks[name] = m
    for name, m in masks.items():
        if not m.any():
            empty.append(name)
    return grid, masks, empty


def read_rtstruct(
    path: str | os.PathLike[str], reference: Volume | None = None, notes: list[str] | None = None
) -> tuple[Volume, dict[int, str], list[str]]:
    """Read an RTSTRUCT into a label map; returns (labels, {value: ROI name}, empty ROI names).

    Label value = ROINumber. Overlapping ROIs share voxels in RTSTRUCT but not in a label map:
    the larger ROIs are painted first, so a small structure inside a large one (tumour inside
    BODY) keeps its voxels. Use :func:`rtstruct_masks` for the overlapping masks. ROIs without
    any voxel are listed as empty (not given a label value in the table).
    """
    grid, masks, empty = rtstruct_masks(path, reference, notes)
    ds = dcmread_checked(Path(path), stop_before_pixels=True)
    names, _ = _rt_contours(ds)
    number_of: dict[str, int] = {}
    for num, name in names.items():
        number_of.setdefault(name, num)
    out = np.zeros(grid.shape, dtype=np.int32)
    order = sorted((n for n in masks if n not in empty), key=lambda n: -int(masks[n].sum()))
    for name in order:
        out[masks[name]] = number_of[name]
    table = {number_of[n]: n for n in order}
    return grid.with_array(out), dict(sorted(table.items())), empty
