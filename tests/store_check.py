"""The invariant every fault test ends on: the catalog and the vector store agree
exactly, and the index matches the folder."""

from __future__ import annotations

from pathlib import Path

from desktop_app.engine.library import Library
from desktop_app.engine.scanner import is_image_name
from desktop_app.engine.vector_ids import vector_id


def image_files(folder: Path, extensions: list[str]) -> set[str]:
    exts = frozenset(extensions)
    return {
        str(p)
        for p in folder.rglob("*")
        if p.is_file()
        and is_image_name(p.name, exts)
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    }


def assert_consistent(lib: Library, folder: Path, complete: bool = True) -> None:
    """No orphan vectors, no rows without vectors, no duplicates; with ``complete``,
    every image file of ``folder`` indexed or failed, and nothing else."""
    cat = lib.catalog
    files = cat.files_in(str(folder))
    held = {r.fingerprint for r in files.values() if r.ok}
    for (encoder, kind), n in cat.vector_counts().items():
        rows = list(cat.vectors(encoder, kind))
        wanted = [vector_id(r.fingerprint, r.kind, r.idx) for r in rows]
        assert len(wanted) == len(set(wanted)) == n, "duplicate vectors in the catalog"
        in_store = lib.store.ids(encoder, kind)
        assert in_store == set(wanted), (
            f"{encoder}/{kind}: store and catalog differ: {len(in_store - set(wanted))} "
            f"orphans in the store, {len(set(wanted) - in_store)} missing from it"
        )
        assert {r.fingerprint for r in rows} <= held | set(), "vectors of no file"
    with_vectors = cat.fingerprints_with_vectors(lib.encoder_id)
    assert held <= with_vectors, "indexed files without vectors"
    if complete:
        assert set(files) == image_files(folder, lib.settings.file_types)
