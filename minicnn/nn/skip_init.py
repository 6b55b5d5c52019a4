"""Build modules without initialising their weights, for counting.

Counting a model's parameters or tracing its shapes needs the model, not
its weights, yet building one spends most of its time initialising them:
``convnext_large`` draws 198 million random numbers, ``regnet_y_128gf``
644 million (seconds, and gigabytes written). Inside ``no_init()``:

every initialiser of ``mc.nn.init`` (``kaiming_uniform_``, ``normal_``,
``constant_``, ...) returns its tensor untouched. New parameters are
allocated with ``numpy.zeros`` (``nn._utils.new_array``, always): the
operating system hands out zeroed pages only when they are first written,
so a parameter nobody writes to costs no memory.

The parameters of a module built this way hold zeros (not the model's
initialisation); shapes, names, counts and ``state_dict`` keys are those
of a normally built module, and ``load_state_dict`` fills it as usual. It
is torch's ``torch.nn.utils.skip_init`` / meta-device idea, done the NumPy
way.

``no_init`` swaps functions of ``minicnn.nn.init`` for the duration of
the block, so it is not thread-safe: a module built in another thread
meanwhile is not initialised either.
"""
import contextlib

from . import init

#: The initialisers of ``mc.nn.init`` that fill a tensor in place.
_INITIALISERS = ("uniform_", "normal_", "trunc_normal_", "constant_", "zeros_", "ones_",
                 "xavier_uniform_", "xavier_normal_", "kaiming_uniform_", "kaiming_normal_")


def _leave_as_is(tensor, *args, **kwargs):
    """An initialiser that does nothing (inside ``no_init``)."""
    return tensor


@contextlib.contextmanager
def no_init():
    """Context manager: modules built inside get zero parameters instead
    of initialised ones (see the module docstring)::

        from minicnn.nn.skip_init import no_init
        with no_init():
            model = mc.models.convnext_large()   # 0.01 s instead of 6 s
    """
    saved = {name: getattr(init, name) for name in _INITIALISERS}
    try:
        for name in _INITIALISERS:
            setattr(init, name, _leave_as_is)
        yield
    finally:
        for name, fn in saved.items():
            setattr(init, name, fn)


def skip_init(module_cls, *args, **kwargs):
    """``module_cls(*args, **kwargs)`` built inside ``no_init()`` (torch's
    ``torch.nn.utils.skip_init``): its parameters hold zeros."""
    with no_init():
        return module_cls(*args, **kwargs)
