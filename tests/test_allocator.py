"""jaxtl's heap settings for XLA's buffers: the `jaxtl` command's restart with glibc's tunables, and
the same settings made in a running process by `import jaxtl` (jaxtl/_allocator.py)."""

import os
import subprocess
import sys
import textwrap

import pytest

from jaxtl import _allocator

LINUX = {"system": "Linux", "glibc": (2, 36), "thp": "madvise"}


def test_wanted_only_where_it_changes_something():
    assert _allocator.wanted({}, **LINUX)
    assert _allocator.wanted({}, **{**LINUX, "thp": "always"})
    assert not _allocator.wanted({}, **{**LINUX, "thp": "never"})
    assert not _allocator.wanted({}, **{**LINUX, "thp": ""})
    assert not _allocator.wanted({}, **{**LINUX, "system": "Darwin"})
    assert not _allocator.wanted({}, **{**LINUX, "glibc": (2, 31)})
    assert not _allocator.wanted({}, **{**LINUX, "glibc": ()})
    assert not _allocator.wanted({"JAXTL_NO_HUGEPAGES": "1"}, **LINUX)
    # already set (to either value): the user's choice stands, and no restart loop
    assert not _allocator.wanted({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"}, **LINUX)
    assert not _allocator.wanted({"GLIBC_TUNABLES": _allocator.TUNABLE}, **LINUX)


def test_tunable_is_added_to_the_users_own():
    env = _allocator.with_tunable({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2", "HOME": "/h"})
    assert env["GLIBC_TUNABLES"] == "glibc.malloc.arena_max=2:" + _allocator.TUNABLE
    assert env["HOME"] == "/h"
    assert _allocator.with_tunable({})["GLIBC_TUNABLES"] == _allocator.TUNABLE


def test_without_tunable_gives_back_the_users_own():
    users = {"GLIBC_TUNABLES": "glibc.malloc.arena_max=2", "HOME": "/h"}
    assert _allocator.without_tunable(_allocator.with_tunable(users)) == users
    assert "GLIBC_TUNABLES" not in _allocator.without_tunable(_allocator.with_tunable({}))


def test_thp_mode_reads_the_kernels_choice(tmp_path):
    f = tmp_path / "enabled"
    f.write_text("always [madvise] never\n")
    assert _allocator._thp_mode(f) == "madvise"
    assert _allocator._thp_mode(tmp_path / "missing") == ""


def test_in_process_settings_only_where_they_change_something():
    linux = {"system": "Linux", "glibc": (2, 36)}
    assert _allocator.in_process_wanted({}, **linux)
    assert _allocator.in_process_wanted({}, **{**linux, "glibc": (2, 17)})  # mallopt is old
    assert not _allocator.in_process_wanted({}, **{**linux, "glibc": ()})  # musl, or no libc found
    assert not _allocator.in_process_wanted({}, **{**linux, "system": "Darwin"})
    assert not _allocator.in_process_wanted({"JAXTL_NO_HUGEPAGES": "1"}, **linux)
    # the restart's tunables already did it (with a 4 GB trim threshold mallopt could not set)
    assert not _allocator.in_process_wanted({"GLIBC_TUNABLES": _allocator.TUNABLE}, **linux)


# A jitted function with ~100 MB of temporaries, called nine times: the median of the
# minor page faults of those calls, and whether CPU dispatch is asynchronous, in a child process
# that has jaxtl's settings turned off ("off"), that imports jaxtl.model before its
# first computation, as a script or a notebook does ("import"), or that restarts
# itself with glibc's tunables, as the `jaxtl` command does ("restart").
_CHILD = textwrap.dedent(
    """
    import resource, statistics, sys
    import jaxtl.model
    from jaxtl._allocator import restart_with_hugepages
    if sys.argv[1] == "restart":
        restart_with_hugepages()
    import jax, jax.numpy as jnp
    f = jax.jit(lambda x: jnp.sum(jnp.sin(x)[:, None] * jnp.cos(x)[None, :2048]))
    x = jnp.linspace(0.0, 1.0, 12000)
    f(x).block_until_ready()
    faults = []
    for _ in range(9):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        f(x).block_until_ready()
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    from jax._src import xla_bridge
    print(statistics.median(faults), xla_bridge._CPU_ENABLE_ASYNC_DISPATCH.value)
    """
)


def _child_faults(mode: str) -> tuple[float, bool]:
    env = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", "JAXTL_NO_HUGEPAGES")}
    if mode == "off":
        env["JAXTL_NO_HUGEPAGES"] = "1"
    out = subprocess.run([sys.executable, "-c", _CHILD, mode], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    faults, asynchronous = out.stdout.split()[-2:]
    return float(faults), asynchronous == "True"


@pytest.mark.skipif(not _allocator.in_process_wanted({}), reason="no glibc on this machine")
def test_heap_settings_cut_page_faults():
    # ~98 MB in fresh 4 kB pages is ~24,000 faults a call; with the buffer kept in the main
    # heap (no mmap, no trim, computations on the calling thread) none in most calls (now
    # and then the heap grows by one buffer: hence the median)
    off, asynchronous = _child_faults("off")
    assert off > 20_000 and asynchronous, off
    in_process, asynchronous = _child_faults("import")
    assert in_process < off / 200 and not asynchronous, (off, in_process)
    if _allocator.wanted({}):  # huge pages alone, still fresh per call, gave ~500 a call
        restarted, asynchronous = _child_faults("restart")
        assert restarted < off / 200 and not asynchronous, (off, restarted)


def test_import_jaxtl_is_light_and_names_resolve():
    """The restart happens before JAX is paid for: `import jaxtl` must not import it."""
    code = ("import sys, jaxtl; assert 'jax' not in sys.modules, 'jax imported'; "
            "from jaxtl import MACE, load_model; assert jaxtl.model.MACE is MACE and callable(load_model); print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
