"""The public API, the registry of streams and the reference docs agree.

A stream cannot ship unexported or undocumented: every registered stream is
in ``streams.__all__`` and has a ``## name`` heading in a page under
``docs/reference/``, and every heading there names a real public name.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import streams
import transport
from streams import REGISTRY

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "docs" / "reference"


def documented_names() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for page in sorted(REFERENCE.glob("*.md")):
        for match in re.finditer(r"^## `?([A-Za-z_][\w.]*)`?", page.read_text(), re.MULTILINE):
            found[match.group(1)] = page
    return found


def test_every_name_in_all_exists() -> None:
    for name in streams.__all__:
        assert hasattr(streams, name), f"streams.__all__ lists {name!r}, which does not exist"
    for name in transport.__all__:
        assert hasattr(transport, name), f"transport.__all__ lists {name!r}, which does not exist"


def test_all_has_no_duplicates() -> None:
    assert len(streams.__all__) == len(set(streams.__all__))


def test_every_registered_stream_is_exported() -> None:
    missing = sorted(set(REGISTRY) - set(streams.__all__))
    assert not missing, f"registered streams missing from streams.__all__: {missing}"


def test_every_exported_stream_is_registered() -> None:
    exported_streams = {
        name for name in streams.__all__
        if isinstance(getattr(streams, name), type)
        and issubclass(getattr(streams, name), streams.Stream)
        and name[0].islower()
    }
    assert exported_streams <= set(REGISTRY)


def test_every_registered_stream_is_documented() -> None:
    documented = documented_names()
    missing = sorted(name for name in REGISTRY if name not in documented)
    assert not missing, (
        f"streams without a '## name' heading in docs/reference/*.md: {missing}"
    )


def test_every_documented_stream_exists() -> None:
    for name, page in documented_names().items():
        target = streams
        if name.startswith("folds."):
            target, name = streams.folds, name.removeprefix("folds.")
        elif name in transport.__all__:  # the sinks live in transport
            target = transport
        assert hasattr(target, name), f"{page.name} documents {name!r}, which is not public"


def test_every_fold_is_documented() -> None:
    documented = documented_names()
    missing = [f for f in streams.folds.__all__
               if f not in documented and f"folds.{f}" not in documented]
    assert not missing, f"folds without a heading in docs/reference/folds.md: {missing}"


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_stream_has_a_runnable_example(name: str) -> None:
    doc = REGISTRY[name].__doc__ or ""
    assert ">>>" in doc, f"{name} has no doctest example in its docstring"
