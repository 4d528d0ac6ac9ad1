"""Every example in docs/ runs: the pages are executed as doctests.

Each page runs on a fresh virtual clock with nothing imported, as a reader
would try it in a fresh Python prompt: a page's snippets say what they import.
"""

from __future__ import annotations

import doctest
import re
from pathlib import Path

import pytest

from streams import Runtime, load_config

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_doc_page_examples_run(page: Path) -> None:
    with Runtime():
        result = doctest.testfile(
            str(page), module_relative=False, globs={}, report=False,
            optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE,
        )
    assert result.failed == 0, f"{result.failed} failing examples in {page.name}; run " \
        f"python -m doctest -v {page.relative_to(ROOT)} to see them"


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


def _is_signature(block: str) -> bool:
    """A reference page's call signature: a one-line block, or one call over several lines
    that reads as a valid ``def`` header, e.g. ``graphite(host=..., *, pickle=False)``."""
    text = block.strip()
    if "\n" not in text:
        return True
    if not re.fullmatch(r"\w+\(.*\)", text, re.DOTALL):
        return False
    try:
        compile(f"def {text}: pass", "<signature>", "exec")
    except SyntaxError:
        return False
    return True


def code_blocks() -> list[tuple[str, str]]:
    """Every ```python block of README and docs that is plain code, not a doctest session."""
    found = []
    for page in PAGES:
        for number, block in enumerate(re.findall(r"```python\n(.*?)```", page.read_text(),
                                                  re.DOTALL)):
            if not block.lstrip().startswith(">>>") and not _is_signature(block):
                found.append((f"{page.relative_to(ROOT)}#{number}", block))
    return found


@pytest.mark.parametrize(("where", "source"), code_blocks(), ids=lambda v: str(v)[:40])
def test_every_code_block_is_valid_python_on_its_own(where: str, source: str) -> None:
    # A block copied into a fresh file must at least compile (no top-level await).
    compile(source, where, "exec")


def test_the_client_example_runs_against_a_real_server(tmp_path: Path) -> None:
    import subprocess
    import sys

    [source] = [s for _, s in code_blocks() if s.startswith("# client.py")]
    server = subprocess.Popen(
        [sys.executable, "-c", "import sys, trio, functools\n"
         "from streams import Index\nfrom streams._config import Config\n"
         "from transport import TcpServer, UdpServer, serve\n"
         "index = Index()\n"
         "config = Config(streams=[index], services=[TcpServer(port=0), UdpServer(port=0)])\n"
         "async def main():\n"
         "    async with trio.open_nursery() as nursery:\n"
         "        running = await nursery.start(functools.partial(serve, config, index=index))\n"
         "        print(*running.ports, flush=True)\n"
         "trio.run(main)\n"],
        cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        tcp, udp = server.stdout.readline().split()
        script = tmp_path / "client.py"
        script.write_text(
            source.replace('"127.0.0.1", 5555', '"127.0.0.1", PORT')
            .replace("import trio\n", f"import trio\nPORT = {tcp}\n", 1)
            .replace('UdpClient("127.0.0.1", PORT)', f'UdpClient("127.0.0.1", {udp})'))
        done = subprocess.run([sys.executable, str(script)], cwd=ROOT, capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 0, done.stderr
    finally:
        server.kill()
        server.wait()
        server.stdout.close()


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_user_docs_do_not_cite_the_spec_readers_do_not_have(page: Path) -> None:
    assert "§" not in page.read_text(), f"{page.name} cites a section of the internal spec"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_user_docs_name_no_private_module(page: Path) -> None:
    private = re.findall(r"\b(?:streams|transport)\._\w+", page.read_text())
    assert not private, f"{page.name} sends users to private modules: {sorted(set(private))}"
