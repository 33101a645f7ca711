"""Safe intake of an uploaded case: a zip of a case folder or of a DICOM study.

Guards, in order (each rejection is an :class:`UploadRejectedError` that says what is wrong):
size of the upload (streamed, counted, never trusted from headers); a 0-byte file; not a zip
(a lone DICOM file is not a study); entry count; declared and actual uncompressed size and
expansion ratio (zip bombs: bytes are counted while extracting, so a lying header does not
help); entry names (no absolute paths, drive letters, ``..``, backslashes, NUL); no symlinks or
other special entries; no duplicates; damaged archives (bad CRC, encrypted, unsupported method)
refused with a 4xx, never a server error; after extraction no symbolic link, and the files
``case.yaml`` names stay inside the folder (:func:`check_case_paths`). Extraction writes only below a fresh folder inside the
store's ``tmp``; the case is then parsed by :mod:`latplan.web.parse_case` in a subprocess with
an address-space and CPU-time limit (``resource.setrlimit``) and a wall-clock timeout, so a
hostile or huge image cannot take the server down.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import struct
import subprocess
import sys
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

import yaml

from latplan.errors import InvalidInputError
from latplan.store.config import StoreSettings

CHUNK = 1 << 20


class UploadRejectedError(InvalidInputError):
    """An upload is refused; the message is shown to the user as is."""


@dataclass(frozen=True)
class UploadLimits:
    max_upload_bytes: int
    max_entries: int
    max_uncompressed_bytes: int
    max_expansion_ratio: float

    @classmethod
    def from_settings(cls, s: StoreSettings) -> UploadLimits:
        return cls(s.max_upload_bytes, s.max_zip_entries, s.max_uncompressed_bytes, s.max_expansion_ratio)


@dataclass
class ParsedCase:
    """What the parse subprocess found (JSON-serialisable summary shown in the case list)."""

    patient_id: str
    lesion_ids: list[str]
    structures: list[str]
    shape_kji: list[int]
    spacing_mm: list[float]
    source: str
    warnings: list[str] = field(default_factory=list)
    primary: str | None = None  # primary tumour (case.yaml); the FHIR export picks the mCODE condition profile by it

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def save_stream(src: BinaryIO, dest: Path, max_bytes: int) -> int:
    """Copy ``src`` to ``dest`` counting bytes; reject beyond ``max_bytes``."""
    n = 0
    with open(dest, "wb") as out:
        while True:
            chunk = src.read(CHUNK)
            if not chunk:
                break
            n += len(chunk)
            if n > max_bytes:
                raise UploadRejectedError(
                    f"the upload is larger than the limit of {max_bytes / 2**20:.0f} MiB; "
                    "send the case folder without extra series, or ask the administrator to raise the limit."
                )
            out.write(chunk)
    return n


def _check_name(name: str) -> PurePosixPath:
    if "\x00" in name or "\\" in name:
        raise UploadRejectedError(f"the zip entry {name!r} has a backslash or NUL in its name; rename it.")
    p = PurePosixPath(name)
    if p.is_absolute() or (len(name) > 1 and name[1] == ":"):
        raise UploadRejectedError(f"the zip entry {name!r} has an absolute path; zip the folder with relative paths.")
    if any(part == ".." for part in p.parts):
        raise UploadRejectedError(f"the zip entry {name!r} points outside the folder ('..'); such zips are refused.")
    return p


def extract_zip(archive: Path, dest: Path, limits: UploadLimits) -> None:
    """Check and extract ``archive`` into the empty folder ``dest`` (see the module guards)."""
    size = archive.stat().st_size
    if size == 0:
        raise UploadRejectedError("the uploaded file is empty (0 bytes); choose the case zip again.")
    if not zipfile.is_zipfile(archive):
        with open(archive, "rb") as f:
            head = f.read(132)
        if len(head) >= 132 and head[128:132] == b"DICM":
            raise UploadRejectedError(
                "this is a single DICOM file, not a study: zip the whole series folder (with case.yaml) and upload the zip."
            )
        raise UploadRejectedError("the upload is not a zip archive; zip the case folder (case.yaml, image, labels).")
    try:
        _extract_checked(archive, dest, limits, size)
    except UploadRejectedError:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError, ValueError, OSError,
            struct.error) as exc:
        # damaged central directory, bad CRC, encrypted entries, unsupported compression …
        raise UploadRejectedError(
            f"the zip archive is damaged or uses a feature latplan does not read ({type(exc).__name__}); "
            "create it again with a plain zip tool (no encryption, deflate or store compression)."
        ) from None
    _flatten_single_root(dest)
    check_case_paths(dest)


def _extract_checked(archive: Path, dest: Path, limits: UploadLimits, size: int) -> None:
    zf = zipfile.ZipFile(archive)
    with zf:
        infos = zf.infolist()
        if len(infos) > limits.max_entries:
            raise UploadRejectedError(
                f"the zip holds {len(infos)} entries, more than the limit of {limits.max_entries}; "
                "a case folder needs a few files (or one DICOM series)."
            )
        declared = sum(i.file_size for i in infos)
        if declared > limits.max_uncompressed_bytes:
            raise UploadRejectedError(
                f"the zip would expand to {declared / 2**20:.0f} MiB, more than the limit of "
                f"{limits.max_uncompressed_bytes / 2**20:.0f} MiB."
            )
        if size > 0 and declared / size > limits.max_expansion_ratio and declared > 64 * 2**20:
            raise UploadRejectedError(
                f"the zip expands {declared / size:.0f}-fold (limit {limits.max_expansion_ratio:.0f}); "
                "this looks like a zip bomb and is refused."
            )
        seen: set[str] = set()
        for info in infos:
            p = _check_name(info.filename)
            ftype = stat.S_IFMT(info.external_attr >> 16)
            if ftype and ftype not in (stat.S_IFREG, stat.S_IFDIR):
                raise UploadRejectedError(f"the zip entry {info.filename!r} is a symbolic link or special file; refused.")
            key = p.as_posix().rstrip("/").lower()
            if key in seen:
                raise UploadRejectedError(f"the zip holds {info.filename!r} twice; refused.")
            seen.add(key)
        total = 0
        dest_resolved = dest.resolve()
        for info in infos:
            p = _check_name(info.filename)
            target = (dest / p).resolve()
            if dest_resolved not in target.parents and target != dest_resolved:
                raise UploadRejectedError(f"the zip entry {info.filename!r} points outside the folder; refused.")
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            written = 0
            with zf.open(info) as src, open(target, "wb") as out:
                while True:
                    chunk = src.read(CHUNK)
                    if not chunk:
                        break
                    written += len(chunk)
                    total += len(chunk)
                    if written > info.file_size or total > limits.max_uncompressed_bytes:
                        raise UploadRejectedError(
                            f"the zip entry {info.filename!r} expands beyond its declared size or the limit; "
                            "refused as a zip bomb."
                        )
                    out.write(chunk)


def _flatten_single_root(dest: Path) -> None:
    """A zip of ``CASE/…`` (one top folder, no case.yaml at the root) → its content at the root."""
    entries = [e for e in dest.iterdir() if e.name not in ("__MACOSX", ".DS_Store")]
    for junk in set(dest.iterdir()) - set(entries):
        shutil.rmtree(junk) if junk.is_dir() else junk.unlink()
    if len(entries) == 1 and entries[0].is_dir() and not (dest / "case.yaml").exists():
        inner = entries[0]
        tmp = dest / (".flatten-" + inner.name)
        inner.rename(tmp)
        for child in tmp.iterdir():
            child.rename(dest / child.name)
        tmp.rmdir()


#: case.yaml keys that name files inside the case folder (docs/case-format.md)
CASE_YAML_PATH_KEYS = ("image", "labels", "label_table")


def _confined(folder: Path, name: object, key: str) -> None:
    if not isinstance(name, str) or not name.strip():
        raise UploadRejectedError(f"case.yaml: {key}: must be a file name inside the case folder.")
    if "\x00" in name or "\\" in name or (len(name) > 1 and name[1] == ":"):
        raise UploadRejectedError(f"case.yaml: {key}: {name!r} is not a relative path inside the folder; "
                                  "name the file as it sits in the zip (e.g. image.nii.gz).")
    p = PurePosixPath(name)
    if p.is_absolute() or ".." in p.parts:
        raise UploadRejectedError(f"case.yaml: {key}: points outside the case folder (an absolute path or '..'); "
                                  "only files inside the uploaded zip can be named, e.g. image.nii.gz.")
    root = folder.resolve()
    target = (folder / p).resolve()
    if target != root and root not in target.parents:
        raise UploadRejectedError(f"case.yaml: {key}: leads outside the case folder (a symbolic link).")


def check_case_paths(folder: Path) -> None:
    """Refuse a case folder that could make planning read anything outside it.

    Every file the planner reads must be inside the stored upload (so that its content hash,
    and with it the job key, covers what was read): no symbolic links anywhere, and the paths
    that ``case.yaml`` names (``image:``, ``labels:``, ``label_table:``) relative, without ``..``,
    resolving inside the folder.
    """
    for path in folder.rglob("*"):
        if path.is_symlink():
            raise UploadRejectedError(f"the upload holds a symbolic link ({path.relative_to(folder).as_posix()}); refused.")
    case_yaml = folder / "case.yaml"
    if not case_yaml.is_file():
        return  # parse_case explains what is missing
    try:
        data = yaml.safe_load(case_yaml.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise UploadRejectedError(f"case.yaml is not valid YAML ({type(exc).__name__}); check its indentation.") from None
    if not isinstance(data, dict):
        return
    for key in CASE_YAML_PATH_KEYS:
        if key in data and data[key] is not None:
            _confined(folder, data[key], key)


def _limit_child(memory_bytes: int, cpu_s: int) -> None:  # pragma: no cover - runs in the child
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 5))
    os.setsid()


def parse_in_subprocess(folder: Path, memory_bytes: int, timeout_s: float) -> ParsedCase:
    """Run :mod:`latplan.web.parse_case` on ``folder`` under resource limits; return its summary."""
    cmd = [sys.executable, "-m", "latplan.web.parse_case", str(folder)]
    try:
        proc = subprocess.run(
            cmd, capture_output=True, timeout=timeout_s, text=True, check=False,
            preexec_fn=lambda: _limit_child(memory_bytes, int(timeout_s) + 1),
            env={**os.environ, "OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"},
        )
    except subprocess.TimeoutExpired as exc:
        raise UploadRejectedError(
            f"reading the case took longer than {timeout_s:.0f} s and was stopped; check the image size."
        ) from exc
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        tail = (proc.stderr or "").strip().splitlines()[-1:] or ["no output"]
        if proc.returncode < 0 or "MemoryError" in (proc.stderr or ""):
            raise UploadRejectedError(
                f"reading the case ran out of its memory limit ({memory_bytes / 2**30:.1f} GiB) and was stopped."
            )
        raise UploadRejectedError(f"the case could not be read: {tail[0]}")
    out = json.loads(lines[-1])
    if not out.get("ok"):
        raise UploadRejectedError(out.get("error") or "the case could not be read.")
    return ParsedCase(**out["case"])
