"""``mc.cuda``: whether the GPU backend can run here, the GPUs, and the
memory CuPy holds on them.

minicnn runs on a GPU through CuPy: a tensor on ``"cuda:N"`` holds a CuPy
array on GPU N, every op takes its array module from its inputs, and the
kernel registry picks the CUDA kernels of ``kernels/cuda`` for CuPy
arrays. Without CuPy or a GPU everything else works as before; asking for
a GPU raises a RuntimeError that says which of the two is missing (or what
the driver answered).

Memory: every CuPy array comes from CuPy's memory pool, which keeps freed
blocks for reuse instead of returning them to the driver. ``memory_allocated``
is what live arrays use, ``memory_reserved`` what the pool holds in all,
and ``empty_cache`` returns the unused blocks (as torch's functions of the
same names do for its caching allocator).
"""
import minicnn.kernels.cuda  # noqa: F401 - registers the CUDA kernels, lazily: CuPy is not imported here

from .backend import cupy_module
from .device import Device, cuda_unavailable_reason


def is_available():
    """True when CuPy is installed and sees at least one GPU."""
    return cuda_unavailable_reason() is None


def _cupy():
    """The cupy module; RuntimeError saying why when CUDA is unavailable."""
    reason = cuda_unavailable_reason()
    if reason is not None:
        raise RuntimeError(f"CUDA is not available: {reason}")
    return cupy_module()


def _index(device):
    """The GPU index of ``device`` (None: the current GPU)."""
    if device is None:
        return _cupy().cuda.Device().id
    if isinstance(device, int):
        return device
    device = Device(device)
    if device.type != "cuda":
        raise ValueError(f"expected a cuda device, got {device}")
    return device.index


def device_count():
    """How many GPUs CuPy sees (0 when CUDA is unavailable)."""
    if not is_available():
        return 0
    return cupy_module().cuda.runtime.getDeviceCount()


def current_device():
    """The index of the GPU that new CuPy arrays go to."""
    return _cupy().cuda.Device().id


def set_device(device):
    """Make ``device`` (an index, ``"cuda:N"`` or an ``mc.device``) current."""
    _cupy().cuda.Device(_index(device)).use()


def get_device_name(device=None):
    """The GPU's name, e.g. ``"NVIDIA H100 80GB HBM3"``."""
    cp = _cupy()
    name = cp.cuda.runtime.getDeviceProperties(_index(device))["name"]
    return name.decode() if isinstance(name, bytes) else name


def synchronize(device=None):
    """Wait until every kernel queued on the GPU has finished (kernels run
    asynchronously: time a GPU computation only after this)."""
    cp = _cupy()
    with cp.cuda.Device(_index(device)):
        cp.cuda.Device().synchronize()


def memory_allocated(device=None):
    """Bytes that live CuPy arrays use on the GPU."""
    cp = _cupy()
    with cp.cuda.Device(_index(device)):
        return cp.get_default_memory_pool().used_bytes()


def memory_reserved(device=None):
    """Bytes CuPy's memory pool holds on the GPU: in use or kept for reuse."""
    cp = _cupy()
    with cp.cuda.Device(_index(device)):
        return cp.get_default_memory_pool().total_bytes()


def empty_cache():
    """Return the memory pool's unused blocks to the driver (live arrays
    keep theirs)."""
    cp = _cupy()
    cp.get_default_memory_pool().free_all_blocks()
    cp.get_default_pinned_memory_pool().free_all_blocks()
