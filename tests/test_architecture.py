"""latplan's import structure, read from the source with ``ast`` (no module is imported).

* No import cycles between latplan's modules. Every ``import``/``from … import`` counts, also
  inside functions; only ``if TYPE_CHECKING:`` blocks are left out (they never run). An edge goes
  from a module to the module it names (``from pkg import sub`` → ``pkg.sub`` when ``sub`` is a
  module, else → ``pkg``); importing ``a.b.c`` is not counted as importing ``a``/``a.b`` (the same
  convention as import-linter/grimp).
* No dynamic import of latplan's own modules: no ``importlib.import_module``/``__import__`` of
  them, and no ``except ImportError`` around a latplan import (readers and type checkers must see
  every dependency). Third-party optional extras may stay lazy (CuPy in physics/bioheat_gpu.py).

Reference: the definition of a cycle in a directed graph (Tarjan's strongly connected components);
issue [H] part 1–2 for the rules.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PKG = SRC / "latplan"

#: Known offenders still waiting for their owner's branch (issue [H] part 2). This list only shrinks;
#: the integrator empties it when the branches are merged. (file relative to src/latplan, owner)
ALLOWED_DYNAMIC: dict[str, str] = {}
#: Known cycle-making edges still waiting for their owner's branch: (importer, imported) → owner and
#: fix. They are left out of the graph; this list only shrinks (the integrator empties it).
ALLOWED_EDGES: dict[tuple[str, str], str] = {}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES: dict[str, Path] = {_module_name(p): p for p in PKG.rglob("*.py")}
PACKAGES = {_module_name(p) for p in PKG.rglob("__init__.py")}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _walk(node: ast.AST) -> Iterator[ast.AST]:
    """ast.walk without the bodies of ``if TYPE_CHECKING:`` (their ``else`` still counts)."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child.test):
            for sub in child.orelse:
                yield sub
                yield from _walk(sub)
            continue
        yield child
        yield from _walk(child)


def _resolve(module: str, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if module in PACKAGES else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(module: str, tree: ast.AST) -> set[str]:
    out: set[str] = set()
    for node in _walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name in MODULES)
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(module, node)
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                if sub in MODULES:
                    out.add(sub)
                elif target in MODULES:
                    out.add(target)
    out.discard(module)
    return out


def import_graph(allowed: dict[tuple[str, str], str] | None = None) -> dict[str, set[str]]:
    """Module → the latplan modules it imports, without the ``allowed`` edges."""
    skip = ALLOWED_EDGES if allowed is None else allowed
    return {name: {m for m in _imports(name, ast.parse(path.read_text(encoding="utf-8"))) if (name, m) not in skip}
            for name, path in MODULES.items()}


def _strongly_connected(graph: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's algorithm (iterative); components with more than one module are cycles."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[set[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = set()
                while True:
                    m = stack.pop()
                    on_stack.discard(m)
                    comp.add(m)
                    if m == node:
                        break
                if len(comp) > 1:
                    out.append(comp)
    return out


def _cycle_path(graph: dict[str, set[str]], comp: set[str]) -> list[str]:
    """One concrete cycle inside a strongly connected component (for the failure message)."""
    start = min(comp)
    path, seen = [start], {start}
    node = start
    while True:
        nxt = sorted(n for n in graph[node] if n in comp)
        back = [n for n in nxt if n == start]
        if back and len(path) > 1:
            return [*path, start]
        fresh = [n for n in nxt if n not in seen]
        node = fresh[0] if fresh else nxt[0]
        if node in seen:
            return [*path[path.index(node):], node]
        path.append(node)
        seen.add(node)


def test_the_graph_reader_sees_function_level_imports_and_skips_type_checking() -> None:
    """Self-check of the reader on a known snippet (reference: the snippet's own text)."""
    tree = ast.parse(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from latplan.report import writer\n"
        "def f():\n    from latplan.imaging import case_folder\n    import latplan.case.model\n"
        "from .types import PlanOptions\n")
    assert _imports("latplan.pipeline.plan", tree) == {"latplan.imaging.case_folder", "latplan.case.model",
                                                      "latplan.pipeline.types"}
    assert _imports("latplan", ast.parse("from . import errors\n")) == {"latplan.errors"}
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _strongly_connected(graph) == [{"a", "b", "c"}]
    assert _cycle_path(graph, {"a", "b", "c"}) == ["a", "b", "c", "a"]


def test_no_import_cycles() -> None:
    graph = import_graph()
    cycles = _strongly_connected(graph)
    assert not cycles, "import cycles: " + "; ".join(" → ".join(_cycle_path(graph, c)) for c in cycles)


def _dynamic_imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            fn = node.func
            name = fn.attr if isinstance(fn, ast.Attribute) else fn.id if isinstance(fn, ast.Name) else ""
            if name in ("import_module", "__import__"):
                arg = node.args[0] if node.args else None
                literal = isinstance(arg, ast.Constant) and isinstance(arg.value, str)
                if not literal or str(arg.value).split(".")[0] in ("latplan", ""):  # type: ignore[union-attr]
                    found.append(f"line {node.lineno}: {name}(…)")
        elif isinstance(node, ast.Try):
            guarded = [h for h in node.handlers if h.type is not None and any(
                isinstance(n, ast.Name) and n.id in ("ImportError", "ModuleNotFoundError") for n in ast.walk(h.type))]
            latplan_imports = [n for stmt in node.body for n in ast.walk(stmt)
                               if (isinstance(n, ast.ImportFrom) and (n.level or (n.module or "").startswith("latplan")))
                               or (isinstance(n, ast.Import) and any(a.name.startswith("latplan") for a in n.names))]
            if guarded and latplan_imports:
                found.append(f"line {node.lineno}: except ImportError around a latplan import")
    return found


def test_no_dynamic_imports_of_latplan_modules() -> None:
    offenders = {}
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG).as_posix()
        found = _dynamic_imports(path)
        if found and rel not in ALLOWED_DYNAMIC:
            offenders[rel] = found
    assert not offenders, f"dynamic imports of latplan modules: {offenders}"


def test_allow_list_only_names_current_offenders() -> None:
    """An entry whose file is fixed must leave the allow-list (it only shrinks)."""
    stale = [rel for rel in ALLOWED_DYNAMIC if not (PKG / rel).is_file() or not _dynamic_imports(PKG / rel)]
    assert not stale, f"remove from ALLOWED_DYNAMIC (fixed or gone): {stale}"
    full = import_graph({})
    gone = [edge for edge in ALLOWED_EDGES if edge[1] not in full.get(edge[0], set())]
    assert not gone, f"remove from ALLOWED_EDGES (fixed or gone): {gone}"


def _third_party_imports() -> dict[str, set[str]]:
    """Top-level names of non-latplan, non-stdlib modules imported anywhere in src/latplan → files."""
    import sys

    out: dict[str, set[str]] = {}
    for path in PKG.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
            for name in names:
                top = name.split(".")[0]
                if top and top != "latplan" and top not in sys.stdlib_module_names:
                    out.setdefault(top, set()).add(path.relative_to(PKG).as_posix())
    return out


def test_imported_third_party_packages_are_declared() -> None:
    """Every third-party import is a declared dependency (pyproject.toml [project] dependencies), or
    the one optional lazy extra (CuPy). Reference: the distributions' own top-level module lists
    (importlib.metadata.packages_distributions)."""
    import importlib.metadata as md
    import re
    import tomllib

    pyproject = tomllib.loads((SRC.parent / "pyproject.toml").read_text(encoding="utf-8"))
    declared = {re.split(r"[\[<>=!~ ;]", d, maxsplit=1)[0].lower().replace("_", "-")
                for d in pyproject["project"]["dependencies"]}
    dists = md.packages_distributions()
    optional = {"cupy"}
    missing = {}
    for top, files in _third_party_imports().items():
        if top in optional:
            continue
        owners = {d.lower().replace("_", "-") for d in dists.get(top, [])}
        if not owners & declared:
            missing[top] = sorted(files)
    assert not missing, f"imported but not declared in pyproject.toml: {missing}"
    assert "itsdangerous" not in _third_party_imports()
    assert "itsdangerous" not in declared, "itsdangerous is not imported: do not declare it"


#: package → latplan packages it must not import (docs/architecture.md; lower layers never import higher ones)
_TOP = ("pipeline", "web", "store", "cli", "batch")
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "errors": ("*",),
    "case": ("anatomy", "physics", "planning", "modalities", "board", "knowledge", "report", "followup", "phantom",
             *_TOP),
    "imaging": ("anatomy", "physics", "planning", "modalities", "board", "knowledge", "report", "followup", *_TOP),
    "phantom": ("anatomy", "physics", "planning", "modalities", "board", "knowledge", "report", "followup", *_TOP),
    "physics": ("anatomy", "planning", "modalities", "board", "knowledge", "report", "followup", "phantom", *_TOP),
    "anatomy": ("physics", "planning", "modalities", "board", "knowledge", "report", "followup", *_TOP),
    "knowledge": ("anatomy", "planning", "modalities", "board", "report", "followup", *_TOP),
    "planning": ("modalities", "board", "report", "followup", *_TOP),
    "modalities": ("board", "report", "followup", *_TOP),
    "board": ("report", "followup", "imaging.case_folder", *_TOP),
    "report": ("followup", "planning", "modalities", *_TOP),
    "followup": ("board", "report", *_TOP),
    "export": ("board", "modalities", "followup", *_TOP),
    "interop": ("pipeline", "web", "store", "cli", "batch"),
    "pipeline": ("web", "store", "cli", "batch"),
    "store": ("web", "cli", "pipeline", "batch"),
    "web": ("cli",),
}
#: known layer violations waiting for their owner (importer, imported) → owner; only shrinks
ALLOWED_LAYER_EDGES: dict[tuple[str, str], str] = {
}


def _violations() -> list[str]:
    out = []
    for importer, imported in ((a, b) for a, bs in import_graph({}).items() for b in bs):
        if importer.count(".") < 1 or (importer, imported) in ALLOWED_LAYER_EDGES:
            continue
        pkg = importer.split(".")[1]
        target = imported.removeprefix("latplan.")
        for banned in FORBIDDEN.get(pkg, ()):
            hit = target.split(".")[0] != pkg if banned == "*" else (target == banned or target.startswith(banned + "."))
            if hit:
                out.append(f"{importer} imports {imported} ({pkg} must not import {banned})")
    return out


def test_layers_import_only_downwards() -> None:
    assert not _violations(), "\n".join(_violations())
    live = {(a, b) for a, bs in import_graph({}).items() for b in bs}
    assert all(edge in live for edge in ALLOWED_LAYER_EDGES), "remove fixed edges from ALLOWED_LAYER_EDGES"


# ---------------------------------------------------------------------------------------------
# Function length (issue [H] part 5): no function or method in src/latplan is longer than 120
# lines (``def`` line to last line of its body, decorators not counted), except numba kernels,
# whose loops are kept together on purpose for the compiler. Measured with ``ast`` line numbers.
# ---------------------------------------------------------------------------------------------

MAX_FUNCTION_LINES = 120
#: Decorator names that mark a numba kernel (``numba.njit``, ``njit(cache=True)``, ``cuda.jit``…).
_KERNEL_DECORATORS = {"njit", "jit", "stencil", "vectorize", "guvectorize"}
#: Known long functions still waiting for their owner's branch: "file relative to src/latplan::name"
#: → owner. This list only shrinks.
ALLOWED_LONG: dict[str, str] = {}


def _decorator_name(dec: ast.expr) -> str:
    target = dec.func if isinstance(dec, ast.Call) else dec
    if isinstance(target, ast.Attribute):
        return target.attr
    if isinstance(target, ast.Name):
        return target.id
    return ""


def _is_numba_kernel(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    return any(_decorator_name(d) in _KERNEL_DECORATORS for d in fn.decorator_list)


def _function_lengths(tree: ast.AST) -> Iterator[tuple[str, int]]:
    """(qualified name, lines) of every non-kernel function in ``tree``, nested ones included."""
    def visit(node: ast.AST, prefix: str) -> Iterator[tuple[str, int]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                name = f"{prefix}{child.name}"
                if not _is_numba_kernel(child):
                    end = child.end_lineno if child.end_lineno is not None else child.lineno
                    yield name, end - child.lineno + 1
                yield from visit(child, f"{name}.")
            elif isinstance(child, ast.ClassDef):
                yield from visit(child, f"{prefix}{child.name}.")
            else:
                yield from visit(child, prefix)
    return visit(tree, "")


def _long_functions() -> dict[str, int]:
    found: dict[str, int] = {}
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG).as_posix()
        for name, lines in _function_lengths(ast.parse(path.read_text(encoding="utf-8"))):
            if lines > MAX_FUNCTION_LINES:
                found[f"{rel}::{name}"] = lines
    return found


def test_function_length_reader_counts_def_to_end_and_skips_numba_kernels() -> None:
    # reference: the definition itself — a function of n lines spans lineno..lineno+n-1
    body = "\n".join(f"    x{i} = {i}" for i in range(130))
    src = (f"import numba\n@numba.njit(cache=True)\ndef kernel():\n{body}\n"
           f"def plain():\n{body}\n"
           f"class C:\n    def method(self):\n    {body.replace(chr(10), chr(10) + '    ')}\n")
    lengths = dict(_function_lengths(ast.parse(src)))
    assert "kernel" not in lengths
    assert lengths["plain"] == 131
    assert lengths["C.method"] == 131


def test_no_function_longer_than_120_lines() -> None:
    long = _long_functions()
    offenders = {k: v for k, v in long.items() if k not in ALLOWED_LONG}
    assert not offenders, "functions over 120 lines (split them along their steps): " + ", ".join(
        f"{k} ({v} lines)" for k, v in sorted(offenders.items()))


def test_long_function_allow_list_only_names_current_offenders() -> None:
    stale = sorted(set(ALLOWED_LONG) - set(_long_functions()))
    assert not stale, f"remove from ALLOWED_LONG (now short enough or gone): {stale}"
