"""Each shared constant and rule is defined in one module, and everything else uses it."""

from __future__ import annotations

import ast
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from streams import Event, Index, is_expired
from streams._event import outlived

ROOT = Path(__file__).resolve().parent.parent
SOURCES = sorted([*ROOT.glob("streams/*.py"), *ROOT.glob("transport/*.py")])


def homes(matches: object) -> list[str]:
    """The modules where an assignment or a tuple matches ``matches(node)``."""
    found = []
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text())):
            if matches(node):  # type: ignore[operator]
                found.append(path.relative_to(ROOT).as_posix())
    return found


def assigns(name: str) -> object:
    def matches(node: ast.AST) -> bool:
        targets = node.targets if isinstance(node, ast.Assign) else []
        return any(isinstance(t, ast.Name) and t.id == name for t in targets)
    return matches


def test_default_address_and_datagram_size_have_one_home_each() -> None:
    assert homes(assigns("DEFAULT_HOST")) == ["transport/_defaults.py"]
    assert homes(assigns("DEFAULT_PORT")) == ["transport/_defaults.py"]
    assert homes(assigns("DEFAULT_MAX_DATAGRAM")) == ["transport/_codec.py"]


def test_int64_bounds_are_written_once() -> None:
    def two_to_the_63(node: ast.AST) -> bool:
        return (isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow)
                and isinstance(node.right, ast.Constant) and node.right.value == 63)
    assert homes(two_to_the_63) == ["transport/_codec.py"] * 2  # the minimum and the maximum


def test_the_must_propagate_rule_is_written_once() -> None:
    def names_shutdown(node: ast.AST) -> bool:
        names = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
        return isinstance(node, ast.Tuple | ast.BinOp) and {"KeyboardInterrupt",
                                                            "SystemExit"} <= names
    assert set(homes(names_shutdown)) == {"streams/_clock.py"}


def test_the_expiry_rule_is_written_once() -> None:
    def applies_default_ttl(node: ast.AST) -> bool:
        return isinstance(node, ast.Name) and node.id == "DEFAULT_TTL" and \
            isinstance(node.ctx, ast.Load)
    assert homes(applies_default_ttl) == ["streams/_event.py"]


@given(st.floats(0, 1000), st.none() | st.floats(0, 100), st.floats(0, 2000))
def test_is_expired_and_the_index_sweep_agree(time: float, ttl: float | None,
                                                now: float) -> None:
    event = Event(host="h", service="s", time=time, ttl=ttl)
    index = Index()
    index(event)
    swept = index.expire(now=now) == [event]
    assert is_expired(event, now=now) == swept == outlived(time, ttl, now)
