"""Tests of latplan.physics.electroporation (needle-electrode field, σ(E), coverage)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from latplan.errors import InvalidInputError
from latplan.physics import electroporation as ep

CONST = ep.ElectroTissue("const", 0.2, 0.2, 1e9, 1e9)


def test_field_parallel_pair_matches_two_line_charges() -> None:
    """Reference: 2-D field of two parallel line charges ±λ (λ = measured current per unit
    length / σ scaling), E = λ/(2πσ)·|r̂₁/r₁ − r̂₂/r₂|. Needles 10 mm apart, radius 0.5 mm,
    homogeneous σ, 0.5 mm grid on a 200 mm insulated box, one layer (2-D). Tolerance 3 %
    at points ≥ 3 mm from the needle axes within ±12 mm of the pair centre."""
    h, half, d = 0.5, 100.0, 10.0
    n = int(2 * half / h) + 1
    c = (n // 2) * h
    lab = np.zeros((1, n, n), np.int64)
    needles = [ep.Needle((5.0, c + s * d / 2, c), (1.0, 0.0, 0.0), 10.0, 0.5) for s in (1, -1)]
    res = ep.solve_field(lab, [CONST], (1.0, h, h), needles, [(0, 1)], 1000.0, iterations=1)
    lam = res.currents_a[0] / 1e-3  # A per metre of needle (layer thickness 1 mm)
    x = (np.arange(n) * h - c) / 1000.0
    jj, ii = np.meshgrid(x, x, indexing="ij")
    b = d / 2 / 1000.0
    rp2 = (jj - b) ** 2 + ii**2
    rm2 = (jj + b) ** 2 + ii**2
    with np.errstate(divide="ignore", invalid="ignore"):
        exact = lam / (2 * math.pi * 0.2) * np.sqrt(((jj - b) / rp2 - (jj + b) / rm2) ** 2
                                                   + (ii / rp2 - ii / rm2) ** 2) / 100.0
    dist = np.minimum(np.hypot(jj - b, ii), np.hypot(jj + b, ii)) * 1000.0
    sel = (dist >= 3.0) & (np.abs(jj) <= 0.012) & (np.abs(ii) <= 0.012)
    rel = np.abs(res.field_v_per_cm[0][sel] / exact[sel] - 1.0)
    assert rel.max() < 0.03
    # sanity: the mid-point field is of the order of U/d
    mid = res.field_v_per_cm[0][n // 2, n // 2]
    assert 0.4 * 1000.0 < mid < 1000.0


def test_field_coverage_curve_monotonic_and_thresholds_configurable() -> None:
    """Coverage curve of a hexagonal array on a spherical target: non-increasing in the
    threshold, 100 % at 0 V/cm; raising the threshold never enlarges the zone."""
    t = ep.default_electro_tissues()
    n, h = 31, 2.0
    lab = np.ones((n, n, n), np.int64)
    kk, jj, ii = np.meshgrid(*(np.arange(n) * h - 30.0,) * 3, indexing="ij")
    tumour = kk**2 + jj**2 + ii**2 <= 8.0**2
    lab[tumour] = 2
    needles = ep.hexagonal_array((30.0, 30.0, 30.0), (1.0, 0.0, 0.0), 10.0, active_length_mm=20.0)
    res = ep.solve_field(lab, [t["soft_tissue"], t["liver"], t["tumour"]], (h, h, h), needles,
                         voltage_to_distance_v_per_cm=730.0, iterations=2)
    _th, cov = ep.coverage_curve(res.field_v_per_cm, tumour)
    assert cov[0] == pytest.approx(100.0)
    assert np.all(np.diff(cov) <= 1e-12)
    assert res.zone(400.0).sum() >= res.zone(800.0).sum()
    assert len(res.pairs) == 12 and res.info["solves"] == 24


def test_field_conductivity_update_raises_current() -> None:
    """σ(E) rises with the field (σ₀ → σ₁ between the thresholds): iterating the update
    increases the pair current at the same voltage (Go-Smart liver 0.08 → 0.32 S/m)."""
    liver = ep.default_electro_tissues()["liver"]
    n, h = 25, 1.0
    lab = np.zeros((n, n, n), np.int64)
    needles = ep.parallel_pair((12.0, 12.0, 12.0), (1.0, 0.0, 0.0), 10.0, active_length_mm=10.0)
    one = ep.solve_field(lab, [liver], (h, h, h), needles, voltages_v=1500.0, iterations=1)
    three = ep.solve_field(lab, [liver], (h, h, h), needles, voltages_v=1500.0, iterations=3)
    assert three.currents_a[0] > one.currents_a[0] * 1.2
    assert liver.sigma(np.array([0.0]))[0] == pytest.approx(0.08)
    assert liver.sigma(np.array([1e4]))[0] == pytest.approx(0.32)
    assert 0.08 < liver.sigma(np.array([525.0]), "sigmoid")[0] < 0.32


def test_field_input_errors() -> None:
    """Bad inputs raise InvalidInputError with the reason."""
    lab = np.zeros((5, 5, 5), np.int64)
    with pytest.raises(InvalidInputError, match="at least two needles"):
        ep.solve_field(lab, [CONST], (1, 1, 1), [ep.Needle((2, 2, 2), (1, 0, 0))], voltages_v=100.0)
    far = [ep.Needle((200, 2, 2), (1, 0, 0), 5.0), ep.Needle((2, 2, 2), (1, 0, 0), 5.0)]
    with pytest.raises(InvalidInputError, match="outside the grid"):
        ep.solve_field(lab, [CONST], (1, 1, 1), far, voltages_v=100.0)
