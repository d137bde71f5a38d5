"""`jaxtl.configure_cpu()`: the process-wide CPU settings jaxtl's speed figures assume.

Importing jaxtl changes nothing outside jaxtl. These settings are process-wide (they
touch glibc's allocator, the environment and JAX's configuration, for every library in
the process), so they are made only when asked for, once, before JAX starts its backends:

  * heap: large blocks from glibc's heap instead of `mmap`, and freed memory kept at its
    top (`jaxtl._allocator`): XLA's per-call temporaries are reused instead of being
    faulted in anew on every call;
  * XLA_FLAGS: XLA's YNNPACK fusions off (`jaxtl._xla_flags`), slow for MACE's many tiny
    per-edge contractions;
  * JAX's asynchronous CPU dispatch off, so that XLA allocates on the calling thread,
    from the main heap that the heap settings act on.

The price is memory: freed memory stays with the process (up to 2 GB at the top of
the heap, 4 GB under the `jaxtl` command's restart). The `jaxtl` command calls
`configure_cpu(restart=True)` for itself; `--no-cpu-tuning` or JAXTL_NO_CPU_TUNING=1
(alias JAXTL_NO_HUGEPAGES=1) turns it off there and here.
"""

from __future__ import annotations

import dataclasses
import sys
import warnings

from jaxtl import _allocator, _xla_flags


@dataclasses.dataclass(frozen=True)
class CPUSettings:
    """What `configure_cpu` did in this process.

    Attributes:
        heap: "tunables" (the process started with jaxtl's GLIBC_TUNABLES), "mallopt"
            (set at run time) or "" (not made).
        xla_flags: the flag added to XLA_FLAGS, "" if none.
        inline_dispatch: whether JAX's asynchronous CPU dispatch was turned off.
        notes: why a setting was not made.
    """

    heap: str = ""
    xla_flags: str = ""
    inline_dispatch: bool = False
    notes: tuple[str, ...] = ()


_settings: CPUSettings | None = None


def jax_started() -> bool | None:
    """Whether JAX has started its backends (None: this JAX cannot tell)."""
    if "jax" not in sys.modules:
        return False
    from jax._src import (
        xla_bridge,  # no public API tells whether the backends have started
    )

    started = getattr(xla_bridge, "backends_are_initialized", None)
    return None if started is None else bool(started())


def configure_cpu(restart: bool = False) -> CPUSettings:
    """Make jaxtl's CPU settings for this process; call it before JAX's first computation.

    Args:
        restart: re-execute the process's own command line with glibc's tunables first
            (Linux, glibc >= 2.35, transparent huge pages available): for a program's
            entry point only, as the `jaxtl` command does. Never returns when it restarts.

    Returns:
        What was done (also `cpu_settings()`). A second call returns the first's result.
        Called after JAX has started its backends, it changes nothing and warns: XLA reads
        its flags and the dispatch setting only when its CPU client starts.
    """
    global _settings
    if _settings is not None:
        return _settings
    switch = _allocator.turned_off()
    if switch:
        _settings = CPUSettings(notes=(f"turned off by {switch}",))
        return _settings
    if restart:
        _allocator.restart_if_wanted()
    if jax_started():
        msg = (
            "jaxtl.configure_cpu() was called after JAX started its backends: nothing changed. "
            "Call it before the first JAX computation (XLA reads these settings when it starts)."
        )
        warnings.warn(msg, RuntimeWarning, stacklevel=2)
        _settings = CPUSettings(notes=(msg,))
        return _settings
    notes = []
    flag = _xla_flags.apply()
    if not flag:
        notes.append("XLA_FLAGS kept as given (JAXTL_KEEP_XLA_FLAGS, the flag already set, or an older jaxlib)")
    heap = "tunables" if _allocator.active() else ("mallopt" if _allocator.keep_buffers_in_heap() else "")
    inline = False
    if heap:
        _allocator.inline_cpu_dispatch()
        inline = True
    else:
        notes.append("heap settings not made (needs Linux with glibc), so CPU dispatch left asynchronous")
    _settings = CPUSettings(heap=heap, xla_flags=flag, inline_dispatch=inline, notes=tuple(notes))
    return _settings


def cpu_settings() -> CPUSettings | None:
    """What `configure_cpu` did in this process, None if it was not called."""
    return _settings
