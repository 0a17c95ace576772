"""Where requests run: the in-process model manager (default) or a Ray Serve deployment of managers.

Both implement :class:`umm.serve.backend.Backend`, so the UI, the CLI and the Python API call one
interface. Ray is imported only by ``umm.serve.ray_backend`` and ``umm.serve.deployment``, and only
when the Ray backend is chosen.
"""

from umm.serve.backend import BACKEND_ENV, BACKENDS, Backend, backend_kind, make_backend

__all__ = ["BACKENDS", "BACKEND_ENV", "Backend", "backend_kind", "make_backend"]
