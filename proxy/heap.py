"""Giving a sync's transient memory back to the operating system.

A full sync at 10,000 Services builds ~15 MB of restore input (rule text, the bytes sent to
iptables-restore) that is freed as soon as the transaction is done. Those blocks are too big
for Python's small-object allocator and come from the C library's heap, which keeps freed
memory for reuse unless it sits at the very top: between syncs the proxy's RSS stayed ~9 MB
above what it actually holds. ``release_free_memory`` asks glibc (``malloc_trim``) to
return the free pages; it takes well under a millisecond and changes no live object.

Where the C library has no ``malloc_trim`` (musl, macOS) it does nothing.
"""

from __future__ import annotations

import ctypes
import functools
import logging
from collections.abc import Callable

__all__ = ["release_free_memory"]

log = logging.getLogger(__name__)


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        libc = ctypes.CDLL(None)
    except OSError:
        return None
    trim = getattr(libc, "malloc_trim", None)
    if trim is None:
        log.debug("the C library has no malloc_trim; freed heap memory stays mapped")
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


def release_free_memory() -> bool:
    """Return the C heap's free pages to the OS; True if the C library could do it."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
