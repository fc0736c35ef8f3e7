"""workers/devices.py: what a training process sets up about its host."""

from __future__ import annotations

import subprocess
import sys

import pytest

# In a fresh process: where a 16 MB buffer comes from (bytes of it mapped on its own), and how much of the
# heap is handed back to the kernel when it is freed. glibc's mallinfo2 reports both.
HEAP = """
import ctypes, sys, torch
from workers.devices import keep_freed_memory
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = Info
kept = keep_freed_memory() if sys.argv[1] == "kept" else False
before = libc.mallinfo2()
buffer = torch.empty(4_000_000)
held = libc.mallinfo2()
del buffer
after = libc.mallinfo2()
print(kept, held.hblkhd - before.hblkhd, held.arena - after.arena)
"""


def heap(mode: str) -> tuple[str, int, int]:
    out = subprocess.run([sys.executable, "-c", HEAP, mode], capture_output=True, text=True, check=True, timeout=120)
    kept, mapped, returned = out.stdout.split()
    return kept, int(mapped), int(returned)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_a_worker_keeps_a_steps_freed_buffers_for_the_next_step():
    """Plain glibc maps a fresh 16 MB buffer on its own and unmaps it at free (the next step faults it in again);
    a worker's process (workers/pool.py, the Ray task) takes it from the heap and keeps it there once freed."""
    plain, mapped, _ = heap("plain")
    assert plain == "False" and mapped >= 16_000_000  # mapped on its own
    kept, mapped, returned = heap("kept")
    assert kept == "True"
    assert mapped == 0  # from the heap
    assert returned == 0  # still the process's to reuse
