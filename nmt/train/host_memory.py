"""Keep freed memory in the process during training on a CPU, instead of returning it to the system.

glibc's malloc serves a large block (a 16 MB activation, the 65 MB gradient of the output layer) with a fresh mmap
and gives it back to the kernel on free; the next step's tensors of the same size then touch brand-new pages, and
every 4 KB page costs a page fault and zeroing. A transformer_base step on 2 cores took ~60,000 such faults, spread
over matrix products, ReLU, dropout and the loss. Raising malloc's mmap and trim thresholds keeps those blocks in the
heap for reuse: a few thousand faults a step, and the step ~5% faster on the 2-core machine
(benchmarks/step_breakdown.py, with and without). The cost is that the process's resident memory stays at its peak,
which training reaches on every step anyway. Other C libraries (musl, macOS) are left as they are.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_LARGEST_MMAP_THRESHOLD = 1 << 30  # blocks above 1 GB are still mapped and unmapped one by one
_LARGEST_TRIM_THRESHOLD = (1 << 31) - 1  # mallopt takes an int


def keep_freed_memory() -> bool:
    """Set glibc's malloc to reuse freed blocks rather than unmap them; False where that is not glibc."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False  # not glibc (musl has no mallopt)
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, _LARGEST_MMAP_THRESHOLD)
                and mallopt(_M_TRIM_THRESHOLD, _LARGEST_TRIM_THRESHOLD))
