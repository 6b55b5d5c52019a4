"""exp(t) of float32 t <= 0, written out so that a loop of it vectorizes.

Why
---
Numba compiles ``math.exp`` to a call into the C library, one element at
a time (Intel's SVML, which has vector versions, is not installed with
Numba): sigmoid and SiLU then took a NumPy ``exp`` pass over a temporary
array before their own pass (``activation.py``). Written as plain
arithmetic, exp inlines into the caller's loop, and LLVM computes it on a
whole vector of elements at once, in registers, with no temporary.

How
---
The textbook method (Cody and Waite's range reduction, then a polynomial):

    t = k ln2 + r,   k = round(t / ln2),   |r| <= ln2 / 2
    exp(t) = 2^k exp(r)

* k is rounded by adding and subtracting 1.5 * 2^23 (``ROUNDER``): the
  sum has no bits below the units, so it is t / ln2 rounded to the
  nearest integer, where ``floor`` would be a call into the C library per
  element and stop the loop from vectorizing;
* k ln2 is subtracted in two parts, ``LN2_HI`` (few enough bits that k
  times it is exact for every k here) and ``LN2_LO``, so r keeps its
  precision;
* exp(r) is its Taylor polynomial of degree 7 (Horner's rule): the first
  term left out, r^8 / 8!, is below 5e-9 for |r| <= 0.347, a tenth of
  float32's unit roundoff;
* 2^k is built from its bits, the exponent field k + 127 of an IEEE
  float32 (``_float32_from_bits``, a bit cast). So that the results below
  2^-126 (t < -87.3) come out as the denormals they are, the scale is
  2^(k + 64) times the constant 2^-64, one rounding.

t is clamped at ``MIN_T`` = -104, below which exp(t) rounds to 0 in
float32 anyway. Accuracy against float64's exp, over float32 t in [-104,
0]: within 1 unit in the last place (``tests/kernels/test_exp.py``).
"""
import numba
import numpy
from llvmlite import ir
from numba.core import types
from numba.extending import intrinsic

from .loops import JIT

LOG2E = numpy.float32(1.4426950408889634)
LN2_HI = numpy.float32(0.693359375)          # 11 significant bits: k * LN2_HI is exact for |k| < 2^13
LN2_LO = numpy.float32(-2.12194440e-4)       # ln 2 - LN2_HI
MIN_T = numpy.float32(-104.0)
ROUNDER = numpy.float32(1.5 * 2 ** 23)
TWO_TO_MINUS_64 = numpy.float32(2.0 ** -64)
#: 1/n! for n = 2 ... 7, the Taylor coefficients of exp after 1 + r.
C2, C3, C4, C5, C6, C7 = (numpy.float32(1 / f) for f in (2, 6, 24, 120, 720, 5040))
#: Numba's options for a loop that calls ``exp_nonpositive``: ``JIT``'s,
#: and "contract", so that LLVM fuses the polynomial's multiply and add
#: into one FMA instruction where the CPU has one (one rounding, not two).
#: The polynomial is a chain of dependent steps: a loop of exp alone took
#: 0.69 ns an element without FMA, 0.43 with; SiLU 0.98 and 0.71 (one
#: thread, Zen 3, 600K floats).
EXP_JIT = dict(JIT, fastmath={"contract"})


@intrinsic
def _float32_from_bits(typingctx, bits):
    """The float32 whose IEEE bits are the int32 ``bits``."""
    if bits != types.int32:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())
    return types.float32(types.int32), codegen


@numba.njit(inline="always")
def exp_nonpositive(t):
    """exp(t) for a float32 t <= 0 (also right, to the same accuracy, for
    0 < t < 63 ln 2), as a float32."""
    t = max(t, MIN_T)
    k = (t * LOG2E + ROUNDER) - ROUNDER
    r = (t - k * LN2_HI) - k * LN2_LO
    p = numpy.float32(1) + r * (numpy.float32(1) + r * (C2 + r * (C3 + r * (C4 + r * (C5 + r * (C6 + r * C7))))))
    scale = _float32_from_bits(numpy.int32((numpy.int32(k) + 127 + 64) << 23))
    return p * scale * TWO_TO_MINUS_64
