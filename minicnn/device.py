"""Devices: where a tensor's array lives (NumPy on the CPU, CuPy on a GPU)."""
import numpy

from .backend import cupy_module


class Device:
    """``mc.device("cpu")``, ``mc.device("cuda")`` or ``mc.device("cuda:1")``."""

    def __init__(self, spec="cpu", index=None):
        if isinstance(spec, Device):
            spec, index = spec.type, spec.index
        kind, _, idx = str(spec).partition(":")
        if kind not in ("cpu", "cuda"):
            raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {spec!r}")
        if idx:
            if kind != "cuda" or not idx.isdigit():
                raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {spec!r}")
            index = int(idx)
        self.type = kind
        self.index = (index or 0) if kind == "cuda" else None

    def __eq__(self, other):
        other = Device(other) if isinstance(other, str) else other
        return isinstance(other, Device) and (self.type, self.index) == (other.type, other.index)

    def __hash__(self):
        return hash((self.type, self.index))

    def __str__(self):
        return self.type if self.index is None else f"{self.type}:{self.index}"

    def __repr__(self):
        return f"device(type='{self.type}'" + ("" if self.index is None else f", index={self.index}") + ")"


def cuda_unavailable_reason():
    """Why CUDA cannot be used here, or None when it can."""
    cp = cupy_module()
    if cp is None:
        return "CuPy is not installed (pip install 'minicnn[cuda]')"
    try:
        count = cp.cuda.runtime.getDeviceCount()
    except Exception as e:  # noqa: BLE001 - the driver says why
        return f"CuPy cannot reach a GPU: {e}"
    return None if count > 0 else "no CUDA device is visible"


def device_of(array):
    """The Device an array lives on."""
    if isinstance(array, (numpy.ndarray, numpy.generic)):  # a NumPy scalar may stand for a 0-d array
        return Device("cpu")
    return Device("cuda", array.device.id)


def move_array(array, device):
    """Copy ``array`` to ``device`` (a no-op when it is already there)."""
    device = Device(device)
    if device_of(array) == device:
        return array
    if device.type == "cpu":
        return array.get()
    reason = cuda_unavailable_reason()
    if reason is not None:
        raise RuntimeError(f"cannot move a tensor to {device}: {reason}")
    cp = cupy_module()
    count = cp.cuda.runtime.getDeviceCount()
    if device.index >= count:
        raise RuntimeError(f"cannot move a tensor to {device}: only {count} CUDA device(s) visible")
    with cp.cuda.Device(device.index):
        # cp.array copies; cp.asarray would hand back an array of another GPU as it is.
        return cp.array(array)


def to_device(tensor, device):
    """The tensor on ``device``; differentiable (gradients flow back)."""
    from .functional.elementwise import ToDevice
    device = Device(device)
    if tensor.device == device:
        return tensor
    return ToDevice.apply(tensor, device=device)
