"""Memory: glibc's arena cap and malloc_trim are found and callable where the C library is glibc."""

import platform
import subprocess
import sys
from pathlib import Path

from exporter import memory


def test_on_glibc_the_arena_cap_applies_and_trimming_runs():
    if platform.libc_ver()[0] != "glibc":
        assert memory.limit_arenas(2) is False and memory.fix_mmap_threshold() is False and memory.trim() is False
        return
    assert memory._LIBC is not None
    assert memory.limit_arenas(2) is True
    junk = [bytes(2048) for _ in range(20_000)]  # 40 MB of malloc'd (not pymalloc) blocks, then freed
    del junk
    assert memory.trim() in (True, False)  # whether pages were left to give back depends on the heap's layout


FIXED_THRESHOLD = """
from exporter import memory

def resident():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024

assert memory.fix_mmap_threshold() is True
big = bytearray(16 * 1024 * 1024)  # allocated and freed: what raises a dynamic threshold
del big
before = resident()
blocks = [bytearray(1024 * 1024) for _ in range(24)]  # 24 MiB, touched (bytearray zero-fills)
grown = resident() - before
del blocks
print(grown, resident() - before)
"""


def test_with_a_fixed_mmap_threshold_large_blocks_go_back_to_the_system_when_freed():
    """Without it, freeing one 16 MiB block lifts glibc's threshold, and the 1 MiB blocks after it stay in the heap.

    Measured in a fresh interpreter: this process's RSS moves with whatever other tests' threads allocate."""
    if platform.libc_ver()[0] != "glibc":
        return
    run = subprocess.run([sys.executable, "-c", FIXED_THRESHOLD], capture_output=True, text=True, timeout=60,
                         cwd=Path(__file__).resolve().parent.parent)
    assert run.returncode == 0, run.stderr
    grown, left = map(int, run.stdout.split())
    assert grown > 20 * 1024 * 1024 and left < 4 * 1024 * 1024, (grown, left)


def test_a_fresh_int_is_equal_to_its_source_but_a_new_object():
    from exporter.memory import fresh_int

    count = int("200030")  # made at run time, as a poll's counts are
    copy = fresh_int(count)
    assert copy == count and copy is not count
    assert fresh_int(7) == 7  # small ints are shared by CPython anyway
