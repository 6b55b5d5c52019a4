"""Pictures of the internals: the autograd graph (Graphviz) and, with
matplotlib, filters, feature maps, training histories, saliency and
Grad-CAM.

``import minicnn`` loads neither Graphviz nor matplotlib: each name here is
looked up in its module on first use (``mc.viz.graph`` imports
``minicnn.viz.graph``, which needs the ``graphviz`` package; the pictures
need ``matplotlib``). Install both with ``pip install minicnn[viz]``.
"""
import importlib

# graph.py imports graphviz only when a graph is drawn, so it loads here;
# importing it now also makes ``viz.graph`` the function, not the module of
# that name.
from .graph import graph, save_graph, saved_bytes  # noqa: F401

#: public name -> the module of this package that defines it (loaded on first use)
_NAMES = {
    "graph": "graph", "save_graph": "graph", "saved_bytes": "graph",
    "filters": "pictures", "feature_maps": "pictures", "history": "pictures", "saliency": "pictures",
    "grad_cam": "pictures",
    "saliency_map": "attribution", "grad_cam_map": "attribution",
}

__all__ = sorted(_NAMES)


def __getattr__(name):
    module = _NAMES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value             # found directly next time
    return value


def __dir__():
    return sorted(set(globals()) | set(_NAMES))
