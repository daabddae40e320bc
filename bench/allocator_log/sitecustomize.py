"""Where a process's memory sits, every 3 s: for finding what the resident figure is made of.

    PYTHONPATH=bench/allocator_log PLANTWATCH_ALLOCATOR_LOG=/tmp/alloc python bench/throughput.py ...

Every Python process started with this folder on its path and the variable set (the service, its
receiver child, the bench's helpers) appends a line to ``<PLANTWATCH_ALLOCATOR_LOG>.<pid>``: resident
and anonymous memory, glibc's heaps (``mallinfo2``: in use and free) and Python's small-object
allocator (pymalloc: 1 MiB arenas held, bytes in live blocks, bytes free inside those arenas; from
``sys._debugmallocstats``). Free memory inside pymalloc arenas is memory that a few long-lived objects
pin after many short-lived ones were freed. Not for production: it costs a thread and ~1 MB.
"""

from __future__ import annotations

import os

if os.environ.get("PLANTWATCH_ALLOCATOR_LOG"):
    import ctypes
    import re
    import sys
    import tempfile
    import threading
    import time

    class _MallInfo2(ctypes.Structure):
        _fields_ = [
            (name, ctypes.c_size_t)
            for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks")
        ] + [("keepcost", ctypes.c_size_t)]

    _libc = ctypes.CDLL("libc.so.6")
    _libc.mallinfo2.restype = _MallInfo2
    _MIB = 2**20

    def _pymalloc() -> tuple[int, float, float]:
        """Arenas held, MiB in live blocks, MiB free in them (the stats go to fd 2, so it is borrowed)."""
        with tempfile.TemporaryFile() as out:
            saved = os.dup(2)
            os.dup2(out.fileno(), 2)
            try:
                sys._debugmallocstats()
            finally:
                os.dup2(saved, 2)
                os.close(saved)
            out.seek(0)
            text = out.read().decode()

        def number(label: str) -> int:
            found = re.search(re.escape(label) + r"\s+=\s+([\d,]+)", text)
            return int(found.group(1).replace(",", "")) if found else -1

        arenas = number("arenas allocated current")
        return arenas, number("# bytes in allocated blocks") / _MIB, number("# bytes in available blocks") / _MIB

    def _status(field: str) -> float:
        with open("/proc/self/status") as status:
            return int(status.read().split(f"{field}:")[1].split()[0]) / 1024

    def _log_every_3_s() -> None:
        path = f"{os.environ['PLANTWATCH_ALLOCATOR_LOG']}.{os.getpid()}"
        while True:
            time.sleep(3)
            heap = _libc.mallinfo2()
            arenas, live, free = _pymalloc()
            with open(path, "a") as log:
                log.write(
                    f"{time.time():.0f} rss {_status('VmRSS'):.1f} anon {_status('RssAnon'):.1f}"
                    f" glibc_used {heap.uordblks / _MIB:.1f} glibc_free {heap.fordblks / _MIB:.1f}"
                    f" pymalloc_arenas {arenas} pymalloc_live {live:.1f} pymalloc_free {free:.1f}"
                    f" argv {' '.join(sys.argv[:3])[:80]}\n"
                )

    threading.Thread(target=_log_every_3_s, name="allocator-log", daemon=True).start()
