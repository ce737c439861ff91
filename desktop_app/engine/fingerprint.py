"""Content fingerprints: the identity of an image's bytes, whatever its path."""

from __future__ import annotations

import hashlib
from pathlib import Path

CHUNK = 1 << 20


def fingerprint_file(path: Path | str) -> str:
    """BLAKE2b-128 of the whole file: a renamed or moved file keeps its fingerprint, a
    rewritten one gets a new one. hashlib releases the GIL, so loader threads overlap."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()
