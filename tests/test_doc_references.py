"""Every test the source and the docs name must exist.

Why: each plan's ``verification`` string (written to plan.json) names the tests that verify its
engine, and the docs' verification and validation tables name the test that holds each number.
When tests move or are renamed these strings go stale silently, and a reader (or an auditor of a
plan) is sent to a file or a test that does not exist. This test reads src/, docs/, README.md and
benchmarks/ as text (nothing is imported) and checks:

* every ``tests/…`` path exists: a file, a folder (a path ending in ``/``), or a glob
  (``test_y90_*.py``) that matches at least one file;
* every bare or partial test file name (``test_cryo.py``, ``planning/test_tare.py``) is found
  somewhere under tests/;
* every ``file.py::test_name`` names a function ``def test_name`` in that file (parametrised ids
  such as ``[rfa]`` stripped);
* in the docs' tables, a row's relative references (```…::test_name```, ```…fragment…```, a bare
  ```test_name```) name a test in the file that the row, or the rows above it in the same table,
  name explicitly; a bare ```test_name``` names a test somewhere under tests/.

Failures list every stale reference as file:line.
"""

from __future__ import annotations

import functools
import re
from fnmatch import fnmatch
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"
SCANNED = ("src", "docs", "README.md", "benchmarks")
TEXT_SUFFIXES = {".py", ".md", ".rst", ".txt", ".yaml", ".yml", ".toml", ".cfg", ".json", ".html", ".js",
                 ".css", ".mako"}
SKIP_DIRS = {"__pycache__", ".ipynb_checkpoints"}

#: a test file (bare, partial or full path) or any ``tests/…`` path, with an optional ``::test_name``
REF_RE = re.compile(
    r"(?<![\w./-])"
    r"(?P<path>(?:[\w-]+/)*test_[\w*?]+\.py(?!\w)|tests/[\w/*?.-]*)"
    r"(?:::(?P<func>test_\w+))?"
)
SPAN_RE = re.compile(r"`([^`]+)`")
PARAM_RE = re.compile(r"\[[^\]]*\]")


@functools.cache
def _test_files() -> tuple[str, ...]:
    """Every .py file under tests/, relative to tests/ (posix)."""
    return tuple(sorted(p.relative_to(TESTS).as_posix() for p in TESTS.rglob("*.py")
                        if not SKIP_DIRS & set(p.parts)))


@functools.cache
def _functions(path: Path) -> frozenset[str]:
    text = path.read_text(encoding="utf-8")
    return frozenset(re.findall(r"^[ \t]*(?:async[ \t]+)?def[ \t]+(test_\w+)[ \t]*\(", text, re.M))


def _scanned_files() -> list[Path]:
    files: list[Path] = []
    for name in SCANNED:
        p = ROOT / name
        if p.is_file():
            files.append(p)
        elif p.is_dir():
            files += [f for f in sorted(p.rglob("*"))
                      if f.is_file() and f.suffix in TEXT_SUFFIXES
                      and not SKIP_DIRS & set(f.parts)
                      and not any(part.endswith(".egg-info") for part in f.parts)]
    return files


def _resolve(ref: str) -> tuple[list[Path], str | None]:
    """The files (or folder) a reference names, or ([], why not)."""
    if ref.startswith("tests/"):
        if any(c in ref for c in "*?["):
            hits = [p for p in sorted(ROOT.glob(ref)) if p.is_file()]
            return (hits, None) if hits else ([], "glob matches no file")
        target = ROOT / ref
        if ref.endswith("/"):
            return ([target], None) if target.is_dir() else ([], "no such folder")
        if target.is_file() or target.is_dir():
            return [target], None
        return [], "no such file"
    # bare (test_x.py) or partial (planning/test_x.py): found somewhere under tests/
    hits = [TESTS / f for f in _test_files() if fnmatch(f, ref) or fnmatch(f, "*/" + ref)]
    return (hits, None) if hits else ([], "no such test file under tests/")


def _where(path: Path, lineno: int) -> str:
    return f"{path.relative_to(ROOT).as_posix()}:{lineno}"


@functools.cache
def _problems() -> tuple[tuple[str, ...], int]:
    """(every stale reference as 'file:line: reference — why', number of references checked)."""
    problems: list[str] = []
    checked = 0
    for path in _scanned_files():
        is_md = path.suffix == ".md"
        context: list[Path] = []  # test files the current table's rows named last
        for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            where = _where(path, lineno)
            row_files: list[Path] = []
            for m in REF_RE.finditer(line):
                ref = m["path"].rstrip(".") if m["path"].startswith("tests/") else m["path"]
                if ref in ("tests", "tests/"):
                    continue
                checked += 1
                files, why = _resolve(ref)
                if why:
                    problems.append(f"{where}: {ref} — {why}")
                    continue
                py_files = [f for f in files if f.suffix == ".py"]
                row_files += py_files
                if m["func"]:
                    checked += 1
                    if not any(m["func"] in _functions(f) for f in py_files):
                        problems.append(f"{where}: {ref}::{m['func']} — no 'def {m['func']}' in "
                                        + ", ".join(f.relative_to(ROOT).as_posix() for f in py_files))
            if not is_md:
                continue
            if not line.lstrip().startswith("|"):
                context = []
                continue
            if row_files:
                context = row_files
            for span in SPAN_RE.findall(line):
                problem = _check_relative(span.strip(), context)
                if problem is not None:
                    checked += 1
                    if problem:
                        problems.append(f"{where}: `{span}` — {problem}")
    return tuple(problems), checked


def _names(files: list[Path]) -> tuple[frozenset[str], str]:
    """The test functions of files (all test files when none), and how to say where they were sought."""
    files = files or [TESTS / f for f in _test_files()]
    names = frozenset().union(*(_functions(f) for f in files))
    if len(files) > 5:
        return names, "any file under tests/"
    return names, ", ".join(f.relative_to(ROOT).as_posix() for f in files)


def _check_relative(span: str, context: list[Path]) -> str | None:
    """None: the span is no relative test reference; '': it is one and it holds; else why not.

    ```…::test_x``` and ```…fragment…``` continue the file the row or the rows above it named (the
    ellipsis says so). A bare ```test_x``` is sought anywhere under tests/: tables such as web.md's
    name one test per row without its file, beside a file named for another check.
    """
    if REF_RE.search(span):
        return None  # explicit file reference, checked above
    span = PARAM_RE.sub("", span)
    if span.startswith("…"):
        body = span.lstrip("…")
        exact = body.startswith("::")
        name = body.removeprefix("::").rstrip("…")
        if not re.fullmatch(r"\w+", name):
            return None
        if not context:
            # `…::test_x` with no file above it cannot be resolved; a bare fragment outside any
            # test table (e.g. `…_right` for a label name) is no test reference
            return "no file named in this row or the table's rows above it" if exact else None
        names, where = _names(context)
        if exact:
            return "" if name in names else f"no 'def {name}' in {where}"
        return "" if any(name in n for n in names) else f"no test named '*{name}*' in {where}"
    if re.fullmatch(r"test_\w+", span):
        names, where = _names([])
        return "" if span in names else f"no 'def {span}' in {where}"
    return None


def test_scanner_finds_the_references() -> None:
    """Guard: the patterns still match the references (a broken regex would make the test vacuous)."""
    _, checked = _problems()
    assert checked > 200, f"only {checked} test references found in {', '.join(SCANNED)}"


def test_every_named_test_file_and_test_exists() -> None:
    problems, _ = _problems()
    assert not problems, (f"{len(problems)} stale test reference(s) (tests moved or renamed? name the file "
                          "and test that holds the check now):\n" + "\n".join(problems))
