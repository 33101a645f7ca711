"""LQ model against textbook values (Fowler, Br J Radiol 1989;62:679; hand-computed BED/EQD2 examples)."""

from __future__ import annotations

import math

import pytest

from latplan.errors import InvalidInputError
from latplan.physics import lq


def test_bed_textbook_values() -> None:
    """Reference: 3 × 15 Gy → BED10 112.5 Gy; 1 × 20 Gy → BED10 60 Gy; 5 × 10 Gy → BED10 100 Gy (exact)."""
    assert lq.bed_gy(15, 3) == pytest.approx(112.5)
    assert lq.bed_gy(20, 1) == pytest.approx(60.0)
    assert lq.bed_gy(10, 5) == pytest.approx(100.0)
    assert lq.bed_gy(15, 3, lq.ALPHA_BETA_LIVER_METS_GY) == pytest.approx(78.75)
    assert lq.bed_gy(15, 3, lq.ALPHA_BETA_COLORECTAL_KLEMENT_GY) == pytest.approx(45 * (1 + 15 / 43))


def test_eqd2_conversions() -> None:
    """Reference: EQD2 = BED/(1 + 2/(α/β)): 3 × 15 Gy (α/β 10) → 93.75 Gy; 2 Gy fractions → EQD2 = total dose;
    1 × 20 Gy with α/β 3 → 20·(1 + 20/3)/(1 + 2/3) = 92 Gy."""
    assert lq.eqd2_gy(15, 3) == pytest.approx(93.75)
    assert lq.eqd2_gy(2, 30, 3.0) == pytest.approx(60.0)
    assert lq.eqd2_gy(20, 1, 3.0) == pytest.approx(92.0)


def test_lea_catcheside_g() -> None:
    """Reference: G(x) = 2(x − 1 + e^−x)/x², x = μT: x = 1 → 2/e = 0.7358; G → 1 for T → 0; G < 1 and decreasing."""
    half = 1800.0
    t_for_x1 = half / math.log(2)
    assert lq.lea_catcheside_g(t_for_x1, half) == pytest.approx(2 / math.e, rel=1e-12)
    assert lq.lea_catcheside_g(0.0, half) == 1.0
    assert lq.lea_catcheside_g(600, half) > lq.lea_catcheside_g(6000, half)
    # a protracted 20 Gy fraction has a smaller BED than an acute one
    assert lq.bed_gy(20, 1, 10, g_factor=lq.lea_catcheside_g(3600)) < lq.bed_gy(20, 1)


def test_inverse_and_errors() -> None:
    """dose_per_fraction_for_bed inverts bed_gy (1e-12)."""
    d = lq.dose_per_fraction_for_bed(112.5, 3)
    assert d == pytest.approx(15.0, rel=1e-12)
    assert lq.fractions_for_bed(100.0, 10.0) == pytest.approx(5.0)
    with pytest.raises(InvalidInputError, match="α/β"):
        lq.bed_gy(10, 1, 0.0)
    with pytest.raises(InvalidInputError, match="fractions"):
        lq.bed_gy(10, 0)
