"""glibc settings for XLA's buffers: the `jaxtl` command restarts itself with them.

XLA's CPU runtime allocates all temporaries of a jitted call as one buffer (231 MB for
a training step of a 32x0e Si model on 5 structures). By default glibc serves it with
a fresh `mmap` and returns it on free, so every call faults its memory in anew: 64,000
page faults and a third of the step's CPU time in the kernel. Three glibc tunables and
one JAX setting keep the buffer instead:

  * `glibc.malloc.hugetlb=1`: memory glibc takes from the kernel is advised as
    transparent huge pages (2 MB instead of 4 kB pages: fewer faults and TLB misses);
  * `glibc.malloc.mmap_max=0` and `glibc.malloc.trim_threshold` of 4 GB: large blocks
    come from the heap and, up to 4 GB, stay there when freed, so the next call reuses them;
  * `jax_cpu_enable_async_dispatch=False` (set by `jaxtl.configure_cpu`, in the
    restarted process too): CPU computations run on the calling thread, so the buffer is
    allocated from glibc's main heap. Allocated from one of XLA's worker threads, a
    block over 64 MB is served by `mmap` whatever `mmap_max` says.

With all four a training step takes ~0 faults and ~0 kernel time; right after a
mace-torch step in the same process, where a fresh huge-page fault could stall 0.4-2 s
in compaction, a 64x0e+64x1o float64 step went from 2.0 s to 0.9 s (benchmarks/README.md).
The price: freed memory stays with the process (at the top of the heap, up to 4 GB).

glibc reads tunables only when a process starts, so the `jaxtl` command re-executes itself
once with them set (`restart_if_wanted`). A Python session (a script, a notebook) cannot
restart; there `jaxtl.configure_cpu()` sets the two heap settings at run time with glibc's
`mallopt` (`keep_buffers_in_heap`; the trim threshold is then 2 GB, the most an int holds)
and turns asynchronous CPU dispatch off. Nothing here runs on import: `jaxtl.cpu` decides.
Huge pages are not needed for the effect: in a plain process MP-0-medium float32
energy+forces of 108 Cu atoms took 160-161 ms with 88,000 page faults and 132 ms in the
kernel a call, and 79-80 ms with 30-56 faults after the two `mallopt` calls and inline
dispatch (76-81 ms with the restart's tunables; benchmarks/heap_settings.py). Nothing
happens off Linux or without glibc; JAXTL_NO_CPU_TUNING=1 (or JAXTL_NO_HUGEPAGES=1) turns
off the restart and both in-process settings; the restart also needs glibc >= 2.35 and
transparent huge pages not `never`.
"""

from __future__ import annotations

import ctypes
import os
import platform
import sys
from pathlib import Path

# trim_threshold: free memory at the top of the heap is kept for the next call while it
# stays under 4 GB (a training step's buffer: 0.23-1.7 GB for the Si benchmark models); a larger one
# goes back to the kernel. With 64 GB instead, the 10,976-atom energy+forces of
# benchmarks/scale.py peaked at 10.8 GB instead of 6.1 GB and the 97,556-atom one ran
# out of the 24 GB (freed blocks were split for smaller requests and the next call's
# buffer no longer fit); with 4 GB the 10,976-atom peak was 6.1 GB again.
TUNABLES = ("glibc.malloc.hugetlb=1", "glibc.malloc.mmap_max=0", f"glibc.malloc.trim_threshold={4 << 30}")
TUNABLE = ":".join(TUNABLES)
_THP = Path("/sys/kernel/mm/transparent_hugepage/enabled")
OFF_SWITCHES = ("JAXTL_NO_CPU_TUNING", "JAXTL_NO_HUGEPAGES")  # either turns the settings off


def turned_off(environ=os.environ) -> str:
    """The environment variable that turns jaxtl's CPU settings off, "" if none does."""
    return next((name for name in OFF_SWITCHES if environ.get(name)), "")


def _glibc_version() -> tuple[int, ...]:
    name, version = platform.libc_ver()
    if name != "glibc" or not version:
        return ()
    return tuple(int(part) for part in version.split(".")[:2] if part.isdigit())


def _thp_mode(path: Path = _THP) -> str:
    """The kernel's selected THP mode ('always', 'madvise', 'never'), '' if unknown."""
    try:
        text = path.read_text()
    except OSError:
        return ""
    start, end = text.find("["), text.find("]")
    return text[start + 1 : end] if 0 <= start < end else ""


def active(environ=os.environ) -> bool:
    """Whether this process was started with glibc's huge-page tunable set (either value)."""
    return "glibc.malloc.hugetlb" in environ.get("GLIBC_TUNABLES", "")


def wanted(
    environ=os.environ, system: str | None = None, glibc: tuple[int, ...] | None = None, thp: str | None = None
) -> bool:
    """Whether a restart with `TUNABLE` would change anything here (arguments: for tests)."""
    system = platform.system() if system is None else system
    glibc = _glibc_version() if glibc is None else glibc
    thp = _thp_mode() if thp is None else thp
    return (
        system == "Linux"
        and glibc >= (2, 35)
        and thp in ("always", "madvise")
        and not turned_off(environ)
        and not active(environ)
    )


def with_tunable(environ=os.environ) -> dict:
    """A copy of `environ` with `TUNABLE` added to GLIBC_TUNABLES (others kept)."""
    env = dict(environ)
    env["GLIBC_TUNABLES"] = ":".join(p for p in (environ.get("GLIBC_TUNABLES", ""), TUNABLE) if p)
    return env


def without_tunable(environ=os.environ) -> dict:
    """A copy of `environ` as it was before `with_tunable` (for a child process that should
    run with glibc's defaults, as mace-torch does in `benchmarks/_child.py`)."""
    env = dict(environ)
    parts = [p for p in environ.get("GLIBC_TUNABLES", "").split(":") if p and p not in TUNABLES]
    if parts:
        env["GLIBC_TUNABLES"] = ":".join(parts)
    else:
        env.pop("GLIBC_TUNABLES", None)
    return env


def restart_if_wanted() -> None:
    """Re-execute this process's own command line with `TUNABLE`, when `wanted()`.

    Returns only when no restart is needed (or possible); otherwise never returns.
    Called by `jaxtl.configure_cpu(restart=True)`, first thing in a program's entry point.
    """
    argv = getattr(sys, "orig_argv", None)
    if not argv or not sys.executable or not wanted():
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, argv, with_tunable())


def inline_cpu_dispatch() -> None:
    """Run JAX's CPU computations on the calling thread (before the first one: the CPU
    client reads the setting when it starts). Training and MD read a result back after
    every step, so nothing is lost by not dispatching asynchronously."""
    import jax

    jax.config.update("jax_cpu_enable_async_dispatch", False)


# glibc's mallopt parameters (malloc.h) and the largest trim threshold an int can give
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
HEAP_KEEP = 2**31 - 1
_made_in_process = False  # set by keep_buffers_in_heap


def in_process_wanted(environ=os.environ, system: str | None = None, glibc: tuple[int, ...] | None = None) -> bool:
    """Whether `keep_buffers_in_heap` would change anything here (arguments: for tests):
    Linux with glibc, not turned off, and not already set by the restart's tunables."""
    system = platform.system() if system is None else system
    glibc = _glibc_version() if glibc is None else glibc
    return system == "Linux" and bool(glibc) and not turned_off(environ) and not active(environ)


def keep_buffers_in_heap() -> bool:
    """In this process, without a restart: large blocks from the heap (no `mmap`), and up
    to `HEAP_KEEP` bytes of freed memory kept at its top, through glibc's `mallopt`.

    Returns whether the settings were made. Safe at any time; blocks already mapped stay
    as they are. With asynchronous CPU dispatch on, XLA allocates from worker threads,
    whose arenas map large blocks anyway: `jaxtl.configure_cpu` turns that off too.
    """
    global _made_in_process
    if not in_process_wanted():
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        _made_in_process = libc.mallopt(_M_MMAP_MAX, 0) == 1 and libc.mallopt(_M_TRIM_THRESHOLD, HEAP_KEEP) == 1
    except (OSError, AttributeError):
        return False
    return _made_in_process


def heap_settings_made() -> bool:
    """Whether this process runs with jaxtl's heap settings (the restart's tunables or `mallopt`)."""
    return active() or _made_in_process
