"""Demo cases: phantom specs shipped in ``latplan/phantom/demo_specs/*.yaml``."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from latplan.case import Case
from latplan.errors import PhantomSpecError
from latplan.phantom.builder import build_phantom
from latplan.phantom.spec import PhantomSpec, parse_spec

__all__ = ["build_demo_case", "demo_cases", "demo_spec", "demo_spec_path"]

#: default demo grid: 2 mm keeps planning fast; pass voxel_mm to refine
DEMO_VOXEL_MM = (2.0, 2.0, 2.0)


def _spec_dir() -> Path:
    return Path(str(resources.files("latplan.phantom") / "demo_specs"))


def demo_cases() -> list[str]:
    """Names of the shipped demo cases (sorted: the seed's figure cases first)."""
    return sorted(p.stem for p in _spec_dir().glob("*.yaml"))


def demo_spec_path(name: str) -> Path:
    """Path of a demo spec YAML."""
    path = _spec_dir() / f"{name}.yaml"
    if not path.is_file():
        raise PhantomSpecError(f"no demo case {name!r}; available: {', '.join(demo_cases())}.")
    return path


def demo_spec(name: str, voxel_mm: float | tuple[float, float, float] | None = None) -> PhantomSpec:
    """The validated spec of a demo case, optionally on another voxel size (mm)."""
    data: dict[str, Any] = yaml.safe_load(demo_spec_path(name).read_text(encoding="utf-8"))
    if voxel_mm is not None:
        data["voxel_mm"] = voxel_mm
    else:
        data.setdefault("voxel_mm", list(DEMO_VOXEL_MM))
    return parse_spec(data)


def build_demo_case(name: str, voxel_mm: float | tuple[float, float, float] | None = None) -> Case:
    """Build a demo case by name (see :func:`demo_cases`); ``voxel_mm`` overrides the spec's grid."""
    return build_phantom(demo_spec(name, voxel_mm))
