"""Compare a minicnn layer with the torch layer of the same construction.

    check_layer(lambda nn: nn.Conv2d(3, 4, 3, padding=1), [(2, 3, 6, 6)])

builds the layer with ``mc.nn`` and with ``torch.nn``, checks that the two
have the same repr and state_dict keys, loads the torch layer's state_dict
(torch tensors, directly) into the minicnn layer, then runs both on the
same random input and compares the output, the gradient of every input and
of every parameter (by name) for a random upstream gradient, and the
buffers afterwards (BatchNorm's running statistics).
"""
import numpy
import torch

import minicnn as mc
from parity import TOLERANCES, assert_close

TORCH_DTYPES = {numpy.float64: torch.float64, numpy.float32: torch.float32}


def check_layer(factory, input_shapes, dtype=numpy.float64, rtol=None, atol=None, seed=0,
                train=True, torch_nn=None, compare_repr=True, forward_kwargs=None):
    """Check ``factory(mc.nn)`` against ``factory(torch_nn or torch.nn)``;
    returns the two layers."""
    dtype = numpy.dtype(dtype).type
    default_rtol, default_atol = TOLERANCES[dtype]
    rtol = default_rtol if rtol is None else rtol
    atol = default_atol if atol is None else atol
    forward_kwargs = forward_kwargs or {}
    rng = numpy.random.default_rng(seed)

    theirs = factory(torch_nn or torch.nn).to(TORCH_DTYPES[dtype])
    mine = factory(mc.nn).to(dtype)
    if compare_repr:
        assert repr(mine) == repr(theirs)
    assert list(mine.state_dict()) == list(theirs.state_dict())
    result = mine.load_state_dict(theirs.state_dict())
    assert result.missing_keys == [] and result.unexpected_keys == []
    mine.train(train)
    theirs.train(train)

    arrays = [rng.standard_normal(shape).astype(dtype) for shape in input_shapes]
    my_inputs = [mc.tensor(a, requires_grad=True) for a in arrays]
    their_inputs = [torch.tensor(a, requires_grad=True) for a in arrays]
    # clone(): inplace activations refuse to modify a leaf (torch's and minicnn's).
    my_out = mine(*[t.clone() for t in my_inputs], **forward_kwargs)
    their_out = theirs(*[t.clone() for t in their_inputs], **forward_kwargs)
    assert my_out.dtype == arrays[0].dtype
    assert_close(my_out.numpy_copy(), their_out.detach().numpy(), rtol, atol, "output")

    upstream = rng.standard_normal(tuple(their_out.shape)).astype(dtype)
    my_out.backward(mc.tensor(upstream))
    their_out.backward(torch.from_numpy(upstream))
    for k, (m, t) in enumerate(zip(my_inputs, their_inputs)):
        assert_close(m.grad.numpy_copy(), t.grad.numpy(), rtol, atol, f"gradient of input {k}")
    my_params = dict(mine.named_parameters())
    their_params = dict(theirs.named_parameters())
    assert list(my_params) == list(their_params)
    for name, t in their_params.items():
        assert my_params[name].grad is not None, f"no gradient for parameter {name}"
        assert_close(my_params[name].grad.numpy_copy(), t.grad.numpy(), rtol, atol, f"gradient of {name}")
    their_state = theirs.state_dict()
    for name, value in mine.state_dict().items():
        assert_close(value.numpy_copy(), their_state[name].numpy(), rtol, atol, f"state {name} after forward")
    return mine, theirs
