"""Builds the optional C parser (transport/_fastwire.c); everything else is in pyproject.toml.

The extension only speeds up decoding. When it cannot be built (no compiler,
no Python headers), installation goes on without it and rillet decodes with
the pure-Python codec, which transport._fastpath selects on its own.
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
        print(f"warning: not building rillet's C parser ({error}); the pure-Python codec "
              "will be used", file=sys.stderr)


setup(
    ext_modules=[Extension("transport._fastwire", ["transport/_fastwire.c"],
                           extra_compile_args=["-O2"], optional=True)],
    cmdclass={"build_ext": OptionalBuildExt},
)
