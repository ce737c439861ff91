"""Docstrings tell the truth about the code around them: every file they cite exists,
and every backticked name they cite is a name the code uses.

A docstring that sends a reader to a file or function that was renamed or removed costs
more than no docstring. Names are checked against every identifier the repository's own
Python uses (definitions, parameters, attributes, imports), so ``draft`` (PIL's) passes
because the code calls it, while a function that no longer exists anywhere fails.
"""

from __future__ import annotations

import ast
import builtins
import re
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "desktop_app"
CODE_DIRS = ("desktop_app", "tests", "bench", "docs", "installer")

# Files a docstring may cite: sources and documents kept in the repository. Runtime
# files (settings.json, thumbnails) are named as examples and are not checked.
FILE_REF = re.compile(r"[\w./-]+\.(?:py|md|toml|spec|cfg|ini|sh)\b")
FILE_LIKE = re.compile(r"[\w.-]+\.[a-z0-9]{2,4}")  # data_level0.bin, colour.py
TICKED = re.compile(r"`{1,2}([^`\n]+?)`{1,2}")
DOTTED_NAME = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*")


def python_files() -> list[Path]:
    # Not this file: it names stale references on purpose, to test the check.
    here = Path(__file__).resolve()
    return sorted(p for d in CODE_DIRS for p in (ROOT / d).rglob("*.py") if p != here)


@cache
def known_names() -> frozenset[str]:
    """Every identifier the repository's Python defines or uses, and module names."""
    names = set(dir(builtins))
    for path in python_files():
        names.update(path.parent.relative_to(ROOT).parts)
        names.add(path.stem)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                names.add(node.name)
            elif isinstance(node, ast.arg):
                names.add(node.arg)
            elif isinstance(node, ast.Name):
                names.add(node.id)
            elif isinstance(node, ast.Attribute):
                names.add(node.attr)
            elif isinstance(node, ast.keyword) and node.arg:
                names.add(node.arg)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                if node.value.isidentifier():  # environment variables, dictionary keys
                    names.add(node.value)
            elif isinstance(node, ast.alias):
                names.update(node.name.split("."))
                if node.asname:
                    names.add(node.asname)
    return frozenset(names)


def cited_name(ticked: str) -> str | None:
    """The dotted name a backticked span cites (``Library.status()`` -> Library.status),
    or None when it is not a name (a CLI line, a string value, an expression)."""
    text = ticked.strip()
    call = re.fullmatch(r"(.+?)\(.*\)", text)
    if call:
        text = call.group(1)
    return text if DOTTED_NAME.fullmatch(text) else None


def file_exists(ref: str, module: Path) -> bool:
    """A cited file, relative to the repository, the package or the citing module."""
    bases = [ROOT, PACKAGE, *[p for p in module.parents if ROOT in p.parents]]
    return any((base / ref).exists() for base in bases)


def stale_references(docstring: str, module: Path) -> list[str]:
    stale = [f for f in FILE_REF.findall(docstring) if not file_exists(f, module)]
    for span in TICKED.findall(docstring):
        name = cited_name(span)
        if name is None or "/" in span or FILE_LIKE.fullmatch(span.strip()):
            continue  # not a name: a path or a file name (repository files were checked above)
        stale += [part for part in name.split(".") if part not in known_names()]
    return stale


def docstrings(path: Path) -> list[tuple[str, str]]:
    """(where, docstring) for the module and each of its classes and functions."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            doc = ast.get_docstring(node)
            if doc:
                where = getattr(node, "name", "module")
                out.append((f"{path.relative_to(ROOT)}:{where}", doc))
    return out


def test_docstrings_cite_only_files_and_names_that_exist() -> None:
    problems = [
        f"{where}: {ref}"
        for path in sorted(PACKAGE.rglob("*.py"))
        for where, doc in docstrings(path)
        for ref in stale_references(doc, path)
    ]
    assert problems == []


def test_the_check_finds_a_stale_file_and_a_stale_name() -> None:
    module = PACKAGE / "engine" / "regions.py"
    doc = (
        "See REPORT.md and ``region_pooling.py``; ``merge_hits`` ranks, ``verify`` checks "
        "(as in ``partial.py``, ``Library.status()``, ``desktop-app status --json``)."
    )
    assert stale_references(doc, module) == ["REPORT.md", "region_pooling.py", "merge_hits"]
