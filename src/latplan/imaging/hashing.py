"""File content hashes (provenance, manifests, blob keys, plan fingerprints): one reader for all."""

from __future__ import annotations

import hashlib
from pathlib import Path

__all__ = ["file_sha256"]

#: bytes read per step (a large CT series file is hashed without holding it in memory)
_BLOCK_BYTES = 1 << 20


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_BLOCK_BYTES), b""):
            h.update(chunk)
    return h.hexdigest()
