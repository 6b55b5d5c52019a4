"""QuantStub and DeQuantStub: where a float model's quantized region
begins and ends. Both are identities until ``convert`` turns them into
``Quantize`` (float -> quint8, with the scale its observer chose) and
``DeQuantize`` (quint8 -> float)."""
from ...nn.module import Module


class _Stub(Module):
    """An identity that remembers an optional ``qconfig`` for ``prepare``."""

    def __init__(self, qconfig=None):
        super().__init__()
        if qconfig is not None:
            self.qconfig = qconfig

    def forward(self, x):
        return x


class QuantStub(_Stub):
    """Marks the start of a quantized region (identity before convert)."""


class DeQuantStub(_Stub):
    """Marks the end of a quantized region (identity before convert)."""
