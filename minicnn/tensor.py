"""The Tensor: an array, a flag saying whether it needs a gradient, and the
node of the graph that created it.

``Tensor.data`` is the raw NumPy (or CuPy) array. (In torch ``.data`` is a
Tensor; here it is the array itself, as in DeZero and Chainer.) Every
method that computes something is a thin call into ``minicnn.functional``,
where the op and its backward live.
"""
import numbers
import sys
import weakref

import numpy

from . import autograd, dtypes
from .backend import get_array_module


class _Holder:
    pass


def _refcount_when_held_once():
    """What ``sys.getrefcount(t.data)`` returns when the attribute is the
    only reference to the object: measured rather than assumed, since
    CPython versions count the call's own reference differently."""
    holder = _Holder()
    holder.data = object()
    return sys.getrefcount(holder.data)


_HELD_ONCE = _refcount_when_held_once()


def _sole_holder(t):
    """Whether nothing but ``t`` can see ``t.data`` change: ``t`` is the
    only holder of the array, and of its base if it is a view (a reshape
    of a whole array, not a window into a larger one, which would keep
    the rest alive)."""
    if sys.getrefcount(t.data) != _HELD_ONCE:
        return False
    if t.data.base is None:
        return True
    return (getattr(t.data.base, "nbytes", -1) == t.data.nbytes and getattr(t.data.base, "base", 0) is None
            and sys.getrefcount(t.data.base) == _HELD_ONCE)


class Tensor:
    """An n-dimensional array that records the ops applied to it.

    Build one with ``mc.tensor(data)`` or the factories (``mc.zeros``,
    ``mc.randn``, ...). ``Tensor(array)`` wraps an existing array as is.
    """

    __array_priority__ = 1000  # so ndarray + Tensor calls Tensor.__radd__

    # Set on the few tensors that need them (class defaults keep _wrap cheap):
    _hooks = None          # a leaf's gradient hooks, {handle id: hook}
    _post_accumulate_hooks = None   # a leaf's hooks run after .grad is updated, {handle id: hook}
    _view_of = None        # the input whose memory a recorded op's output shares
    retains_grad = False   # retain_grad() was called on this non-leaf

    def __init__(self, data, requires_grad=False):
        xp = get_array_module(data)
        if not isinstance(data, xp.ndarray):
            data = numpy.asarray(data)
        self.data = data
        self.grad = None
        self.grad_fn = None
        self._output_index = 0
        self.requires_grad = False
        if requires_grad:
            self.requires_grad_(True)

    @classmethod
    def _wrap(cls, array):
        """Wrap an array without checks (the fast path used by ops)."""
        t = cls.__new__(cls)
        t.data = array
        t.grad = None
        t.grad_fn = None
        t._output_index = 0
        t.requires_grad = False
        return t

    # -- autograd -----------------------------------------------------
    def requires_grad_(self, requires_grad=True):
        """Set ``requires_grad`` in place (floating tensors only)."""
        if requires_grad and self.data.dtype.kind != "f":
            raise TypeError(f"only floating-point tensors can require gradients, got dtype {self.dtype}")
        if not requires_grad and self.grad_fn is not None:
            raise RuntimeError("requires_grad can only be turned off on leaf tensors; use detach()")
        self.requires_grad = bool(requires_grad)
        return self

    @property
    def is_leaf(self):
        """True for tensors not created by a recorded op."""
        return self.grad_fn is None

    def _edge(self):
        """Where a gradient for this tensor must go."""
        return self if self.grad_fn is None else (self.grad_fn, self._output_index)

    def _accumulate(self, g, owned=False):
        """Add gradient ``g`` into ``self.grad``.

        The first gradient becomes ``.grad``. It must not share memory with
        anything else: backward may hand the same array to several inputs
        (``a + b`` sends its gradient to both), and an in-place change of
        one ``.grad`` must not reach another. So it is copied, unless it is
        provably not shared (as torch does): ``owned`` (the engine made it,
        not the caller of backward), no graph is being built, and the
        Tensor ``g`` is the only holder of its array (``_sole_holder``). Skipping that
        copy matters: a ResNet-18 step has 45 MB of weight gradients.

        With ``create_graph=True`` the gradient has a graph of its own:
        keep it (a differentiable clone / sum), so ``.grad`` can be
        differentiated again."""
        if g.requires_grad:
            self.grad = F.clone(g) if self.grad is None else self.grad + g
            return
        if self.grad is None:
            if owned and _sole_holder(g) and not autograd.is_grad_enabled():
                self.grad = Tensor._wrap(g.data)
            else:
                self.grad = Tensor._wrap(g.data.copy())
        else:
            self.grad = Tensor._wrap(self.grad.data + g.data)

    def backward(self, gradient=None, retain_graph=None, create_graph=False):
        """Compute the gradient of this tensor with respect to every leaf.

        ``gradient`` is the upstream gradient (same shape); it may be left
        out only for a tensor with one element. ``retain_graph`` defaults
        to ``create_graph`` (as in torch): a graph of the gradient refers
        to the forward graph's nodes.
        """
        if retain_graph is None:
            retain_graph = create_graph
        if not self.requires_grad:
            raise RuntimeError("backward(): this tensor does not require grad and has no grad_fn")
        gradient = autograd.upstream_gradient(self, gradient, "backward(): ", "the tensor", "gradient")
        autograd.run_backward([self], [gradient], retain_graph=retain_graph, create_graph=create_graph)

    def detach(self):
        """A new leaf sharing this tensor's data, cut off from the graph."""
        return Tensor._wrap(self.data)

    def detach_(self):
        self.grad_fn = None
        self.requires_grad = False
        return self

    def register_hook(self, hook):
        """Call ``hook(grad)`` with the gradient w.r.t. this tensor each time
        one is computed (``backward`` or ``mc.autograd.grad``), once the
        contributions of this pass are summed; a Tensor it returns replaces
        the gradient. Hooks run in the order registered. Returns a handle
        whose ``remove()`` unregisters the hook."""
        from .nn.module import RemovableHandle
        if not self.requires_grad:
            raise RuntimeError("cannot register a hook on a tensor that doesn't require gradient")
        if self.grad_fn is None:
            if self._hooks is None:
                self._hooks = {}
            table = self._hooks
        else:
            node = self.grad_fn
            if node._tensor_hooks is None:
                node._tensor_hooks = {}
            table = node._tensor_hooks.setdefault(self._output_index, {})
        handle = RemovableHandle(table)
        table[handle.id] = hook
        return handle

    def register_post_accumulate_grad_hook(self, hook):
        """Call ``hook(tensor)`` on this leaf right after ``backward`` has
        accumulated the pass's gradient into its ``.grad`` (once per pass,
        all contributions summed, and while backward goes on with the rest
        of the graph), as torch does; ``mc.autograd.grad`` accumulates
        nothing and calls none. Returns a handle whose ``remove()``
        unregisters the hook."""
        from .nn.module import RemovableHandle
        if not self.requires_grad:
            raise RuntimeError("cannot register a hook on a tensor that doesn't require gradient")
        if self.grad_fn is not None:
            raise RuntimeError("post accumulate grad hooks cannot be registered on non-leaf tensors")
        if self._post_accumulate_hooks is None:
            self._post_accumulate_hooks = {}
        handle = RemovableHandle(self._post_accumulate_hooks)
        self._post_accumulate_hooks[handle.id] = hook
        return handle

    def retain_grad(self):
        """Keep this non-leaf tensor's gradient in ``.grad`` after backward
        (accumulated like a leaf's, after its hooks have run); a no-op on a
        leaf, which keeps it anyway."""
        if not self.requires_grad:
            raise RuntimeError("can't retain_grad on Tensor that has requires_grad=False")
        if self.grad_fn is None or self.retains_grad:
            return
        node = self.grad_fn
        if node._retained is None:
            node._retained = {}
        # A weak reference: the node must not keep its output alive (nor
        # make a Tensor -> node -> Tensor cycle).
        node._retained[self._output_index] = weakref.ref(self)
        self.retains_grad = True

    # -- attributes ---------------------------------------------------
    @property
    def shape(self):
        return self.data.shape

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def ndim(self):
        return self.data.ndim

    def dim(self):
        return self.data.ndim

    def size(self, dim=None):
        """The shape, or its length along ``dim``."""
        if dim is None:
            return self.data.shape
        return self.data.shape[_check_dim(dim, self.ndim, "size")]

    def numel(self):
        return int(self.data.size)

    def __len__(self):
        if self.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.data.shape[0]

    @property
    def device(self):
        from .device import device_of
        return device_of(self.data)

    @property
    def is_cuda(self):
        return self.device.type == "cuda"

    def numpy(self):
        """The data as a NumPy array (shared with the tensor on the CPU)."""
        if self.requires_grad:
            raise RuntimeError("Can't call numpy() on a tensor that requires grad. Use tensor.detach().numpy()")
        if get_array_module(self.data) is not numpy:
            raise TypeError("numpy() on a cuda tensor: call .cpu() first")
        return self.data

    def tolist(self):
        return self.numpy_copy().tolist()

    def numpy_copy(self):
        """A NumPy copy of the data, from any device, graph or not."""
        xp = get_array_module(self.data)
        return self.data.get() if xp is not numpy else numpy.array(self.data)

    def item(self):
        if self.data.size != 1:
            raise ValueError(f"item(): only one-element tensors can be converted to Python scalars, shape {self.shape}")
        return self.data.reshape(()).item()

    def __float__(self):
        return float(self.item())

    def __int__(self):
        return int(self.item())

    def __bool__(self):
        if self.data.size != 1:
            raise RuntimeError(f"the truth value of a tensor with {self.data.size} elements is ambiguous")
        return bool(self.item())

    def __index__(self):
        if self.dtype.kind not in "iu" or self.data.size != 1:
            raise TypeError("only integer tensors of a single element can be used as an index")
        return int(self.item())

    def __array__(self, dtype=None, copy=None):
        a = self.numpy_copy() if get_array_module(self.data) is not numpy else self.data
        return a if dtype is None else a.astype(dtype)

    def __hash__(self):
        return id(self)

    def __repr__(self):
        body = numpy.array2string(self.numpy_copy(), separator=", ", prefix="tensor(")
        extras = []
        if self.dtype not in (dtypes.float32, dtypes.int64, dtypes.bool_):
            extras.append(f"dtype={self.dtype}")
        if self.grad_fn is not None:
            extras.append(f"grad_fn={self.grad_fn!r}")
        elif self.requires_grad:
            extras.append("requires_grad=True")
        return "tensor(" + ", ".join([body] + extras) + ")"

    # -- conversion ---------------------------------------------------
    def to(self, *args, **kwargs):
        """``to(dtype)``, ``to(device)`` or ``to(device, dtype)``."""
        from .device import Device, to_device
        dtype = kwargs.pop("dtype", None)
        device = kwargs.pop("device", None)
        if kwargs:
            raise TypeError(f"to() got unexpected arguments {sorted(kwargs)}")
        for a in args:
            if isinstance(a, (Device,)) or (isinstance(a, str) and a.split(":")[0] in ("cpu", "cuda")):
                device = a
            elif isinstance(a, Tensor):
                device, dtype = a.device, a.dtype
            else:
                dtype = a
        out = self
        if device is not None:
            out = to_device(out, device)
        if dtype is not None:
            dtype = dtypes.as_dtype(dtype)
            if dtype != out.dtype:
                out = F.cast(out, dtype)
        return out

    def cpu(self):
        return self.to("cpu")

    def cuda(self, device=None):
        return self.to("cuda" if device is None else f"cuda:{int(device)}")

    def float(self):
        return self.to(dtypes.float32)

    def double(self):
        return self.to(dtypes.float64)

    def long(self):
        return self.to(dtypes.int64)

    def int(self):
        return self.to(dtypes.int32)

    def bool(self):
        return self.to(dtypes.bool_)

    def type(self, dtype):
        return self.to(dtype)

    def clone(self):
        return F.clone(self)

    # -- in-place ops (minicnn/functional/inplace.py) -------------------
    @property
    def _version(self):
        """How many in-place ops changed this tensor's memory (torch's
        ``_version``; shared with views and ``detach()``)."""
        return autograd.version_of(self.data)

    def add_(self, other, *, alpha=1):
        """self += alpha * other, in place."""
        return _inplace.apply_inplace(self, "add_", lambda s, o: F.add(s, o, alpha=alpha), (other,))

    def sub_(self, other, *, alpha=1):
        """self -= alpha * other, in place."""
        return _inplace.apply_inplace(self, "sub_", lambda s, o: F.sub(s, o, alpha=alpha), (other,))

    def mul_(self, other):
        """self *= other, in place."""
        return _inplace.apply_inplace(self, "mul_", F.mul, (other,), needs_original=True)

    def div_(self, other, *, rounding_mode=None):
        """self /= other, in place (true division only)."""
        if rounding_mode is not None:
            raise ValueError(f"div_: rounding_mode={rounding_mode!r} is not supported; only None (true division)")
        return _inplace.apply_inplace(self, "div_", F.div, (other,), needs_original=True)

    def clamp_(self, min=None, max=None):
        """Clip to [min, max] in place."""
        return _inplace.apply_inplace(self, "clamp_", lambda s, lo, hi: F.clamp(s, lo, hi), (min, max))

    clip_ = clamp_

    def relu_(self):
        """max(self, 0) in place."""
        return _inplace.apply_inplace(self, "relu_", F.relu)

    def masked_fill_(self, mask, value):
        """Write ``value`` (a number or a 0-d tensor) where the bool
        ``mask`` (broadcastable to self) is True, in place."""
        if not isinstance(mask, Tensor) or mask.dtype != dtypes.bool_:
            raise TypeError(f"masked_fill_: mask must be a bool Tensor, got "
                            f"{mask.dtype if isinstance(mask, Tensor) else type(mask).__name__}")
        if isinstance(value, Tensor) and value.ndim != 0:
            raise ValueError(f"masked_fill_: value must be a number or a 0-dim tensor, got shape {value.shape}")
        return _inplace.apply_inplace(self, "masked_fill_", lambda s, v: F.where(mask, v, s), (value,))

    def zero_(self):
        """Set every element to 0, in place."""
        return _inplace.overwrite(self, 0, "zero_")

    def fill_(self, value):
        """Set every element to ``value`` (a number or a 0-d tensor), in place."""
        if isinstance(value, Tensor) and value.ndim != 0:
            raise ValueError(f"fill_: value must be a number or a 0-dim tensor, got shape {value.shape}")
        return _inplace.overwrite(self, value, "fill_")

    def copy_(self, src, non_blocking=False):
        """Copy ``src`` (broadcastable to self; any dtype) into self, in place."""
        if isinstance(src, Tensor) and src.device != self.device:
            src = src.to(self.device)
        return _inplace.overwrite(self, src, "copy_")

    def __setitem__(self, key, value):
        _inplace.setitem(self, key, value)

    # -- operators ----------------------------------------------------
    def __add__(self, other):
        return F.add(self, other)

    def __radd__(self, other):
        return F.add(other, self)

    def __sub__(self, other):
        return F.sub(self, other)

    def __rsub__(self, other):
        return F.sub(other, self)

    def __mul__(self, other):
        return F.mul(self, other)

    def __rmul__(self, other):
        return F.mul(other, self)

    def __truediv__(self, other):
        return F.div(self, other)

    def __rtruediv__(self, other):
        return F.div(other, self)

    def __pow__(self, other):
        return F.pow(self, other)

    def __rpow__(self, other):
        return F.pow(other, self)

    def __neg__(self):
        return F.neg(self)

    def __pos__(self):
        return self

    def __abs__(self):
        return F.abs(self)

    def __matmul__(self, other):
        return F.matmul(self, other)

    def __rmatmul__(self, other):
        return F.matmul(other, self)

    def __getitem__(self, key):
        return F.getitem(self, key)

    # Comparisons give bool tensors and carry no gradient.
    def __eq__(self, other):
        return F.compare("equal", self, other)

    def __ne__(self, other):
        return F.compare("not_equal", self, other)

    def __lt__(self, other):
        return F.compare("less", self, other)

    def __le__(self, other):
        return F.compare("less_equal", self, other)

    def __gt__(self, other):
        return F.compare("greater", self, other)

    def __ge__(self, other):
        return F.compare("greater_equal", self, other)

    def __invert__(self):
        return F.logical_not(self)

    def __and__(self, other):
        return F.compare("logical_and", self, other)

    def __or__(self, other):
        return F.compare("logical_or", self, other)

    # -- views of the functional API ----------------------------------
    @property
    def T(self):
        return F.permute(self, tuple(reversed(range(self.ndim))))

    def matmul(self, other):
        return F.matmul(self, other)

    def add(self, other):
        return F.add(self, other)

    def sub(self, other):
        return F.sub(self, other)

    def mul(self, other):
        return F.mul(self, other)

    def div(self, other):
        return F.div(self, other)

    def pow(self, exponent):
        return F.pow(self, exponent)

    def neg(self):
        return F.neg(self)

    def exp(self):
        return F.exp(self)

    def log(self):
        return F.log(self)

    def sqrt(self):
        return F.sqrt(self)

    def abs(self):
        return F.abs(self)

    def clamp(self, min=None, max=None):
        return F.clamp(self, min, max)

    clip = clamp

    def maximum(self, other):
        return F.maximum(self, other)

    def minimum(self, other):
        return F.minimum(self, other)

    def sum(self, dim=None, keepdim=False):
        return F.sum(self, dim, keepdim)

    def mean(self, dim=None, keepdim=False):
        return F.mean(self, dim, keepdim)

    def var(self, dim=None, unbiased=None, keepdim=False, *, correction=None):
        return F.var(self, dim, unbiased, keepdim, correction=correction)

    def std(self, dim=None, unbiased=None, keepdim=False, *, correction=None):
        return F.std(self, dim, unbiased, keepdim, correction=correction)

    def max(self, dim=None, keepdim=False):
        return F.max(self, dim, keepdim)

    def min(self, dim=None, keepdim=False):
        return F.min(self, dim, keepdim)

    def amax(self, dim=(), keepdim=False):
        return F.amax(self, dim, keepdim)

    def amin(self, dim=(), keepdim=False):
        return F.amin(self, dim, keepdim)

    def argmax(self, dim=None, keepdim=False):
        return F.argmax(self, dim, keepdim)

    def topk(self, k, dim=-1, largest=True, sorted=True):
        return F.topk(self, k, dim, largest, sorted)

    def argmin(self, dim=None, keepdim=False):
        return F.argmin(self, dim, keepdim)

    def reshape(self, *shape):
        return F.reshape(self, _shape_args(shape))

    def view(self, *shape):
        return F.view(self, _shape_args(shape))

    def view_as(self, other):
        return F.view(self, other.shape)

    def reshape_as(self, other):
        return F.reshape(self, other.shape)

    def flatten(self, start_dim=0, end_dim=-1):
        return F.flatten(self, start_dim, end_dim)

    def permute(self, *dims):
        return F.permute(self, _shape_args(dims))

    def transpose(self, dim0, dim1):
        return F.transpose(self, dim0, dim1)

    def t(self):
        if self.ndim > 2:
            raise ValueError(f"t() expects a tensor with <= 2 dims, got shape {self.shape}")
        return self.T

    def unsqueeze(self, dim):
        return F.unsqueeze(self, dim)

    def squeeze(self, dim=None):
        return F.squeeze(self, dim)

    def expand(self, *sizes):
        return F.expand(self, _shape_args(sizes))

    def expand_as(self, other):
        return F.expand(self, other.shape)

    def contiguous(self):
        return F.contiguous(self)

    def is_contiguous(self):
        return bool(self.data.flags.c_contiguous)

    def split(self, split_size_or_sections, dim=0):
        return F.split(self, split_size_or_sections, dim)

    def chunk(self, chunks, dim=0):
        return F.chunk(self, chunks, dim)

    def relu(self):
        return F.relu(self)

    def sigmoid(self):
        return F.sigmoid(self)

    def tanh(self):
        return F.tanh(self)

    def softmax(self, dim):
        return F.softmax(self, dim)

    def log_softmax(self, dim):
        return F.log_softmax(self, dim)


def _shape_args(args):
    """Accept both ``f(2, 3)`` and ``f((2, 3))``."""
    if len(args) == 1 and isinstance(args[0], (tuple, list)):
        return tuple(args[0])
    return tuple(args)


def _check_dim(dim, ndim, name="dim"):
    """Normalize a possibly negative dim; ValueError naming it when out of range."""
    if not isinstance(dim, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(dim).__name__}")
    lo, hi = -max(ndim, 1), max(ndim, 1) - 1
    if not lo <= dim <= hi:
        raise ValueError(f"{name}={dim} is out of range for a tensor with {ndim} dims (expected {lo}..{hi})")
    return dim % max(ndim, 1)


def _index_arrays(key):
    """Replace Tensors inside an index by their arrays."""
    if isinstance(key, Tensor):
        return key.data
    if isinstance(key, tuple):
        return tuple(k.data if isinstance(k, Tensor) else k for k in key)
    return key


autograd.Tensor = Tensor
from . import functional as F  # noqa: E402  (the ops need Tensor defined first)
from .functional import inplace as _inplace  # noqa: E402
