"""Where a Riemann server listens and a client connects unless told otherwise.

Riemann's own defaults, in a module that imports nothing, so that the
servers, the clients and the ``rillet`` command (even its ``--help``) share
them without loading each other.
"""

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "DEFAULT_PROMETHEUS_PORT"]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5555
# rillet's own: Riemann has no Prometheus endpoint; 5559 sits beside its 5555-5558.
DEFAULT_PROMETHEUS_PORT = 5559
