"""The kernel registry: primitive name -> its implementations.

Every primitive (``im2col``, ``max_pool2d_forward``, ...) has a readable
NumPy reference and may have faster versions: Numba on the CPU, CUDA on
the GPU (a few, like Winograd convolution, exist on one backend only, and
``find`` says whether the backend in force has them). Ops never pick one
themselves; they ask the registry::

    im2col = registry.lookup("im2col", xp)
    cols = im2col(x, ...)

Which version runs:

* arrays on the GPU (``xp`` is cupy): the ``"cuda"`` version if there is
  one, else the reference (the references use only functions CuPy has);
* arrays on the CPU: the backend chosen with ``set_backend`` or the
  ``MINICNN_BACKEND`` environment variable, ``"numpy"`` or ``"numba"``;
  the default ``"auto"`` takes the fastest available (Numba when it is
  installed and the primitive has a Numba version).

Fast versions are registered *lazily*, as ``"module:function"`` strings:
their module (and Numba itself) is imported the first time the primitive
runs, which keeps ``import minicnn`` fast.

Every dtype and byte order computes on every backend. Numba compiles no
float16 arithmetic and no byte-swapped (non-native) arrays, so a Numba
version given such an array runs the primitive's NumPy reference
instead: the same answer as ``set_backend("numpy")``, in the input's
dtype (float16 in, float16 out, as torch computes float16 on the CPU),
and kernels that update an argument in place still do. A primitive with
no reference (Winograd) gets its arrays converted, float16 to float32
and byte-swapped to native order, and casts its float32 results back to
float16. This one guard (``_any_array``) wraps each Numba version as it
is resolved, so no kernel checks dtypes itself.
"""
import functools
import importlib
import importlib.util
import os

import numpy

BACKENDS = ("auto", "numpy", "numba")

_implementations = {}   # primitive -> {backend: function or "module:function"}
_backend = os.environ.get("MINICNN_BACKEND", "auto")
if _backend not in BACKENDS:
    raise ValueError(f"MINICNN_BACKEND must be one of {BACKENDS}, got {_backend!r}")


def register(primitive, backend, target=None):
    """Register ``target`` (a function or a ``"module:function"`` string) as
    the ``backend`` version of ``primitive``; usable as a decorator."""
    if backend not in ("numpy", "numba", "cuda"):
        raise ValueError(f"register: backend must be 'numpy', 'numba' or 'cuda', got {backend!r}")

    def add(fn):
        _implementations.setdefault(primitive, {})[backend] = fn
        return fn

    return add if target is None else add(target)


def set_backend(name):
    """Choose the CPU backend: ``"auto"`` (default), ``"numpy"`` or ``"numba"``."""
    global _backend
    if name not in BACKENDS:
        raise ValueError(f"set_backend: backend must be one of {BACKENDS}, got {name!r}")
    _backend = name


def get_backend():
    """The CPU backend in force: ``"auto"``, ``"numpy"`` or ``"numba"``."""
    return _backend


def _resolve(primitive, backend):
    impls = _implementations[primitive]
    fn = impls[backend]
    if isinstance(fn, str):
        module, _, name = fn.partition(":")
        fn = getattr(importlib.import_module(module), name)
        if backend == "numba":
            fn = _any_array(primitive, fn)
        impls[backend] = fn
    return fn


def _compiled(value):
    """Whether a Numba kernel takes ``value``: anything but a float16 or a
    byte-swapped array (or NumPy scalar)."""
    dtype = getattr(value, "dtype", None)
    return dtype is None or (dtype.isnative and dtype.char != "e")     # "e": float16


def _any_array(primitive, kernel):
    """``kernel``, the Numba version of ``primitive``, made to take the
    arrays Numba cannot compile for (see the module docstring)."""
    @functools.wraps(kernel)
    def run(*args, **kwargs):
        if all(map(_compiled, args)) and (not kwargs or all(map(_compiled, kwargs.values()))):
            return kernel(*args, **kwargs)
        reference = _implementations[primitive].get("numpy")
        if reference is not None:
            return _resolve(primitive, "numpy")(*args, **kwargs)
        half = any(getattr(a, "dtype", None) == numpy.float16 for a in (*args, *kwargs.values()))
        out = kernel(*map(_native, args), **{k: _native(v) for k, v in kwargs.items()})
        if not half:
            return out
        return tuple(map(_half, out)) if isinstance(out, tuple) else _half(out)
    return run


def _native(value):
    """``value`` as a Numba kernel takes it: float16 as float32, in native
    byte order."""
    if _compiled(value):
        return value
    dtype = value.dtype.newbyteorder("=")
    return value.astype(numpy.float32 if dtype == numpy.float16 else dtype)


def _half(value):
    """A float32 result of a float16 computation, back in float16."""
    return value.astype(numpy.float16) if getattr(value, "dtype", None) == numpy.float32 else value


def lookup(primitive, xp):
    """The version of ``primitive`` to run on arrays of module ``xp``."""
    fn = find(primitive, xp)
    if fn is None:
        raise KeyError(f"{primitive!r} has no version for {xp.__name__} arrays with backend {_backend!r}")
    return fn


def find(primitive, xp):
    """``lookup``'s answer, or None where the backend in force has no
    version of ``primitive``: a path that only some backends have (Winograd
    convolution, Numba's only) asks this before taking it."""
    impls = _implementations.get(primitive)
    if impls is None:
        raise KeyError(f"no kernel named {primitive!r} is registered")
    if xp.__name__ == "cupy":
        backends = ("cuda", "numpy")
    elif _backend in ("auto", "numba") and numba_available():
        backends = ("numba", "numpy")
    elif _backend == "numba" and "numba" in impls:
        raise RuntimeError("set_backend('numba'): numba is not installed")
    else:
        backends = ("numpy",)
    for backend in backends:
        if backend in impls:
            return _resolve(primitive, backend)
    return None


def implementations(primitive):
    """All versions of ``primitive``, resolved: {backend: function}."""
    return {backend: _resolve(primitive, backend) for backend in _implementations[primitive]}


def primitives():
    """Names of all registered primitives."""
    return sorted(_implementations)


_numba_available = None


def numba_available():
    global _numba_available
    if _numba_available is None:
        _numba_available = importlib.util.find_spec("numba") is not None
    return _numba_available
