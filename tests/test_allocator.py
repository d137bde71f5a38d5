"""The `jaxtl` command's restart with glibc's tunables for XLA's buffers (jaxtl/_allocator.py)."""

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


# A jitted function with ~100 MB of temporaries, called five times: the minor page
# faults of those calls, from a child process that restarts itself or not.
_CHILD = textwrap.dedent(
    """
    import resource, sys
    from jaxtl._allocator import restart_with_hugepages
    if sys.argv[1] == "restart":
        restart_with_hugepages()
    import jax, jax.numpy as jnp
    f = jax.jit(lambda x: jnp.sum(jnp.sin(x)[:, None] * jnp.cos(x)[None, :2048]))
    x = jnp.linspace(0.0, 1.0, 12000)
    f(x).block_until_ready()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(5):
        f(x).block_until_ready()
    print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    from jax._src import xla_bridge
    assert xla_bridge._CPU_ENABLE_ASYNC_DISPATCH.value == (sys.argv[1] != "restart")
    """
)


@pytest.mark.skipif(not _allocator.wanted(), reason="no glibc huge-page tunable or THP on this machine")
def test_restart_cuts_page_faults():
    env = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", "JAXTL_NO_HUGEPAGES")}

    def faults(mode):
        out = subprocess.run([sys.executable, "-c", _CHILD, mode], env=env, capture_output=True, text=True,
                             timeout=120)
        assert out.returncode == 0, out.stderr[-2000:]
        return int(out.stdout.split()[-1])

    plain, restarted = faults("plain"), faults("restart")
    # 5 calls x ~98 MB in fresh 4 kB pages is ~120,000 faults; with the buffer kept in the
    # main heap (huge pages, no mmap, no trim, computations on the calling thread) a few
    # dozen. Huge pages alone, still fresh per call, gave ~2,600.
    assert plain > 20_000, plain
    assert restarted < plain / 200, (plain, restarted)


def test_import_jaxtl_is_light_and_names_resolve():
    """The restart happens before JAX is paid for: `import jaxtl` must not import it."""
    code = ("import sys, jaxtl; assert 'jax' not in sys.modules, 'jax imported'; "
            "from jaxtl import MACE, load_model; assert jaxtl.model.MACE is MACE and callable(load_model); print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
