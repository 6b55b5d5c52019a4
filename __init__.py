"""This folder is the root of a minicnn clone, not the minicnn package
(that is ``minicnn/`` inside it). This file runs only when Python imports
the clone itself as ``minicnn``: when it runs from the folder above a
clone named ``minicnn`` (``python -m minicnn``, ``import minicnn``), that
folder comes first on ``sys.path``.

Without this file the clone would be imported as an empty namespace
package, ahead of an editable install (whose import hook comes after
Python's own path search), and fail with
``ImportError: cannot import name 'ones' from 'minicnn' (unknown location)``.
With it, the import hands over to the installed minicnn, the one Python
would import from any other folder; if none is installed, it says what
happened and what to do.
"""
import importlib.machinery
import importlib.util
import os
import sys


def _installed_spec(parent):
    """The spec of the minicnn that Python would import if ``parent``
    (the folder holding the clone) were not on ``sys.path``; None if none."""
    search = [entry for entry in sys.path if os.path.abspath(entry or os.curdir) != parent]
    for finder in sys.meta_path:
        if finder is importlib.machinery.PathFinder:
            spec = finder.find_spec(__name__, search)
        elif hasattr(finder, "find_spec"):
            spec = finder.find_spec(__name__, None)
        else:
            continue
        if spec is not None and spec.loader is not None and spec.origin not in (None, __file__):
            return spec
    return None


def _hand_over():
    clone = os.path.dirname(os.path.abspath(__file__))
    parent = os.path.dirname(clone)
    spec = _installed_spec(parent)
    if spec is None:
        raise ImportError(
            f"{clone} is a clone of the minicnn repository, not the minicnn package (that is "
            f"{os.path.join(clone, 'minicnn')}): Python imported the clone because it runs from {parent}, the "
            f"folder that holds it, and no installed minicnn was found. Install it (pip install -e {clone}) "
            f"or run Python from inside the clone (cd {clone})", name=__name__)
    module = importlib.util.module_from_spec(spec)
    # The import system returns whatever sys.modules holds once this file has run.
    sys.modules[__name__] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[__name__]
        raise


if __name__ == "minicnn":
    _hand_over()
