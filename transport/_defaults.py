"""Where a Riemann server listens and a client connects unless told otherwise.

Riemann's own defaults, in a module that imports nothing, so that the
servers, the clients and the ``rillet`` command (even its ``--help``) share
them without loading each other.
"""

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT"]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5555
