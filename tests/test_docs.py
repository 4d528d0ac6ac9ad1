"""Every example in docs/ runs: the pages are executed as doctests.

Each page runs with ``from streams import *`` already done, on a fresh
virtual clock, as a reader would try it in a Python prompt.
"""

from __future__ import annotations

import doctest
import re
from pathlib import Path

import pytest

import streams
from streams import Runtime, load_config

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted((ROOT / "docs").rglob("*.md"))


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT / "docs")))
def test_doc_page_examples_run(page: Path) -> None:
    names = {name: getattr(streams, name) for name in streams.__all__}
    with Runtime():
        result = doctest.testfile(
            str(page), module_relative=False, globs=names, report=False,
            optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE,
        )
    assert result.failed == 0, f"{result.failed} failing examples in {page.name}; run " \
        f"python -m doctest -v {page.relative_to(ROOT)} with from streams import * to see them"


def config_blocks() -> list[tuple[str, str]]:
    """Every ```python block of the docs that is a whole config (starts "# monitoring.py")."""
    found = []
    for page in PAGES:
        for block in re.findall(r"```python\n(# monitoring\.py.*?)```", page.read_text(),
                                re.DOTALL):
            found.append((f"{page.name}:{block.splitlines()[0]}", block))
    return found


@pytest.mark.parametrize(("where", "source"), config_blocks(), ids=lambda v: str(v)[:40])
def test_config_examples_in_the_docs_load(where: str, source: str, tmp_path: Path) -> None:
    path = tmp_path / "monitoring.py"
    path.write_text(source)
    assert load_config(path).streams, where
