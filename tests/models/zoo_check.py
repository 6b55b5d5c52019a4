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
float32. One exception, for gradients: a gradient that is zero in exact
arithmetic is pure round-off in both frameworks (e.g. the bias of a batch
norm whose output reaches a training-mode batch norm through a bias-free
1x1 conv: that norm subtracts the mean, so the bias cannot change the
loss), so a parameter's gradient is measured against at least 1e-6 of the
largest gradient of the model. Each check returns the errors it saw,
{what: error}, so tests can report them.

torch runs single-threaded here: the suite runs with ``-n 2`` on 2 cores,
and torch's thread pool spinning against the other worker made single
float64 forwards take 20 s instead of 0.04 s.
"""
import numpy
import torch
import torchvision

import minicnn as mc
from minicnn.nn.skip_init import no_init as skip_init  # noqa: F401  (the tests' name: big models built unfilled)

RTOL = {numpy.float64: 1e-9, numpy.float32: 1e-4}

torch.set_num_threads(1)


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


def assert_relative(actual, expected, rtol, what, floor=0.0):
    """Check relative_error(actual, expected) <= rtol, where the scale
    max |expected| is raised to ``floor`` if smaller; return the error."""
    err = relative_error(actual, expected)
    scale = numpy.abs(numpy.asarray(expected, dtype=numpy.float64)).max(initial=0.0)
    if 0.0 < scale < floor:
        err *= scale / floor
    assert numpy.isfinite(err) and err <= rtol, f"{what}: relative error {err:.3g} > {rtol:.0e}"
    return err


def build_pair(name, seed=0, dtype=numpy.float32, shared=False, **kwargs):
    """(minicnn model, torchvision model) of architecture ``name`` built
    with ``kwargs``, both in ``dtype`` and holding torchvision's weights.
    ``shared=True`` (for eval-only checks of big models): minicnn's holds
    torchvision's arrays themselves (``load_state_dict(assign=True)``),
    one copy of the weights in memory instead of two; not for training
    checks, where both would update the same running statistics."""
    torch.manual_seed(seed)
    tv_model = torchvision.models.get_model(name, weights=None, **kwargs)
    tv_model = tv_model.double() if dtype == numpy.float64 else tv_model.float()
    with skip_init():                   # its own initialisation would be overwritten: not drawn
        mc_model = mc.models.get_model(name, **kwargs)
    tv_state = tv_model.state_dict()
    mc_keys = list(mc_model.state_dict())
    assert mc_keys == list(tv_state), (
        f"{name}: state_dict keys differ; only in minicnn: {sorted(set(mc_keys) - set(tv_state))[:5]}, "
        f"only in torchvision: {sorted(set(tv_state) - set(mc_keys))[:5]}")
    if shared:
        mc_model.load_state_dict(tv_state, assign=True)
    else:
        mc_model.to(mc.float64 if dtype == numpy.float64 else mc.float32).load_state_dict(tv_state)
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
    floor = 1e-6 * max(float(p.grad.abs().max()) for p in tv_params.values())
    worst = 0.0
    for name, tv_p in tv_params.items():
        assert mc_params[name].grad is not None, f"no gradient for {name}"
        err = assert_relative(mc_params[name].grad.numpy(), tv_p.grad.numpy(), rtol, f"gradient of {name}",
                              floor=floor)
        worst = max(worst, err)
    errors["gradients"] = worst

    # Running means can be zero in exact arithmetic too (a batch norm fed by
    # a bias-free conv of a batch-normalized tensor), hence the same floor.
    tv_buffers = dict(tv_model.named_buffers())
    floor = 1e-6 * max((float(b.abs().max()) for b in tv_buffers.values()), default=0.0)  # ConvNeXt has none
    worst = 0.0
    for name, mc_b in mc_model.named_buffers():
        worst = max(worst, assert_relative(mc_b.numpy(), tv_buffers[name].numpy(), rtol, f"buffer {name}",
                                           floor=floor))
    errors["buffers"] = worst
    return errors


def check_weights_refused(builder):
    """``builder(weights="IMAGENET1K_V1")`` raises a ValueError that says
    how to load torchvision's weights instead."""
    import pytest

    with pytest.raises(ValueError, match="load_state_dict"):
        builder(weights="IMAGENET1K_V1")


def check_structure(mc_model, tv_model):
    """The state_dicts have the same keys, in the same order, with the same
    shapes (for models too big to run in CI: build torchvision's on the
    meta device and minicnn's under ``skip_init``)."""
    mine = [(key, tuple(value.shape)) for key, value in mc_model.state_dict().items()]
    theirs = [(key, tuple(value.shape)) for key, value in tv_model.state_dict().items()]
    assert mine == theirs, (f"state_dicts differ; only in minicnn: {[e for e in mine if e not in theirs][:5]}, "
                            f"only in torchvision: {[e for e in theirs if e not in mine][:5]}")


def check_init_distributions(mc_model, tv_model, min_size=2000):
    """Both freshly initialised (not copied): a parameter torchvision fills
    with a constant (batch norm's 1 and 0, zero biases) is that constant
    in minicnn too; a random one of at least ``min_size`` values has the
    same standard deviation within 10% and a mean near 0."""
    tv_params = dict(tv_model.named_parameters())
    for key, p in mc_model.named_parameters():
        mine, theirs = p.detach().numpy(), tv_params[key].detach().numpy()
        assert mine.shape == theirs.shape, key
        if numpy.all(theirs == theirs.flat[0]):
            numpy.testing.assert_array_equal(mine, theirs, err_msg=key)
        elif mine.size >= min_size:
            assert abs(mine.std() / theirs.std() - 1) < 0.1, f"{key}: std {mine.std():.4g} vs {theirs.std():.4g}"
            assert abs(mine.mean()) < 0.1 * theirs.std(), f"{key}: mean {mine.mean():.4g}"


def fill_meta_model(tv_model, seed=0):
    """Materialise a torchvision model built on the meta device with cheap
    random values (torch's own initialisers take minutes on the largest
    models): weights N(0, 1/fan_in), biases and batch-norm shifts small,
    batch-norm scales and running variances near 1. Returns the model."""
    tv_model = tv_model.to_empty(device="cpu")
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, value in list(tv_model.state_dict().items()):
            if not value.is_floating_point():
                value.zero_()
            elif name.endswith("running_var"):
                value.uniform_(0.5, 1.5, generator=generator)
            elif value.ndim > 1:
                value.normal_(0.0, float(numpy.prod(value.shape[1:])) ** -0.5, generator=generator)
            elif name.endswith("weight") or name.endswith("gamma") or name.endswith("layer_scale"):
                value.uniform_(0.5, 1.5, generator=generator)
            else:
                value.normal_(0.0, 0.1, generator=generator)
    return tv_model


def build_pair_from_meta(mc_builder, tv_model_on_meta, seed=0):
    """(minicnn model, torchvision model) for a model too big to initialise
    the usual way: torchvision's is filled by ``fill_meta_model`` and
    minicnn's, built without initialisation, takes its state_dict's arrays
    (``assign=True``: the two share their weights' memory, gigabytes not
    copied)."""
    tv_model = fill_meta_model(tv_model_on_meta, seed)
    with skip_init():
        mc_model = mc_builder()
    mc_model.load_state_dict(tv_model.state_dict(), assign=True)
    return mc_model, tv_model
