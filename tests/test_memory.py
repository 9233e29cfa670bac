"""Memory: glibc's arena cap and malloc_trim are found and callable where the C library is glibc."""

import platform

from exporter import memory


def test_on_glibc_the_arena_cap_applies_and_trimming_runs():
    if platform.libc_ver()[0] != "glibc":
        assert memory.limit_arenas(2) is False and memory.trim() is False
        return
    assert memory._LIBC is not None
    assert memory.limit_arenas(2) is True
    junk = [bytes(2048) for _ in range(20_000)]  # 40 MB of malloc'd (not pymalloc) blocks, then freed
    del junk
    assert memory.trim() in (True, False)  # whether pages were left to give back depends on the heap's layout
