"""Busy-waiting on a flag, outside the GIL: how ``threads.py``'s workers
pick up work without going to sleep between two calls.

A thread that blocks on a lock sleeps, and if its core then has nothing
else to do, a virtual machine halts the core. Waking it again takes the
host 0.05-0.3 ms (measured on this 2-core VM), against ~0.02 ms to hand
work to a thread that is still running. OpenMP runtimes (torch's) keep
their threads spinning for a while after each parallel region for the
same reason.

``spin_until(flags, i, target, spins)`` polls ``flags[i]`` until it
reaches ``target`` or ``spins`` polls have passed. It is compiled
``nogil``: while one thread spins, the others run Python. Each poll is
an *atomic* load, so that LLVM reloads the flag every time instead of
hoisting the load out of the loop (another thread changes it), followed
by x86's ``pause`` hint, which tells the core it is a spin loop (it
yields the core's resources to a hyperthread sibling and saves power).
"""
import platform

import numba
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

_X86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")


@intrinsic
def _load_acquire(typingctx, flags, index):
    """flags[index] (int64), read with an atomic acquire load."""
    sig = types.int64(flags, index)

    def codegen(context, builder, signature, args):
        array = context.make_array(signature.args[0])(context, builder, args[0])
        pointer = builder.gep(array.data, [args[1]])
        return builder.load_atomic(pointer, "acquire", 8)
    return sig, codegen


@intrinsic
def _pause(typingctx):
    """x86's spin-loop hint (nothing on other machines)."""
    sig = types.void()

    def codegen(context, builder, signature, args):
        if _X86:
            pause = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(ir.VoidType(), []), "llvm.x86.sse2.pause")
            builder.call(pause, [])
        return context.get_dummy_value()
    return sig, codegen


@numba.njit(nogil=True, cache=True)
def spin_until(flags, index, target, spins):
    """Whether flags[index] (int64) reached ``target`` within ``spins``
    polls."""
    for _ in range(spins):
        if _load_acquire(flags, index) >= target:
            return True
        _pause()
    return _load_acquire(flags, index) >= target
