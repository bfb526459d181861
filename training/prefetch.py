"""A software prefetch for numba loops that read parts of large arrays in an order they know ahead.

``prefetch(a, start, count)`` asks the processor to start loading ``a[start : start + count]`` of a
1-D C-contiguous array (every cache line from its first to its last element) into the caches and
returns at once. It has no effect on results: a prefetch reads nothing into the program and never
faults (the span is not bounds-checked). Loops call it a few iterations before they use the span,
so the cache misses of a table too large for the caches overlap with the work in between.

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
def prefetch(typingctx, array, start, count):
    """Starts loading ``array[start : start + count]`` (1-D, C-contiguous) into the caches; see the module doc."""
    if not (isinstance(array, types.Array) and array.ndim == 1 and array.layout == "C"):
        return None
    if not (isinstance(start, types.Integer) and isinstance(count, types.Integer)):
        return None
    sig = types.void(array, start, count)

    def codegen(context, builder, signature, args):
        arrty = signature.args[0]
        arr = context.make_array(arrty)(context, builder, args[0])
        first = context.cast(builder, args[1], signature.args[1], types.intp)
        end = builder.add(first, context.cast(builder, args[2], signature.args[2], types.intp))
        i32 = ir.IntType(32)

        def fetch(index):
            ptr = cgutils.get_item_pointer(context, builder, arrty, arr, [index], wraparound=False)
            fnty = ir.FunctionType(ir.VoidType(), [ptr.type, i32, i32, i32])
            fn = builder.module.declare_intrinsic("llvm.prefetch", [ptr.type], fnty)
            builder.call(fn, [ptr, i32(_READ), i32(_KEEP_IN_ALL_LEVELS), i32(_DATA)])

        per_line = context.get_constant(types.intp, max(1, _LINE // context.get_abi_sizeof(context.get_data_type(arrty.dtype))))
        with cgutils.for_range_slice(builder, first, end, per_line) as (k, _):
            fetch(k)
        last = builder.sub(end, context.get_constant(types.intp, 1))
        with builder.if_then(builder.icmp_signed(">", end, first)):
            fetch(last)  # the last line, when the span does not start on a line
        return context.get_dummy_value()

    return sig, codegen
