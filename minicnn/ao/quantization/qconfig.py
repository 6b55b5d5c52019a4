"""QConfig: which observers watch a module's activations and its weight.

A ``QConfig`` holds two observer *factories* (classes or
``Observer.with_args(...)``), called once per module by ``prepare``, so
every module gets observers of its own.
"""
import collections

from .observer import (HistogramObserver, default_observer, default_per_channel_weight_observer,
                       default_weight_observer)


class QConfig(collections.namedtuple("QConfig", ["activation", "weight"])):
    """``QConfig(activation=..., weight=...)``: observer factories, not
    observer instances (``MinMaxObserver`` or
    ``MinMaxObserver.with_args(...)``, not ``MinMaxObserver()``)."""

    def __new__(cls, activation, weight):
        for name, factory in (("activation", activation), ("weight", weight)):
            if not callable(factory) or hasattr(factory, "forward") and not isinstance(factory, type):
                raise TypeError(f"QConfig: {name} must be an observer class or Observer.with_args(...), "
                                f"not an observer instance ({factory!r})")
        return super().__new__(cls, activation, weight)


default_qconfig = QConfig(activation=default_observer, weight=default_weight_observer)
default_per_channel_qconfig = QConfig(activation=default_observer, weight=default_per_channel_weight_observer)


def get_default_qconfig(backend="x86", version=0):
    """torch's post-training qconfig for ``backend``.

    ``"x86"`` and ``"fbgemm"`` (the same qconfig, as in torch): a
    :class:`HistogramObserver` with ``reduce_range=True`` (7-bit
    activations, see observer.py) and per-channel symmetric qint8 weights.
    ``"qnnpack"``: full-range activations and one symmetric weight scale
    per tensor. ``"onednn"``: full-range activations, per-channel weights.

    The backend only picks observers: minicnn has one integer engine, and
    its arithmetic (int32 accumulation, requantization, rounding) is
    fbgemm's, so its int8 outputs equal torch's under
    ``torch.backends.quantized.engine = "fbgemm"``. torch's ``"x86"``
    engine may run a quantized conv through oneDNN instead (it does on
    CPUs with AVX512-VNNI), whose requantization rounds some ties
    differently.
    """
    if version != 0:
        raise ValueError(f"get_default_qconfig: only version 0 exists, got {version!r}")
    if backend in ("x86", "fbgemm"):
        return QConfig(activation=HistogramObserver.with_args(reduce_range=True),
                       weight=default_per_channel_weight_observer)
    if backend == "qnnpack":
        return QConfig(activation=HistogramObserver.with_args(reduce_range=False), weight=default_weight_observer)
    if backend == "onednn":
        return QConfig(activation=HistogramObserver.with_args(reduce_range=False),
                       weight=default_per_channel_weight_observer)
    raise ValueError(f"get_default_qconfig: backend must be one of 'x86', 'fbgemm', 'qnnpack', 'onednn', "
                     f"got {backend!r}")
