"""mc.explain: every array a walk-through returns equals torch's own
computation on the same float64 inputs (conv2d / unfold / max_pool2d /
batch_norm and their autograd gradients for the same upstream gradient),
the text goes to the given file and names each step's shape, and a
deliberately broken step (a primitive or reference swapped out) trips the
assertion inside the walk-through."""
import io

import numpy
import pytest
import torch
import torch.nn.functional as TF

import minicnn as mc
from minicnn import explain
from minicnn.kernels import registry


def _torch(a, grad=False):
    return torch.tensor(a, dtype=torch.float64, requires_grad=grad)


# -- conv2d ----------------------------------------------------------------
CONV_CASES = [
    # x shape, w shape, stride, padding, dilation
    ((1, 1, 4, 4), (1, 1, 2, 2), 1, 0, 1),
    ((2, 2, 5, 5), (3, 2, 3, 3), 2, 1, 1),
    ((2, 3, 6, 7), (2, 3, 3, 2), (1, 2), (2, 1), (2, 1)),
    ((1, 2, 7, 6), (4, 2, 2, 3), 3, 0, 2),
]


@pytest.mark.parametrize("xs, ws, stride, padding, dilation", CONV_CASES)
def test_conv2d_steps_equal_torch(xs, ws, stride, padding, dilation, rng, backend):
    x, w = rng.standard_normal(xs), rng.standard_normal(ws)
    out = io.StringIO()
    r = explain.conv2d(x, w, stride, padding, dilation, file=out)

    xt, wt = _torch(x, True), _torch(w, True)
    y = TF.conv2d(xt, wt, stride=stride, padding=padding, dilation=dilation)
    y.backward(_torch(r["gy"]))
    cols = TF.unfold(_torch(x), ws[2:], dilation=dilation, padding=padding, stride=stride)
    N, O = xs[0], ws[0]
    L = y.shape[2] * y.shape[3]
    w_rows = wt.detach().reshape(O, -1)
    gy_rows = _torch(r["gy"]).reshape(N, O, L)

    numpy.testing.assert_allclose(r["cols"], cols.numpy(), rtol=0, atol=0)  # a copy: exact
    numpy.testing.assert_allclose(r["w_rows"], w_rows.numpy(), rtol=0, atol=0)
    numpy.testing.assert_allclose(r["y_rows"], y.detach().reshape(N, O, L).numpy(), rtol=1e-12, atol=1e-12)
    numpy.testing.assert_allclose(r["y"], y.detach().numpy(), rtol=1e-12, atol=1e-12)
    numpy.testing.assert_allclose(r["gcols"], (w_rows.T @ gy_rows).numpy(), rtol=1e-12, atol=1e-12)
    numpy.testing.assert_allclose(r["gw"], wt.grad.numpy(), rtol=1e-12, atol=1e-12)
    numpy.testing.assert_allclose(r["gx"], xt.grad.numpy(), rtol=1e-12, atol=1e-12)
    # col2im is fold: torch's fold of the same gcols gives the same gx.
    folded = TF.fold(_torch(r["gcols"]), xs[2:], ws[2:], dilation=dilation, padding=padding, stride=stride)
    numpy.testing.assert_allclose(r["gx"], folded.numpy(), rtol=1e-12, atol=1e-12)

    text = out.getvalue()
    for name in ("xpad", "cols", "w_rows", "y_rows", "y", "gy", "gy_rows", "gw", "gcols", "gx"):
        assert f"\n{name}  shape {tuple(r[name].shape)}:" in text


def test_conv2d_prints_to_stdout_by_default_and_takes_tensors(capsys, rng):
    x = mc.tensor(rng.standard_normal((1, 2, 4, 4)))
    w = mc.tensor(rng.standard_normal((2, 2, 3, 3)))
    gy = rng.standard_normal((1, 2, 2, 2))
    r = explain.conv2d(x, w, grad_output=mc.tensor(gy))
    printed = capsys.readouterr().out
    assert "cols  shape (1, 18, 4):" in printed and "gx  shape (1, 2, 4, 4):" in printed
    numpy.testing.assert_array_equal(r["gy"], gy)
    expected = TF.conv2d(_torch(x.numpy()), _torch(w.numpy()))
    numpy.testing.assert_allclose(r["y"], expected.numpy(), rtol=1e-12, atol=1e-12)


def test_conv2d_float32(rng):
    x = rng.standard_normal((2, 2, 5, 5)).astype(numpy.float32)
    w = rng.standard_normal((3, 2, 3, 3)).astype(numpy.float32)
    r = explain.conv2d(x, w, padding=1, file=io.StringIO())
    assert r["y"].dtype == numpy.float32
    expected = TF.conv2d(torch.from_numpy(x), torch.from_numpy(w), padding=1)
    numpy.testing.assert_allclose(r["y"], expected.numpy(), rtol=1e-5, atol=1e-5)


def _broken(primitive):
    """registry.lookup, but with ``primitive``'s answer off by one in one entry."""
    lookup = registry.lookup

    def fake(name, xp):
        fn = lookup(name, xp)
        if name != primitive:
            return fn

        def wrong(*args, **kwargs):
            out = fn(*args, **kwargs).copy()
            out.reshape(-1)[-1] += 1.0
            return out
        return wrong
    return fake


@pytest.mark.parametrize("primitive", ["im2col", "col2im"])
def test_conv2d_catches_a_broken_primitive(primitive, monkeypatch, rng):
    monkeypatch.setattr(registry, "lookup", _broken(primitive))
    with pytest.raises(AssertionError, match=f"step '{primitive}'"):
        explain.conv2d(rng.standard_normal((1, 1, 4, 4)), rng.standard_normal((1, 1, 2, 2)), file=io.StringIO())


def test_conv2d_catches_a_wrong_reference(monkeypatch, rng):
    real = mc.functional.conv2d
    monkeypatch.setattr(mc.functional, "conv2d", lambda *a, **k: real(*a, **k) * 1.001)
    with pytest.raises(AssertionError, match="step 'y'"):
        explain.conv2d(rng.standard_normal((1, 1, 4, 4)), rng.standard_normal((1, 1, 2, 2)), file=io.StringIO())


def test_conv2d_bad_arguments(rng):
    with pytest.raises(ValueError, match=r"same C.*\(1, 2, 4, 4\).*\(1, 3, 2, 2\)"):
        explain.conv2d(numpy.zeros((1, 2, 4, 4)), numpy.zeros((1, 3, 2, 2)))
    with pytest.raises(ValueError, match="does not fit"):
        explain.conv2d(numpy.zeros((1, 1, 2, 2)), numpy.zeros((1, 1, 3, 3)))
    with pytest.raises(TypeError, match="x must be float32 or float64"):
        explain.conv2d(numpy.zeros((1, 1, 4, 4), dtype=int), numpy.zeros((1, 1, 2, 2)))
    with pytest.raises(ValueError, match="grad_output must have the output's shape"):
        explain.conv2d(numpy.zeros((1, 1, 4, 4)), numpy.zeros((1, 1, 2, 2)), grad_output=numpy.zeros((1, 1, 2, 2)),
                       file=io.StringIO())


# -- max_pool2d ------------------------------------------------------------
POOL_CASES = [
    ((1, 1, 4, 4), 2, None, 0),
    ((2, 2, 5, 5), 3, 2, 1),      # overlapping windows: one pixel can win twice
    ((1, 2, 6, 5), (3, 2), (1, 2), (1, 1)),
]


@pytest.mark.parametrize("xs, kernel_size, stride, padding", POOL_CASES)
def test_max_pool2d_steps_equal_torch(xs, kernel_size, stride, padding, rng):
    x = rng.permutation(int(numpy.prod(xs))).reshape(xs).astype(numpy.float64)  # distinct values: no ties
    out = io.StringIO()
    r = explain.max_pool2d(x, kernel_size, stride, padding, file=out)

    xt = _torch(x, True)
    y, indices = TF.max_pool2d(xt, kernel_size, stride, padding, return_indices=True)
    y.backward(_torch(r["gy"]))
    kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
    sh, sw = (kh, kw) if stride is None else ((stride, stride) if isinstance(stride, int) else stride)
    ph, pw = (padding, padding) if isinstance(padding, int) else padding
    xpad = TF.pad(_torch(x), (pw, pw, ph, ph), value=-numpy.inf)
    windows = xpad.unfold(2, kh, sh).unfold(3, kw, sw)  # (N, C, OH, OW, KH, KW)

    numpy.testing.assert_array_equal(r["xpad"], xpad.numpy())
    numpy.testing.assert_array_equal(r["windows"], windows.numpy())
    numpy.testing.assert_array_equal(r["argmax"], windows.flatten(-2).argmax(-1).numpy())
    numpy.testing.assert_array_equal(r["indices"], indices.numpy())
    numpy.testing.assert_array_equal(r["y"], y.detach().numpy())
    numpy.testing.assert_array_equal(r["gx"], xt.grad.numpy())

    text = out.getvalue()
    for name in ("xpad", "windows", "argmax", "indices", "y", "gy", "gx"):
        assert f"\n{name}  shape {tuple(r[name].shape)}:" in text


def test_max_pool2d_catches_wrong_indices(monkeypatch, rng):
    real = mc.functional.max_pool2d

    def shifted(*args, **kwargs):
        y, indices = real(*args, **kwargs)
        return y, indices + 1
    monkeypatch.setattr(mc.functional, "max_pool2d", shifted)
    with pytest.raises(AssertionError, match="step 'indices'"):
        explain.max_pool2d(rng.standard_normal((1, 1, 4, 4)), 2, file=io.StringIO())


def test_max_pool2d_bad_arguments():
    with pytest.raises(ValueError, match="padding .* at most half"):
        explain.max_pool2d(numpy.zeros((1, 1, 4, 4)), 2, padding=2)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\), got shape \(4, 4\)"):
        explain.max_pool2d(numpy.zeros((4, 4)), 2)


# -- batch_norm ------------------------------------------------------------
@pytest.mark.parametrize("xs", [(5, 3), (3, 2, 4, 3)])
def test_batch_norm_steps_equal_torch(xs, rng):
    x = 2.0 * rng.standard_normal(xs) + 0.5
    gy = rng.standard_normal(xs)
    out = io.StringIO()
    r = explain.batch_norm(x, eps=1e-3, file=out, grad_output=gy)

    xt = _torch(x, True)
    y = TF.batch_norm(xt, None, None, training=True, eps=1e-3)
    y.backward(_torch(gy))
    dims = [0] + list(range(2, len(xs)))
    var, mean = torch.var_mean(_torch(x), dim=dims, unbiased=False)
    # The affine parameters' gradients, from torch's batch_norm with a
    # weight of ones and a bias of zeros.
    weight, bias = torch.ones(xs[1], dtype=torch.float64, requires_grad=True), torch.zeros(
        xs[1], dtype=torch.float64, requires_grad=True)
    TF.batch_norm(_torch(x), None, None, weight, bias, training=True, eps=1e-3).backward(_torch(gy))

    numpy.testing.assert_allclose(r["mean"], mean.numpy(), rtol=1e-12, atol=1e-12)
    numpy.testing.assert_allclose(r["var"], var.numpy(), rtol=1e-12, atol=1e-12)
    numpy.testing.assert_allclose(r["inv_std"], (1 / torch.sqrt(var + 1e-3)).numpy(), rtol=1e-12)
    numpy.testing.assert_allclose(r["x_hat"], y.detach().numpy(), rtol=1e-10, atol=1e-12)
    numpy.testing.assert_allclose(r["y"], y.detach().numpy(), rtol=1e-10, atol=1e-12)
    numpy.testing.assert_allclose(r["sum_gy"], bias.grad.numpy(), rtol=1e-12, atol=1e-12)
    numpy.testing.assert_allclose(r["sum_gy_xhat"], weight.grad.numpy(), rtol=1e-10, atol=1e-12)
    numpy.testing.assert_allclose(r["gx"], xt.grad.numpy(), rtol=1e-10, atol=1e-12)

    text = out.getvalue()
    for name in ("mean", "var", "inv_std", "x_hat", "gy", "sum_gy", "sum_gy_xhat", "gx"):
        assert f"\n{name}  shape {tuple(r[name].shape)}:" in text


def test_batch_norm_catches_a_wrong_reference(monkeypatch, rng):
    real = mc.functional.batch_norm
    monkeypatch.setattr(mc.functional, "batch_norm", lambda *a, **k: real(*a, **k) * 1.001)
    with pytest.raises(AssertionError, match="step 'x_hat'"):
        explain.batch_norm(rng.standard_normal((4, 2)), file=io.StringIO())


def test_batch_norm_bad_arguments():
    with pytest.raises(ValueError, match=r"more than one value.*\(1, 3\)"):
        explain.batch_norm(numpy.zeros((1, 3)))
    with pytest.raises(ValueError, match=r"\(N, C\) or \(N, C, H, W\), got shape \(2, 3, 4\)"):
        explain.batch_norm(numpy.zeros((2, 3, 4)))
