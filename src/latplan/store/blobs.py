"""Content-addressed file store on disk (under ``<data dir>/objects``).

A stored case folder is addressed by the SHA-256 of its tree (sorted relative paths and
file hashes), so the same upload is stored once (folders 0700, files 0600) and its address names its content; the
planning job key builds on it. Files land in ``<data dir>/tmp`` first and are moved into
place with one ``rename`` (atomic on one file system): a crash never leaves a half-written
object under ``objects/``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from pathlib import Path

from latplan.imaging.hashing import file_sha256


class BlobStore:
    """Folders and files addressed by content hash under ``root``."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self.objects = self.data_dir / "objects"
        self.tmp = self.data_dir / "tmp"
        self.results = self.data_dir / "results"
        for p in (self.data_dir, self.objects, self.tmp, self.results):
            p.mkdir(parents=True, exist_ok=True)
            os.chmod(p, 0o700)

    def new_tmp_dir(self, prefix: str = "up") -> Path:
        path = self.tmp / f"{prefix}-{uuid.uuid4().hex}"
        path.mkdir(mode=0o700)
        return path

    def folder_path(self, digest: str) -> Path:
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise ValueError(f"not a SHA-256 hex digest: {digest!r}")
        return self.objects / digest[:2] / digest

    def put_folder(self, folder: Path) -> str:
        """Move ``folder`` (inside ``tmp``) into the store; returns its tree hash."""
        digest = tree_sha256(folder)
        dest = self.folder_path(digest)
        if dest.exists():
            shutil.rmtree(folder)
        else:
            dest.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            restrict_modes(folder)
            os.replace(folder, dest)
        return digest

    def clean_tmp(self) -> int:
        """Remove leftovers of interrupted uploads/jobs; returns how many entries went."""
        n = 0
        for entry in self.tmp.iterdir():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            n += 1
        return n


def restrict_modes(root: Path) -> None:
    """Owner-only modes under ``root``: folders 0700, files 0600 (patient data, whatever the umask)."""
    os.chmod(root, 0o700)
    for path in root.rglob("*"):
        if not path.is_symlink():
            os.chmod(path, 0o700 if path.is_dir() else 0o600)


def tree_sha256(folder: Path) -> str:
    """Hash of a folder's content: sorted (relative POSIX path, file SHA-256) pairs."""
    h = hashlib.sha256()
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        h.update(rel.encode() + b"\0" + file_sha256(path).encode() + b"\n")
    return h.hexdigest()
