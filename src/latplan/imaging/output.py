"""Output folders: refuse what latplan must not touch, write atomically, leave a manifest.

One function decides whether an output folder may be written, for every command that writes
one (``latplan plan --out``, case folders from ``phantom``/``insert-lesion``/
``case import-totalsegmentator``, the demo):

- an output path that cannot be created or written → :class:`~latplan.imaging.errors.OutputNotWritableError`;
- an existing, non-empty folder without latplan's manifest (:data:`MANIFEST_NAME`) →
  :class:`~latplan.imaging.errors.NotLatplanOutputError` unless ``overwrite`` (so a plan never
  mixes its files with another patient's or deletes a user's folder);
- a folder latplan wrote (it holds the manifest) is replaced as a whole;
- everything is written into a hidden sibling staging folder that is renamed into place only
  when complete: a failure leaves the old folder untouched and nothing half-written.

Usage::

    with output_dir(out, overwrite=False, kind="plan") as staging:
        write files into staging
    # out now holds them plus .latplan-manifest.json
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from latplan._version import __version__
from latplan.imaging.errors import NotLatplanOutputError, OutputNotWritableError
from latplan.imaging.hashing import file_sha256

__all__ = [
    "MANIFEST_NAME",
    "PreparedOutput",
    "commit_output_dir",
    "discard_output_dir",
    "is_latplan_output",
    "output_dir",
    "prepare_output_dir",
    "write_manifest",
]

#: file latplan writes into every output folder; its presence means "latplan may replace this"
MANIFEST_NAME = ".latplan-manifest.json"
_MANIFEST_FORMAT = "latplan-output-manifest/1"


@dataclass(frozen=True)
class PreparedOutput:
    """An output folder checked for writing: fill ``staging``, then :func:`commit_output_dir`."""

    final: Path
    staging: Path
    kind: str
    manifest: bool = True


def is_latplan_output(path: Path) -> bool:
    """True when ``path`` is a folder holding a manifest written by latplan."""
    manifest = path / MANIFEST_NAME
    if not manifest.is_file():
        return False
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("format") == _MANIFEST_FORMAT


def _unwritable(path: Path, exc: OSError | None, why: str | None = None) -> OutputNotWritableError:
    reason = why or (exc.strerror if exc is not None and exc.strerror else str(exc))
    return OutputNotWritableError(
        f"cannot write the output folder {path}: {reason}. Choose a folder you can write (--out) "
        "or fix its permissions."
    )


def prepare_output_dir(path: str | os.PathLike[str], overwrite: bool = False, kind: str = "output",
                       replace_latplan_output: bool = True, manifest: bool = True) -> PreparedOutput:
    """Check that ``path`` may be written and create its staging folder (see module docstring).

    ``replace_latplan_output=False`` keeps the older rule of case folders: any existing folder
    needs ``overwrite``. ``manifest=False`` writes no manifest (case folders keep their four files;
    they are never replaced without ``overwrite``).
    """
    final = Path(path)
    if final.exists() and not final.is_dir():
        raise _unwritable(final, None, "it exists and is a file, not a folder")
    if final.is_dir() and any(final.iterdir()):
        own = is_latplan_output(final)
        if not overwrite and not (own and replace_latplan_output):
            what = "was written by latplan" if own else "is not empty and was not written by latplan (no manifest)"
            raise NotLatplanOutputError(
                f"output folder {final} {what}; latplan will not mix its files with others or delete them. "
                "Choose a new or empty folder, or pass --overwrite to replace it."
            )
    parent = final.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _unwritable(final, exc) from None
    if not os.access(parent, os.W_OK | os.X_OK):
        raise _unwritable(final, None, f"its parent folder {parent} is not writable")
    staging = parent / f".{final.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        staging.mkdir()
    except OSError as exc:
        raise _unwritable(final, exc) from None
    return PreparedOutput(final=final, staging=staging, kind=kind, manifest=manifest)


def write_manifest(folder: Path, kind: str) -> Path:
    """Write :data:`MANIFEST_NAME` listing every file of ``folder`` with its sha256."""
    files = {
        p.relative_to(folder).as_posix(): file_sha256(p)
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != MANIFEST_NAME
    }
    doc = {
        "format": _MANIFEST_FORMAT,
        "kind": kind,
        "latplan_version": __version__,
        "written_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "files": files,
    }
    out = folder / MANIFEST_NAME
    out.write_text(json.dumps(doc, indent=2), encoding="utf-8")
    return out


def commit_output_dir(prepared: PreparedOutput) -> Path:
    """Write the manifest into the staging folder and rename it into place (old folder replaced)."""
    if prepared.manifest:
        write_manifest(prepared.staging, prepared.kind)
    final = prepared.final
    if final.exists():
        old = final.parent / f".{final.name}.old-{uuid.uuid4().hex[:8]}"
        os.replace(final, old)
        try:
            os.replace(prepared.staging, final)
        except OSError:
            os.replace(old, final)
            raise
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(prepared.staging, final)
    return final


def discard_output_dir(prepared: PreparedOutput) -> None:
    """Remove the staging folder (after a failure); the final folder is left as it was."""
    shutil.rmtree(prepared.staging, ignore_errors=True)


@contextmanager
def output_dir(path: str | os.PathLike[str], overwrite: bool = False, kind: str = "output",
               replace_latplan_output: bool = True, manifest: bool = True) -> Iterator[Path]:
    """Context manager: yields the staging folder; commits on success, discards on any error."""
    prepared = prepare_output_dir(path, overwrite, kind, replace_latplan_output, manifest)
    try:
        yield prepared.staging
    except BaseException:
        discard_output_dir(prepared)
        raise
    try:
        commit_output_dir(prepared)
    except OSError as exc:
        discard_output_dir(prepared)
        raise _unwritable(prepared.final, exc) from None
