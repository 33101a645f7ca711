"""The CaseGeometry computed once per case reaches every planner as an argument ([H] part 4).

References: the maps of the geometry the pipeline computed in this process (a pickled copy must
carry the very same values, bit for bit, so that a worker process does not recompute them), and
the planner signatures of ``latplan.planning`` (each takes ``geometry``).
"""

from __future__ import annotations

import inspect
import pickle

import numpy as np
import pytest

from latplan.anatomy.geometry import case_geometry, geometry_for
from latplan.errors import InvalidInputError
from latplan.modalities.registry import MODALITIES
from latplan.phantom import build_demo_case
from latplan.planning import electroporation, ibt, sbrt, tare, thermal


@pytest.fixture(scope="module")
def case():  # type: ignore[no-untyped-def]
    return build_demo_case("seg6-peripheral-18mm", voxel_mm=6.0)


def test_every_planner_entry_takes_geometry() -> None:
    """Every registered planner and every planning entry point has a keyword ``geometry``."""
    entries = [thermal.plan_rfa, thermal.plan_mwa, thermal.plan_cryo, thermal.plan_thermal, electroporation.plan_ect,
               electroporation.plan_ire, electroporation.plan_electroporation, ibt.plan_ibt, sbrt.plan_sbrt,
               tare.plan_tare]
    entries += [spec.planner for spec in MODALITIES.values() if spec.planner is not None]
    for fn in entries:
        param = inspect.signature(fn).parameters.get("geometry")
        assert param is not None and param.kind is inspect.Parameter.KEYWORD_ONLY, fn


def test_a_pickled_geometry_carries_its_maps(case) -> None:  # type: ignore[no-untyped-def]
    """A worker process receives the maps computed in the parent (identical arrays), bound to its copy of the case."""
    geometry = case_geometry(case)
    large = geometry.large_vessels
    copy = pickle.loads(pickle.dumps(geometry))
    assert copy.case is not case
    np.testing.assert_array_equal(case_geometry(copy.case).large_vessels, large)  # no recomputation needed
    assert geometry_for(copy.case, copy) is copy


def test_a_geometry_of_another_case_is_refused(case) -> None:  # type: ignore[no-untyped-def]
    other = build_demo_case("seg6-peripheral-18mm", voxel_mm=6.0)
    with pytest.raises(InvalidInputError, match="another case"):
        geometry_for(case, case_geometry(other))
    assert geometry_for(case, None).case is case
