"""How ``make test`` spreads the suite over pytest-xdist workers (``--dist loadgroup --no-loadscope-reorder``).

Applied at collection by ``tests/conftest.py`` on every xdist worker (the same on each, so the workers'
collections agree). Two rules:

1. **Shared fixtures stay together.** Tests that use a fixture of ``module``, ``class`` or ``package``
   scope get an ``xdist_group`` named after the fixture's instance (the test file; the class; the
   package folder), so the fixture is built once, on one worker, as with ``--dist loadfile``. Every
   other test is a unit of its own, so a file of independent slow tests (one per demo case) spreads
   over the workers instead of queuing on one. Session fixtures are built once per worker either way.
2. **Longest first.** Units are sent longest first (the longest-processing-time rule: the last unit a
   worker takes is a short one, so the workers finish together). A unit's length is the sum of its
   tests' entries in :data:`DURATIONS_S` (seconds: setup + call + teardown, from a ``--durations`` run
   of the whole suite on 2 cores), else :data:`SLOW_DEFAULT_S` for a test marked ``slow`` and
   :data:`FAST_DEFAULT_S` for the rest. A stale table only makes the order less good, never a test
   wrong; refresh it with ``make test PYTEST_ARGS="-n 2 --dist loadgroup --no-loadscope-reorder
   --durations=60"`` and copy the figures (prefixes of node ids match every test under them).

Nothing here changes what a test asserts or which tests run.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

#: measured seconds of each test (setup + call + teardown), keyed by node id or by a prefix of node ids (a file,
#: a test without its parameters: the figure then holds for each test under it); the longest matching key
#: wins. Tests not named here get the defaults below.
DURATIONS_S: dict[str, float] = {
    "tests/integration/test_demo.py::test_demo_case_renders[four-lesions-right-lobe]": 240.0,
    "tests/integration/test_demo.py::test_demo_case_renders[large-60mm]": 200.0,
    "tests/integration/test_demo.py::test_demo_case_renders[fig1-seg8-between-hepatic-veins]": 150.0,
    "tests/integration/test_demo.py::test_demo_case_renders": 100.0,
    "tests/web/test_web_browser.py": 150.0,
}
SLOW_DEFAULT_S = 20.0
FAST_DEFAULT_S = 0.5

def estimated_s(item: pytest.Item, table: dict[str, float] | None = None) -> float:
    """Estimated seconds of one test: the entry of :data:`DURATIONS_S` with the longest key that is its
    node id or a prefix of it (a file, a test without its parameters), else the default for its marker."""
    durations = DURATIONS_S if table is None else table
    nodeid = item.nodeid
    keys = [k for k in durations if nodeid == k or nodeid.startswith((k + "::", k + "["))]
    if keys:
        return durations[max(keys, key=len)]
    return SLOW_DEFAULT_S if item.get_closest_marker("slow") is not None else FAST_DEFAULT_S


def shared_fixture_group(item: pytest.Item) -> str | None:
    """The group of ``item`` under rule 1: its file when it uses a class or module fixture, its package
    folder when it uses a package fixture, else ``None`` (a unit of its own)."""
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return None
    scopes = {str(defs[-1].scope) for name in info.names_closure if (defs := info.name2fixturedefs.get(name))}
    if "package" in scopes:
        return item.nodeid.rsplit("/", 1)[0] if "/" in item.nodeid else item.nodeid.split("::", 1)[0]
    if scopes & {"class", "module"}:
        return item.nodeid.split("::", 1)[0]
    return None


def schedule(items: list[pytest.Item], table: dict[str, float] | None = None) -> None:
    """Mark the shared-fixture groups (``xdist_group``) and sort ``items`` longest unit first, in place.

    Tests of one unit keep their file order; units of equal length keep collection order.
    """
    units: dict[str, list[pytest.Item]] = {}
    for item in items:
        group = shared_fixture_group(item)
        if group is not None:
            item.add_marker(pytest.mark.xdist_group(group))
        units.setdefault(group or f"test:{item.nodeid}", []).append(item)
    ordered: Sequence[list[pytest.Item]] = sorted(
        units.values(), key=lambda unit: -sum(estimated_s(i, table) for i in unit))
    items[:] = [item for unit in ordered for item in unit]
