"""Transparent huge pages for XLA's buffers: the `jaxtl` command restarts itself with them.

On Linux, glibc serves every large allocation with a fresh `mmap` and returns it on
free, so each call of a jitted step touches its working memory anew: a training
step of a 32x0e Si model (5 structures) took 64,000 page faults and spent a third
of its CPU time in the kernel. With glibc's `glibc.malloc.hugetlb=1` tunable those
regions are advised as transparent huge pages (2 MB instead of 4 kB), faults drop
to a few hundred, and the same step went from 162 to 98 ms (2-core CPU; see
benchmarks/README.md). glibc reads tunables only when a process starts, so the
command re-executes itself once with the tunable set; a Python session that
imports jaxtl must be started with it (`GLIBC_TUNABLES=glibc.malloc.hugetlb=1`).

Nothing happens off Linux, without glibc >= 2.35, when the kernel's transparent
huge pages are `never`, or with JAXTL_NO_HUGEPAGES=1.
"""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

TUNABLE = "glibc.malloc.hugetlb=1"
_THP = Path("/sys/kernel/mm/transparent_hugepage/enabled")


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


def wanted(environ=os.environ, system: str | None = None, glibc: tuple[int, ...] | None = None,
           thp: str | None = None) -> bool:
    """Whether a restart with `TUNABLE` would change anything here (arguments: for tests)."""
    system = platform.system() if system is None else system
    glibc = _glibc_version() if glibc is None else glibc
    thp = _thp_mode() if thp is None else thp
    return (
        system == "Linux"
        and glibc >= (2, 35)
        and thp in ("always", "madvise")
        and not environ.get("JAXTL_NO_HUGEPAGES")
        and not active(environ)
    )


def with_tunable(environ=os.environ) -> dict:
    """A copy of `environ` with `TUNABLE` added to GLIBC_TUNABLES (others kept)."""
    env = dict(environ)
    env["GLIBC_TUNABLES"] = ":".join(p for p in (environ.get("GLIBC_TUNABLES", ""), TUNABLE) if p)
    return env


def restart_with_hugepages() -> None:
    """Re-execute this process's own command line with `TUNABLE`, when `wanted()`.

    Returns only when no restart is needed (or possible); otherwise never returns.
    Call it first thing in a program's entry point, before any work is done.
    """
    argv = getattr(sys, "orig_argv", None)
    if not argv or not sys.executable or not wanted():
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, argv, with_tunable())
