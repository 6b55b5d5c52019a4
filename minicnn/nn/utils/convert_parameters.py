"""All the parameters as one flat vector, and back: torch's
``parameters_to_vector`` and ``vector_to_parameters``."""
from ... import functional as F
from ...tensor import Tensor
from .clip_grad import _tensor_list


def parameters_to_vector(parameters):
    """One 1-D Tensor: every parameter flattened, in order, concatenated.
    It is differentiable: gradients flow back to the parameters."""
    parameters = _tensor_list(parameters, "parameters", "parameters_to_vector")
    if not parameters:
        raise ValueError("parameters_to_vector: parameters is empty")
    devices = {str(p.device) for p in parameters}
    if len(devices) > 1:
        raise ValueError(f"parameters_to_vector: parameters are on several devices: {sorted(devices)}")
    return F.cat([F.reshape(p, (-1,)) for p in parameters])


def vector_to_parameters(vec, parameters):
    """Set the ``data`` of every parameter, in order, from consecutive
    slices of the 1-D ``vec`` (as torch, each parameter then shares
    memory with ``vec``). Unlike torch, which ignores surplus elements, a
    vector whose length is not the parameters' total size is an error."""
    if not isinstance(vec, Tensor):
        raise TypeError(f"vector_to_parameters: vec must be a Tensor, got {type(vec).__name__}")
    if vec.ndim != 1:
        raise ValueError(f"vector_to_parameters: vec must be 1-D, got shape {vec.shape}")
    parameters = _tensor_list(parameters, "parameters", "vector_to_parameters")
    total = sum(p.numel() for p in parameters)
    if vec.numel() != total:
        raise ValueError(f"vector_to_parameters: vec has {vec.numel()} elements, the parameters {total}")
    start = 0
    for p in parameters:
        if p.device != vec.device:
            raise ValueError(f"vector_to_parameters: a parameter is on {p.device}, vec on {vec.device}")
        n = p.numel()
        p.data = vec.data[start:start + n].reshape(p.shape)
        start += n
