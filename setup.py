"""Builds the optional C extensions; everything else is in pyproject.toml.

transport/_fastwire.c parses the wire format; streams/_speedups.c compiles
the hops every event takes (where, by, broadcast, the config's dispatch,
the expiry sweep's judgement). When they cannot be built (no compiler, no
Python headers), installation goes on without them and rillet runs the
pure-Python codec and streams, which transport._fastpath and
streams._compiled select on their own.
"""

from __future__ import annotations

import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


class OptionalBuildExt(build_ext):
    def run(self) -> None:
        try:
            super().run()
        except Exception as error:
            self._skipped(error)

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as error:
            self._skipped(error)

    def _skipped(self, error: Exception) -> None:
        print(f"warning: not building rillet's C extensions ({error}); the pure-Python "
              "codec and streams will be used", file=sys.stderr)


setup(
    ext_modules=[Extension("transport._fastwire", ["transport/_fastwire.c"],
                           extra_compile_args=["-O2"], optional=True),
                 Extension("streams._speedups", ["streams/_speedups.c"],
                           extra_compile_args=["-O2"], optional=True)],
    cmdclass={"build_ext": OptionalBuildExt},
)
