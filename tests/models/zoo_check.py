"""Parity of minicnn's model zoo with torchvision.

    mc_model, tv_model = build_pair("mobilenet_v2", dropout=0.0)
    check_eval(mc_model, tv_model, (1, 3, 32, 32), numpy.float64, layers=["features.3"])
    check_train(mc_model, tv_model, (2, 3, 64, 64))

``build_pair`` builds torchvision's model under ``torch.manual_seed`` and
copies its randomly initialised state_dict into minicnn's (strictly: the
keys, their order and the shapes must be the same).

Errors are norm-wise relative: max |minicnn - torch| / max |torch| over the
whole array, so a logit that happens to be near zero does not need to
match to 1e-9 of itself. Bounds (the issue's): 1e-9 in float64, 1e-4 in
float32. Each check returns the errors it saw, {what: error}, so tests can
report them.
"""
import numpy
import torch
import torchvision

import minicnn as mc

RTOL = {numpy.float64: 1e-9, numpy.float32: 1e-4}


def relative_error(actual, expected):
    """max |actual - expected| / max |expected| (0 when both are all zero)."""
    actual = numpy.asarray(actual, dtype=numpy.float64)
    expected = numpy.asarray(expected, dtype=numpy.float64)
    assert actual.shape == expected.shape, f"shape {actual.shape} != torch's {expected.shape}"
    scale = numpy.abs(expected).max(initial=0.0)
    diff = numpy.abs(actual - expected).max(initial=0.0)
    if scale == 0.0:
        return diff
    return diff / scale


def assert_relative(actual, expected, rtol, what):
    """Check relative_error(actual, expected) <= rtol; return the error."""
    err = relative_error(actual, expected)
    assert numpy.isfinite(err) and err <= rtol, f"{what}: relative error {err:.3g} > {rtol:.0e}"
    return err


def build_pair(name, seed=0, **kwargs):
    """(minicnn model, torchvision model) of architecture ``name`` built
    with ``kwargs``, both in float32 and holding torchvision's weights."""
    torch.manual_seed(seed)
    tv_model = torchvision.models.get_model(name, weights=None, **kwargs)
    mc_model = mc.models.get_model(name, **kwargs)
    tv_state = tv_model.state_dict()
    mc_keys = list(mc_model.state_dict())
    assert mc_keys == list(tv_state), (
        f"{name}: state_dict keys differ; only in minicnn: {sorted(set(mc_keys) - set(tv_state))[:5]}, "
        f"only in torchvision: {sorted(set(tv_state) - set(mc_keys))[:5]}")
    mc_model.load_state_dict(tv_state)
    return mc_model, tv_model


def _as_dtype(mc_model, tv_model, dtype):
    if dtype == numpy.float64:
        return mc_model.double(), tv_model.double()
    return mc_model.float(), tv_model.float()


def _record(model, names, get_module, store):
    """Forward hooks that keep the outputs of the submodules ``names``."""
    handles = []
    for name in names:
        def hook(module, args, output, name=name):
            store[name] = output
        handles.append(get_module(model, name).register_forward_hook(hook))
    return handles


def check_eval(mc_model, tv_model, input_shape, dtype, layers=(), rtol=None, seed=0):
    """Eval mode, no gradients: compare the logits and the outputs of the
    submodules named in ``layers`` (dotted names, as ``get_submodule``)."""
    dtype = numpy.dtype(dtype).type
    rtol = RTOL[dtype] if rtol is None else rtol
    mc_model, tv_model = _as_dtype(mc_model, tv_model, dtype)
    mc_model.eval()
    tv_model.eval()
    x = numpy.random.default_rng(seed).standard_normal(input_shape).astype(dtype)

    mc_maps, tv_maps = {}, {}
    handles = (_record(mc_model, layers, lambda m, n: m.get_submodule(n), mc_maps)
               + _record(tv_model, layers, lambda m, n: m.get_submodule(n), tv_maps))
    try:
        with mc.no_grad():
            mc_out = mc_model(mc.from_numpy(x.copy()))
        with torch.no_grad():
            tv_out = tv_model(torch.from_numpy(x.copy()))
    finally:
        for h in handles:
            h.remove()

    errors = {}
    assert mc_out.dtype == dtype, f"logits have dtype {mc_out.dtype}, expected {numpy.dtype(dtype)}"
    errors["logits"] = assert_relative(mc_out.numpy(), tv_out.numpy(), rtol, f"{numpy.dtype(dtype)} logits")
    for name in layers:
        errors[name] = assert_relative(mc_maps[name].numpy(), tv_maps[name].numpy(), rtol,
                                       f"{numpy.dtype(dtype)} feature map {name!r}")
    return errors


def check_train(mc_model, tv_model, input_shape, rtol=1e-9, seed=0):
    """Training mode in float64 (batch norm on batch statistics; build the
    models with dropout 0): compare the logits, the gradient of every
    parameter for a random upstream gradient, and the running statistics
    the step updated."""
    mc_model, tv_model = _as_dtype(mc_model, tv_model, numpy.float64)
    mc_model.train()
    tv_model.train()
    rng = numpy.random.default_rng(seed)
    x = rng.standard_normal(input_shape)

    mc_out = mc_model(mc.from_numpy(x.copy()))
    tv_out = tv_model(torch.from_numpy(x.copy()))
    errors = {"logits": assert_relative(mc_out.numpy_copy(), tv_out.detach().numpy(), rtol, "train logits")}

    upstream = rng.standard_normal(tuple(tv_out.shape))
    mc_out.backward(mc.from_numpy(upstream.copy()))
    tv_out.backward(torch.from_numpy(upstream))
    tv_params = dict(tv_model.named_parameters())
    mc_params = dict(mc_model.named_parameters())
    assert list(mc_params) == list(tv_params)
    worst = 0.0
    for name, tv_p in tv_params.items():
        assert mc_params[name].grad is not None, f"no gradient for {name}"
        err = assert_relative(mc_params[name].grad.numpy(), tv_p.grad.numpy(), rtol, f"gradient of {name}")
        worst = max(worst, err)
    errors["gradients"] = worst

    tv_buffers = dict(tv_model.named_buffers())
    worst = 0.0
    for name, mc_b in mc_model.named_buffers():
        worst = max(worst, assert_relative(mc_b.numpy(), tv_buffers[name].numpy(), rtol, f"buffer {name}"))
    errors["buffers"] = worst
    return errors


def check_weights_refused(builder):
    """``builder(weights="IMAGENET1K_V1")`` raises a ValueError that says
    how to load torchvision's weights instead."""
    import pytest

    with pytest.raises(ValueError, match="load_state_dict"):
        builder(weights="IMAGENET1K_V1")
