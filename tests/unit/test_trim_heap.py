"""_core.trim_heap hands the free pages inside the malloc arenas back to the OS (the engine calls
it every heap_trim_interval_s; bench/README.md, memory.py, has the growth it stops)."""

from __future__ import annotations

import ctypes
import ctypes.util
import platform

import psutil
import pytest

from smartcity import _core

pytestmark = pytest.mark.skipif(
    platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's; elsewhere a no-op"
)


def test_trim_heap_returns_the_free_holes_of_a_fragmented_heap():
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    proc = psutil.Process()
    # 96 MB in 3 KB blocks (below the mmap threshold: they live inside the arena), touched so
    # that they are resident; then every block but one in 64 freed, so that the arena cannot
    # shrink from its top and the free space is holes between the kept blocks.
    n, size = 32_768, 3_072
    blocks = []
    for _ in range(n):
        p = libc.malloc(size)
        assert p
        ctypes.memset(p, 1, size)
        blocks.append(p)
    kept = blocks[::64]
    for i, p in enumerate(blocks):
        if i % 64:
            libc.free(p)
    try:
        before = proc.memory_info().rss
        assert _core.trim_heap() is True
        after = proc.memory_info().rss
        # About 94 MB of holes; most of each hole is whole pages.
        assert before - after > 50e6, (before, after)
    finally:
        for p in kept:
            libc.free(p)
