"""Tests of latplan.knowledge.margins (the clinical margin bins and the surface histogram over them)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from latplan.knowledge.margins import margin_bins, margin_histogram_percent


def test_margin_bins_are_the_5mm_target_bins_with_their_citation() -> None:
    """Reference: Wang et al. 2013 (PMC4122121) and rule MARGIN-5MM — the 5 mm minimal margin target;
    bins: not covered (< 0), below target [0, 5) mm, reaches target (≥ 5 mm), contiguous over ℝ."""
    mb = margin_bins()
    assert [(b.label, b.low_mm, b.high_mm) for b in mb.bins] == [
        ("<0", -math.inf, 0.0), ("0-5", 0.0, 5.0), (">=5", 5.0, math.inf)]
    assert "PMC4122121" in mb.citation.text
    assert mb.evidence_level == "CEBM 2b"
    assert all(b.meaning for b in mb.bins)


def test_margin_histogram_counts_half_open_bins() -> None:
    """Reference: hand count of five margins −1, 0, 2.5, 5, 7 mm into [low, high) bins: 1, 2, 2 of 5."""
    hist = margin_histogram_percent(np.array([-1.0, 0.0, 2.5, 5.0, 7.0]))
    assert list(hist) == ["<0", "0-5", ">=5"]
    assert hist == pytest.approx({"<0": 20.0, "0-5": 40.0, ">=5": 40.0}, abs=1e-12)
