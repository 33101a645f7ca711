"""Tiny synthetic cohorts for the batch tests: 6 mm phantom grids, planned without simulations."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from latplan.batch.synth import synth_cohort

#: coarsest phantom grid (mm): a case plans in seconds with simulate=False
VOXEL_MM = 6.0


@pytest.fixture(scope="session")
def tiny_cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four synthetic phantom cases (seed 3), built once per session; copy before modifying."""
    root = tmp_path_factory.mktemp("cohort") / "cases"
    synth_cohort(root, n=4, seed=3, voxel_mm=VOXEL_MM)
    return root


def copy_cases(src: Path, dst: Path, names: list[str] | None = None) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    for case in sorted(src.iterdir()):
        if names is None or case.name in names:
            shutil.copytree(case, dst / case.name)
    return dst
