"""The torch-parity helper: run the same op in minicnn and torch on the same
inputs and compare the output and every input gradient.

    check_parity(lambda x, w: F.conv2d(x, w, padding=1),
                 lambda x, w: torch.nn.functional.conv2d(x, w, padding=1),
                 [x_array, w_array], dtype=numpy.float64)

* Float arrays become tensors that require grad (in both frameworks);
  integer / bool arrays become plain tensors (targets, masks); anything
  else (ints, tuples) is passed through unchanged.
* The upstream gradient is random (seeded), never ones: ones hide errors
  that cancel in a sum.
* ``noncontiguous=True`` hands minicnn the same values in non-contiguous
  memory (a transposed copy, transposed back), as data from a permute or
  a slice would be.
* Tolerances: |a - e| <= atol + rtol |e| with atol scaled by the largest
  |e|. float64: rtol 1e-10; float32: rtol 1e-5 (ops that accumulate long
  sums, like conv, pass a looser rtol).
"""
import numpy
import torch

import minicnn as mc
from minicnn.autograd import run_backward

TOLERANCES = {numpy.float64: (1e-10, 1e-12), numpy.float32: (1e-5, 1e-6)}


def noncontiguous(array):
    """The same values as ``array`` in memory that is not C-contiguous."""
    if array.ndim == 0:
        return array
    # Every other element of a buffer twice as long in the last dim.
    buffer = numpy.empty(array.shape[:-1] + (array.shape[-1] * 2,), dtype=array.dtype)
    view = buffer[..., ::2]
    view[...] = array
    assert not view.flags.c_contiguous or array.size <= 1
    return view


def assert_close(actual, expected, rtol, atol, what):
    """Elementwise |a - e| <= atol * max(1, max|e|) + rtol |e|, with a message
    naming the worst element."""
    actual = numpy.asarray(actual)
    expected = numpy.asarray(expected)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != torch's {expected.shape}"
    if actual.size == 0:
        return
    scale = max(1.0, float(numpy.nanmax(numpy.abs(expected)))) if numpy.isfinite(expected).any() else 1.0
    err = numpy.abs(actual.astype(numpy.float64) - expected.astype(numpy.float64))
    bound = atol * scale + rtol * numpy.abs(expected.astype(numpy.float64))
    same_nonfinite = (~numpy.isfinite(expected)) & (
        (actual == expected) | (numpy.isnan(actual) & numpy.isnan(expected)))
    bad = (err > bound) & ~same_nonfinite
    if bad.any():
        k = numpy.unravel_index(numpy.argmax(numpy.where(bad, err - bound, -numpy.inf)), err.shape)
        raise AssertionError(
            f"{what}: {int(bad.sum())} of {err.size} elements differ; worst at {k}: "
            f"minicnn {actual[k]!r}, torch {expected[k]!r}, |diff| {err[k]:.3g} > {bound[k]:.3g}")


def _as_tuple(out):
    return tuple(out) if isinstance(out, (tuple, list)) else (out,)


def check_parity(mc_fn, torch_fn, inputs, dtype=numpy.float64, rtol=None, atol=None,
                 noncontiguous_inputs=False, seed=0, grad=True, constant_inputs=()):
    """Compare ``mc_fn(*mc_inputs)`` with ``torch_fn(*torch_inputs)``,
    forward and (if ``grad``) backward. Float inputs whose index is in
    ``constant_inputs`` (class weights, say) do not require grad. Returns
    the minicnn outputs."""
    dtype = numpy.dtype(dtype).type
    default_rtol, default_atol = TOLERANCES[dtype]
    rtol = default_rtol if rtol is None else rtol
    atol = default_atol if atol is None else atol
    rng = numpy.random.default_rng(seed)

    mc_inputs, torch_inputs, differentiable = [], [], []
    for i, a in enumerate(inputs):
        if isinstance(a, numpy.ndarray):
            is_float = a.dtype.kind == "f"
            a = a.astype(dtype) if is_float else a
            mine = noncontiguous(a) if noncontiguous_inputs else a.copy()
            t_mc = mc.from_numpy(mine)
            t_torch = torch.from_numpy(a.copy())
            if is_float and grad and i not in constant_inputs:
                t_mc.requires_grad_(True)
                t_torch.requires_grad_(True)
                differentiable.append(i)
            mc_inputs.append(t_mc)
            torch_inputs.append(t_torch)
        else:
            mc_inputs.append(a)
            torch_inputs.append(a)

    mc_out = _as_tuple(mc_fn(*mc_inputs))
    torch_out = _as_tuple(torch_fn(*torch_inputs))
    assert len(mc_out) == len(torch_out), f"{len(mc_out)} outputs, torch has {len(torch_out)}"
    for k, (m, t) in enumerate(zip(mc_out, torch_out)):
        assert isinstance(m, mc.Tensor), f"output {k} is a {type(m).__name__}, not a Tensor"
        t_np = t.detach().numpy()
        assert m.dtype == t_np.dtype, f"output {k}: dtype {m.dtype} != torch's {t_np.dtype}"
        assert_close(m.numpy_copy(), t_np, rtol, atol, f"output {k}")

    if not grad or not differentiable:
        return mc_out
    pairs = [(m, t) for m, t in zip(mc_out, torch_out) if t.requires_grad]
    upstream = [rng.standard_normal(t.shape).astype(dtype) for _, t in pairs]
    run_backward([m for m, _ in pairs], [mc.from_numpy(g.copy()) for g in upstream])
    torch.autograd.backward([t for _, t in pairs], [torch.from_numpy(g) for g in upstream])
    for i in differentiable:
        m_grad, t_grad = mc_inputs[i].grad, torch_inputs[i].grad
        t_np = numpy.zeros(torch_inputs[i].shape, dtype) if t_grad is None else t_grad.numpy()
        assert m_grad is not None or not t_np.any(), f"input {i}: no gradient, torch has one"
        m_np = numpy.zeros_like(t_np) if m_grad is None else m_grad.numpy_copy()
        assert m_np.dtype == t_np.dtype, f"input {i}: gradient dtype {m_np.dtype} != {t_np.dtype}"
        assert_close(m_np, t_np, rtol, atol, f"gradient of input {i}")
    return mc_out


def gradcheck_inputs(arrays, requires_grad=None):
    """float64 minicnn tensors for ``mc.gradcheck`` (float arrays require grad)."""
    out = []
    for k, a in enumerate(arrays):
        if isinstance(a, numpy.ndarray) and a.dtype.kind == "f":
            rg = True if requires_grad is None else requires_grad[k]
            out.append(mc.tensor(a.astype(numpy.float64), requires_grad=rg))
        elif isinstance(a, numpy.ndarray):
            out.append(mc.tensor(a))
        else:
            out.append(a)
    return out


def case_table_tests(cases):
    """The three standard tests of a table ``{name: (mc_fn, torch_fn, inputs)}``:
    parity in float64 and float32, parity with non-contiguous inputs, and a
    float64 gradcheck. A test module binds them to names pytest collects:

        test_matches_torch, test_noncontiguous, test_gradcheck = case_table_tests(CASES)
    """
    import pytest

    names = sorted(cases)

    @pytest.mark.parametrize("name", names)
    @pytest.mark.parametrize("dtype", [numpy.float64, numpy.float32])
    def test_matches_torch(name, dtype):
        mc_fn, torch_fn, inputs = cases[name]
        check_parity(mc_fn, torch_fn, inputs, dtype=dtype)

    @pytest.mark.parametrize("name", names)
    def test_noncontiguous(name):
        mc_fn, torch_fn, inputs = cases[name]
        check_parity(mc_fn, torch_fn, inputs, noncontiguous_inputs=True)

    @pytest.mark.parametrize("name", names)
    def test_gradcheck(name):
        mc_fn, _, inputs = cases[name]
        assert mc.gradcheck(mc_fn, gradcheck_inputs(inputs))

    return test_matches_torch, test_noncontiguous, test_gradcheck


def randomize_batch_norms(model, generator, spread=0.1):
    """Non-trivial BN parameters and running statistics of a torch model,
    so eval mode really uses them: bias and mean drawn with standard
    deviation ``spread``, weight and variance around 1."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5, generator=generator)
                m.bias.normal_(0.0, spread, generator=generator)
                m.running_mean.normal_(0.0, spread, generator=generator)
                m.running_var.uniform_(0.5, 2.0, generator=generator)
