"""Imaging I/O timings (not a test): load each real case, rasterise RTSTRUCT, insert a lesion, save a case.

Run: .venv/bin/python benchmarks/bench_imaging.py   (reads ../shared/data/external in place)
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from latplan.imaging.case_folder import load_case_folder, load_case_from_images, save_case_folder
from latplan.imaging.dicom_series import read_dicom_series
from latplan.imaging.insert import insert_lesion
from latplan.imaging.rtstruct import rtstruct_masks
from latplan.imaging.seg import read_seg

ROOT = Path(__file__).resolve().parents[1]
EXT = Path(os.environ.get("LATPLAN_SHARED_DATA", ROOT.parent / "shared" / "data")) / "external"
PATIENT = {"id": "BENCH", "primary": "colorectal"}


def timed(fn, repeat: int = 3) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> None:
    import logging

    logging.disable(logging.WARNING)
    rows: list[tuple[str, str, float]] = []
    t, c3 = timed(lambda: load_case_folder(EXT / "totalseg-ct-3mm", patient=PATIENT))
    rows.append(("load case folder (NIfTI)", f"totalseg-ct-3mm {c3.image.shape}", t))
    t, cd = timed(lambda: load_case_folder(EXT / "totalseg-ct-dicom", patient=PATIENT), repeat=2)
    rows.append(("load case folder (DICOM J2K + flipped labels)", f"totalseg-ct-dicom {cd.image.shape}", t))
    t, _ = timed(lambda: read_dicom_series(EXT / "totalseg-ct-dicom" / "dicom"), repeat=2)
    rows.append(("read_dicom_series", "20 × 512² slices", t))
    ct = read_dicom_series(EXT / "dcmqi-liver-seg" / "ct")
    t, _ = timed(lambda: read_seg(EXT / "dcmqi-liver-seg" / "liver-seg.dcm", ct))
    rows.append(("read_seg", "dcmqi 3 frames", t))
    ct1 = read_dicom_series(EXT / "dicompyler-rt")
    t, res = timed(lambda: rtstruct_masks(EXT / "dicompyler-rt" / "rtss.dcm", ct1), repeat=2)
    rows.append(("rtstruct_masks", f"dicompyler 11 ROIs on {res[0].shape}", t))
    b = EXT / "pyradiomics-brain1"
    t, _ = timed(lambda: load_case_from_images(b / "image.nrrd", b / "label.nrrd", b / "labels.yaml", PATIENT))
    rows.append(("load_case_from_images (NRRD)", "pyradiomics-brain1", t))
    liver = c3.image.index_to_mm(np.argwhere(c3.mask_array("liver")).mean(axis=0))
    t, _ = timed(lambda: insert_lesion(c3, liver, 30.0, shape="blob", seed=1))
    rows.append(("insert_lesion 30 mm blob", "totalseg-ct-3mm", t))
    liver_d = cd.image.index_to_mm(np.argwhere(cd.mask_array("liver")).mean(axis=0))
    t, _ = timed(lambda: insert_lesion(cd, liver_d, 30.0))
    rows.append(("insert_lesion 30 mm sphere", "totalseg-ct-dicom 512²", t))
    with tempfile.TemporaryDirectory() as tmp:
        t, _ = timed(lambda: save_case_folder(cd, Path(tmp) / "c", overwrite=True), repeat=2)
    rows.append(("save_case_folder (gzip NIfTI)", "totalseg-ct-dicom 512²×20", t))
    table = Table("operation", "input", "time (s)", title=f"latplan imaging I/O ({os.cpu_count()} CPUs)")
    for op, inp, sec in rows:
        table.add_row(op, inp, f"{sec:.3f}")
    Console().print(table)


if __name__ == "__main__":
    main()
