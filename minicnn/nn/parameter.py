"""Parameters: the tensors a Module learns.

A ``Parameter`` is a Tensor that requires grad by default. Assigning one to
an attribute of a Module (``self.weight = Parameter(...)``) registers it, so
``module.parameters()`` and ``module.state_dict()`` find it.

An ``UninitializedParameter`` stands in for a parameter whose shape is not
known yet (``LazyLinear`` before its first call). ``materialize(shape)``
gives it data and turns it into a plain Parameter in place, so an optimizer
built before the first call still holds the right object.
"""
import numpy

from .. import dtypes
from ..backend import get_array_module
from ..device import Device, move_array
from ..tensor import Tensor


class Parameter(Tensor):
    """A Tensor registered as a learnable parameter when assigned to a Module.

    ``data`` is a Tensor (whose array is shared, not copied) or anything
    NumPy can turn into an array; ``requires_grad`` defaults to True.
    """

    def __init__(self, data=None, requires_grad=True):
        if data is None:
            array = numpy.empty((0,), dtype=dtypes.default_float)
        elif isinstance(data, Tensor):
            array = data.data
        else:
            array = numpy.asarray(data)
        super().__init__(array, requires_grad=requires_grad)

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()


class UninitializedParameter(Parameter):
    """A parameter with no data yet; its shape is fixed by ``materialize``.

    Until then it holds an empty array only to carry its dtype and device,
    and reading its shape raises.
    """

    def __init__(self, requires_grad=True, device=None, dtype=None):
        array = numpy.empty((0,), dtype=dtypes.default_float if dtype is None else dtypes.as_dtype(dtype))
        if device is not None:
            array = move_array(array, Device(device))
        super().__init__(array, requires_grad=requires_grad)

    @property
    def shape(self):
        raise RuntimeError(
            "can't access the shape of an uninitialized parameter: run a forward pass "
            "(or load a state_dict) first")

    def materialize(self, shape):
        """Give the parameter zeros of ``shape`` (the layer then initialises
        them) and make it a plain Parameter, in place."""
        xp = get_array_module(self.data)
        self.data = xp.zeros(tuple(shape), dtype=self.data.dtype)
        self.__class__ = Parameter

    def __repr__(self):
        return f"<UninitializedParameter(dtype={self.dtype})>"


def is_lazy(tensor):
    """True for a parameter that has not been materialized yet."""
    return isinstance(tensor, UninitializedParameter)
