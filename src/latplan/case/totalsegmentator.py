"""TotalSegmentator's class names as latplan structures (data: ``case/data/totalsegmentator.yaml``).

The data file holds the class maps of the tasks latplan imports (``total``, ``total_mr``,
``liver_vessels``, ``liver_segments``, ``body``, the lesion tasks), the mapping of each class name to a
latplan structure (canonical name + role) and the precedence used when several task outputs are
merged into one label map. Every class name of those tasks is known: names latplan does not plan
keep their own name with role ``other`` — never an error.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from latplan.case.vocabulary import StructureRole, coerce, role_of
from latplan.errors import UnknownStructureError

__all__ = [
    "TS_DATA_FILE",
    "TsClass",
    "ts_class",
    "ts_precedence",
    "ts_task_classes",
    "ts_tasks",
]

TS_DATA_FILE = Path(__file__).parent / "data" / "totalsegmentator.yaml"


@dataclass(frozen=True)
class TsClass:
    """One TotalSegmentator class: its own name, latplan's structure name and role."""

    source_name: str
    name: str
    role: StructureRole


@lru_cache(maxsize=1)
def _data() -> dict[str, Any]:
    with open(TS_DATA_FILE, encoding="utf-8") as fh:
        data = yaml.safe_load(fh)
    if not isinstance(data, dict) or "tasks" not in data or "to_canonical" not in data:
        raise UnknownStructureError(f"{TS_DATA_FILE} lacks 'tasks' or 'to_canonical'; reinstall latplan.")
    return data


def ts_tasks() -> tuple[str, ...]:
    """Task names with a class map (``total``, ``total_mr``, ``liver_vessels``, ...)."""
    return tuple(_data()["tasks"])


def ts_task_classes(task: str) -> dict[int, str]:
    """``{label value: class name}`` of a task; an unknown task raises naming the known ones."""
    tasks = _data()["tasks"]
    if task not in tasks:
        raise UnknownStructureError(
            f"unknown TotalSegmentator task {task!r}; latplan imports: {', '.join(tasks)}."
        )
    return {int(k): str(v) for k, v in tasks[task].items()}


@lru_cache(maxsize=1)
def _all_classes() -> dict[str, TsClass]:
    data = _data()
    mapping: dict[str, Any] = data["to_canonical"]
    out: dict[str, TsClass] = {}
    names = {str(v) for task in data["tasks"].values() for v in task.values()} | set(mapping)
    for source in sorted(names):
        spec = mapping.get(source)
        if spec is None:
            out[source] = TsClass(source, source, StructureRole.OTHER)
        elif isinstance(spec, dict):
            out[source] = TsClass(source, str(spec["name"]), coerce(StructureRole, str(spec["role"])))
        else:
            out[source] = TsClass(source, str(spec), role_of(str(spec)))
    return out


def ts_class(name: str) -> TsClass | None:
    """The latplan structure of a TotalSegmentator class name, or None for a name no task uses."""
    return _all_classes().get(name)


def ts_precedence(name: str) -> int:
    """Merge rank of a class (higher overwrites lower where two task outputs label one voxel)."""
    groups: list[Any] = _data().get("precedence", [])
    default = next((i for i, g in enumerate(groups) if g == "total"), 0)
    for i, group in enumerate(groups):
        if isinstance(group, list) and name in group:
            return i
    return default
