"""jaxtl's CPU settings (jaxtl/cpu.py, jaxtl/_allocator.py, jaxtl/_xla_flags.py): made by
`jaxtl.configure_cpu()` and the `jaxtl` command only, never by an import.

Each process-level check runs in a fresh child process (the settings are per process)
with the environment cleared of jaxtl's switches, GLIBC_TUNABLES and XLA_FLAGS."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from jaxtl import _allocator

LINUX = {"system": "Linux", "glibc": (2, 36), "thp": "madvise"}
GLIBC = _allocator.in_process_wanted({})


def test_wanted_only_where_it_changes_something():
    assert _allocator.wanted({}, **LINUX)
    assert _allocator.wanted({}, **{**LINUX, "thp": "always"})
    assert not _allocator.wanted({}, **{**LINUX, "thp": "never"})
    assert not _allocator.wanted({}, **{**LINUX, "thp": ""})
    assert not _allocator.wanted({}, **{**LINUX, "system": "Darwin"})
    assert not _allocator.wanted({}, **{**LINUX, "glibc": (2, 31)})
    assert not _allocator.wanted({}, **{**LINUX, "glibc": ()})
    assert not _allocator.wanted({"JAXTL_NO_CPU_TUNING": "1"}, **LINUX)
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
    assert not _allocator.in_process_wanted({"JAXTL_NO_CPU_TUNING": "1"}, **linux)
    assert not _allocator.in_process_wanted({"JAXTL_NO_HUGEPAGES": "1"}, **linux)
    # the restart's tunables already did it (with a 4 GB trim threshold mallopt could not set)
    assert not _allocator.in_process_wanted({"GLIBC_TUNABLES": _allocator.TUNABLE}, **linux)


# A script as a user writes it: torch, numpy and jaxtl side by side, a model built and run.
# `configure` is where the user's one line goes ("" for none); `late` runs JAX first.
# Reported: the median minor page faults of allocating, filling and freeing 100 MB with
# glibc's malloc (a bytes object: by default fresh pages from `mmap` every time), the same
# for a jitted call with ~100 MB of temporaries (the reason for the settings), XLA_FLAGS,
# JAX's async-dispatch setting, and what `configure_cpu` recorded.
_CHILD = textwrap.dedent(
    """
    import json, os, resource, statistics, sys, warnings
    import numpy as np
    import torch  # noqa: F401  (another library in the same process)
    import jaxtl
    import jaxtl.model, jaxtl.api, jaxtl.train, jaxtl.md, jaxtl.calculator, jaxtl.evaluate
    mode = sys.argv[1]
    if mode == "late":
        import jax.numpy as jnp
        jnp.zeros(1).block_until_ready()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if mode in ("configure", "late", "off"):
            jaxtl.configure_cpu()
        elif mode == "restart":
            jaxtl.configure_cpu(restart=True)
    import jax, jax.numpy as jnp
    if mode == "plain":  # a model built and run: everything an import and a first use do
        from ase.build import bulk
        from jaxtl.graph.batching import batch_atoms
        from jaxtl.model import MACE, MACEConfig, make_predict
        config = MACEConfig(atomic_numbers=(29,), r_max=3.0, num_bessel=4, max_ell=2, hidden_irreps="4x0e+4x1o",
                            MLP_irreps="4x0e", correlation=2, radial_MLP=(8, 8), avg_num_neighbors=8.0)
        batch = batch_atoms([bulk("Cu", "fcc", a=3.6, cubic=True)], config.r_max, np.float32)
        model = MACE(config)
        variables = model.init(jax.random.PRNGKey(0), batch.graph)
        forces = jax.jit(make_predict(model), static_argnums=2)(variables, batch.graph, False)["forces"]
        assert np.isfinite(np.asarray(forces)).all()

    def median_faults(call):
        call()
        faults = []
        for _ in range(9):
            before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            call()
            faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
        return statistics.median(faults)

    f = jax.jit(lambda x: jnp.sum(jnp.sin(x)[:, None] * jnp.cos(x)[None, :2048]))
    x = jnp.linspace(0.0, 1.0, 12000)
    settings = jaxtl.cpu_settings()
    print("RESULT " + json.dumps({
        "malloc_faults": median_faults(lambda: b"\\x01" * 100_000_000),
        "jax_faults": median_faults(lambda: f(x).block_until_ready()),
        "xla_flags": os.environ.get("XLA_FLAGS"),
        "async_dispatch": jax.config.read("jax_cpu_enable_async_dispatch"),
        "settings": None if settings is None else settings.__dict__,
        "warnings": [str(w.message) for w in caught],
    }))
    """
)
# 100 MB in fresh 4 kB pages: ~24,000 faults; kept in the heap: none in most calls
# (now and then the heap grows by one buffer: hence the median of nine)
FRESH, KEPT = 20_000, 200


def _child(mode: str, **env_extra) -> dict:
    drop = ("GLIBC_TUNABLES", "XLA_FLAGS", "JAXTL_NO_CPU_TUNING", "JAXTL_NO_HUGEPAGES", "JAXTL_KEEP_XLA_FLAGS")
    env = {k: v for k, v in os.environ.items() if k not in drop} | env_extra
    out = subprocess.run([sys.executable, "-c", _CHILD, mode], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.split("RESULT ", 1)[1])


@pytest.mark.skipif(not GLIBC, reason="no glibc on this machine: its allocator settings cannot be checked")
def test_importing_jaxtl_changes_nothing_outside_jaxtl():
    plain = _child("plain")
    assert plain["malloc_faults"] > FRESH, plain  # glibc's defaults: the 100 MB block is mapped anew
    assert plain["xla_flags"] is None, plain
    assert plain["async_dispatch"] is True, plain
    assert plain["settings"] is None and not plain["warnings"], plain


@pytest.mark.skipif(not GLIBC, reason="no glibc on this machine: its allocator settings cannot be checked")
def test_configure_cpu_makes_each_setting():
    tuned = _child("configure")
    assert tuned["malloc_faults"] < KEPT and tuned["jax_faults"] < KEPT, tuned
    assert "--xla_cpu_experimental_ynn_fusion_type=" in tuned["xla_flags"], tuned
    assert tuned["async_dispatch"] is False, tuned
    assert tuned["settings"]["heap"] == "mallopt" and tuned["settings"]["inline_dispatch"], tuned
    assert tuned["settings"]["xla_flags"] and not tuned["warnings"], tuned


@pytest.mark.skipif(not _allocator.wanted({}), reason="the restart needs glibc >= 2.35 and transparent huge pages")
def test_configure_cpu_restart_runs_with_the_tunables():
    restarted = _child("restart")
    assert restarted["settings"]["heap"] == "tunables", restarted
    assert restarted["jax_faults"] < KEPT and restarted["async_dispatch"] is False, restarted


@pytest.mark.skipif(not GLIBC, reason="no glibc on this machine: its allocator settings cannot be checked")
def test_configure_cpu_after_jax_started_warns_and_changes_nothing():
    late = _child("late")
    assert any("after JAX started its backends" in w for w in late["warnings"]), late
    assert late["malloc_faults"] > FRESH and late["xla_flags"] is None and late["async_dispatch"] is True, late
    assert late["settings"]["heap"] == "" and not late["settings"]["inline_dispatch"], late


@pytest.mark.skipif(not GLIBC, reason="no glibc on this machine: its allocator settings cannot be checked")
def test_switch_turns_configure_cpu_off():
    off = _child("off", JAXTL_NO_CPU_TUNING="1")
    assert off["malloc_faults"] > FRESH and off["xla_flags"] is None and off["async_dispatch"] is True, off
    assert off["settings"]["notes"] == ["turned off by JAXTL_NO_CPU_TUNING"], off


def test_either_switch_turns_the_settings_off():
    assert _allocator.turned_off({"JAXTL_NO_CPU_TUNING": "1"}) == "JAXTL_NO_CPU_TUNING"
    assert _allocator.turned_off({"JAXTL_NO_HUGEPAGES": "1"}) == "JAXTL_NO_HUGEPAGES"
    assert _allocator.turned_off({"JAXTL_NO_HUGEPAGES": ""}) == ""


def test_import_jaxtl_is_light_and_names_resolve():
    """`import jaxtl` must not import JAX, so that `configure_cpu` can still act after it."""
    code = (
        "import sys, jaxtl; assert 'jax' not in sys.modules, 'jax imported'; "
        "from jaxtl import MACE, load_model, configure_cpu; "
        "assert jaxtl.model.MACE is MACE and callable(load_model) and callable(configure_cpu); print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


@pytest.mark.parametrize("flag", ["", "--no-cpu-tuning"])
def test_the_command_tunes_its_own_process_unless_told_not_to(flag, tmp_path):
    code = textwrap.dedent(f"""
        import os, sys, jaxtl
        from jaxtl import cli
        sys.argv = ["jaxtl"] + {[flag] if flag else []!r} + ["models", "--cache", {str(tmp_path)!r}]
        assert cli.main() == 0
        settings = jaxtl.cpu_settings()
        print("RESULT", None if settings is None else settings.heap, os.environ.get("XLA_FLAGS"))
        """)
    drop = ("GLIBC_TUNABLES", "XLA_FLAGS", "JAXTL_NO_CPU_TUNING", "JAXTL_NO_HUGEPAGES", "JAXTL_KEEP_XLA_FLAGS")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    heap, xla_flags = out.stdout.split("RESULT", 1)[1].split()
    if flag:
        assert (heap, xla_flags) == ("None", "None"), out.stdout
    elif GLIBC:
        assert heap == ("tunables" if _allocator.wanted({}) else "mallopt"), out.stdout
        assert "ynn_fusion_type" in xla_flags, out.stdout
