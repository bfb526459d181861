"""A software prefetch for numba loops that read rows of large arrays in an order they know ahead.

``prefetch(a, i)`` asks the processor to start loading ``a[i]`` (a 1-D array's element, or the
whole row ``i`` of a 2-D C-contiguous array: every cache line from its first to its last element)
into the caches and returns at once. It has no effect on results: a prefetch reads nothing into
the program and never faults (the index is not bounds-checked). Loops call it a few iterations
before they use a row, so the cache misses of a table too large for the caches overlap with the
work in between.

numba's on-disk cache keys a compiled kernel on its own source file only: after editing this module,
touch the modules whose kernels call it (or empty the cache folder, see :mod:`training.kernels`).
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

_READ, _KEEP_IN_ALL_LEVELS, _DATA = 0, 3, 1  # llvm.prefetch(ptr, rw, locality, cache type)
_LINE = 64  # bytes per cache line on the processors this runs on (x86-64, most ARM64)


@intrinsic
def prefetch(typingctx, array, index):
    """Starts loading ``array[index]`` (1-D) or row ``index`` (2-D) into the caches; see the module doc."""
    if not isinstance(array, types.Array) or array.ndim not in (1, 2) or not isinstance(index, types.Integer):
        return None
    sig = types.void(array, index)

    def codegen(context, builder, signature, args):
        arrty = signature.args[0]
        arr = context.make_array(arrty)(context, builder, args[0])
        i = context.cast(builder, args[1], signature.args[1], types.intp)
        i32 = ir.IntType(32)

        def fetch(index):
            ptr = cgutils.get_item_pointer(context, builder, arrty, arr, index, wraparound=False)
            fnty = ir.FunctionType(ir.VoidType(), [ptr.type, i32, i32, i32])
            fn = builder.module.declare_intrinsic("llvm.prefetch", [ptr.type], fnty)
            builder.call(fn, [ptr, i32(_READ), i32(_KEEP_IN_ALL_LEVELS), i32(_DATA)])

        if arrty.ndim == 1:
            fetch([i])
            return context.get_dummy_value()

        def intp(v):
            return context.get_constant(types.intp, v)

        width = cgutils.unpack_tuple(builder, arr.shape)[1]
        per_line = intp(max(1, _LINE // context.get_abi_sizeof(context.get_data_type(arrty.dtype))))
        with cgutils.for_range_slice(builder, intp(0), width, per_line) as (k, _):
            fetch([i, k])
        fetch([i, builder.sub(width, intp(1))])  # the last line, when the row does not start on a line
        return context.get_dummy_value()

    return sig, codegen
