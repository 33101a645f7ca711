"""Clinical bins of the ablative margin (``margin_bins.yaml``) and the surface histogram over them.

Why here: :mod:`latplan.physics.margins` measures the signed margin of every tumour surface voxel
(mm, geometry only); which margins count as "not covered", "below target" or "reaches the 5 mm
target" is clinical knowledge (Wang et al. 2013, PMC4122121: 2-year local tumour progression-free
survival 26/46/74/80 % for minimal margins 0/1–5/6–10/11–15 mm), so the bins live in a data file
with their citation. Planners and follow-up call :func:`margin_histogram_percent`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from itertools import pairwise

import numpy as np
import numpy.typing as npt
import yaml

from latplan.errors import EmptyStructureError, KnowledgeError
from latplan.knowledge.rules import _EVIDENCE, Citation, load_citations

__all__ = ["MarginBin", "MarginBins", "margin_bins", "margin_histogram_percent"]

_FILE = "margin_bins.yaml"


@dataclass(frozen=True)
class MarginBin:
    """One bin [low_mm, high_mm) of signed surface margin (±inf = unbounded) and what it means."""

    label: str
    low_mm: float
    high_mm: float
    meaning: str


@dataclass(frozen=True)
class MarginBins:
    bins: tuple[MarginBin, ...]
    evidence_level: str
    citation: Citation


def _bound(value: object, unbounded: float, where: str) -> float:
    if value is None:
        return unbounded
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(float(value)):
        raise KnowledgeError(f"{where}: must be a finite number of mm or null (unbounded); got {value!r}.")
    return float(value)


@lru_cache(maxsize=1)
def margin_bins() -> MarginBins:
    """The shipped margin bins, validated: contiguous, increasing, covering (−inf, +inf)."""
    data = yaml.safe_load((resources.files("latplan.knowledge") / _FILE).read_text(encoding="utf-8")) or {}
    citations = load_citations()
    key = str(data.get("citation", ""))
    if key not in citations:
        raise KnowledgeError(f"knowledge/{_FILE}: citation {key!r} is not in knowledge/citations.yaml.")
    ev = str(data.get("evidence_level", ""))
    if not _EVIDENCE.match(ev):
        raise KnowledgeError(f"knowledge/{_FILE}: evidence_level {ev!r} must be 'CEBM 1a'…'CEBM 5' or 'GRADE …'.")
    bins = []
    for n, raw in enumerate(data.get("bins") or []):
        where = f"knowledge/{_FILE}: bins[{n}]"
        lo = _bound(raw.get("low_mm"), -math.inf, f"{where}.low_mm")
        hi = _bound(raw.get("high_mm"), math.inf, f"{where}.high_mm")
        if not lo < hi:
            raise KnowledgeError(f"{where}: low_mm must be below high_mm; got {lo} and {hi}.")
        bins.append(MarginBin(str(raw["label"]), lo, hi, str(raw.get("meaning", ""))))
    if not bins or bins[0].low_mm != -math.inf or bins[-1].high_mm != math.inf or any(
            a.high_mm != b.low_mm for a, b in pairwise(bins)):
        raise KnowledgeError(f"knowledge/{_FILE}: the bins must be contiguous and cover every margin "
                             "(first low_mm and last high_mm null).")
    return MarginBins(tuple(bins), ev, citations[key])


def margin_histogram_percent(surface_margins_mm: npt.NDArray[np.float64]) -> dict[str, float]:
    """Percent of the tumour surface voxels in each margin bin (label → %), in the file's order.

    ``surface_margins_mm``: signed margin of every surface voxel
    (:attr:`latplan.physics.margins.MarginResult.surface_margins_mm`)."""
    m = np.asarray(surface_margins_mm, dtype=float)
    n_surf = m.size
    if n_surf == 0:
        raise EmptyStructureError("no tumour surface voxels: a margin histogram needs a non-empty tumour.")
    return {b.label: 100.0 * float(np.count_nonzero((m >= b.low_mm) & (m < b.high_mm))) / n_surf
            for b in margin_bins().bins}
