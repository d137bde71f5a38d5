"""Multi-process data parallelism (jax.distributed on 127.0.0.1, gloo CPU collectives).

A job of P processes with one CPU device each must train exactly as one process
with P devices (same global batch: the same plan split over the same mesh): the
same loss at every step, the same checkpoints. Killing one process stops the job
with a message naming the cause, and the job then resumes to the uninterrupted
result bit for bit. Each process is `run_distributed_toy.py` (a toy pair potential).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from jaxtl.train.checkpoint import LATEST, Checkpointer, load_model_variables
from jaxtl.train.distributed import DistributedConfig, per_device_batch_size
from jaxtl.train.parallel import step_plan

HERE = Path(__file__).parent
SCRIPT = HERE / "run_distributed_toy.py"
PREPARED_SCRIPT = HERE / "run_distributed_prepared.py"
TIMEOUT = 300


def _env(devices: int) -> dict:
    env = dict(os.environ)
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={devices}").strip()
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), str(HERE.parent.parent), env.get("PYTHONPATH", "")])
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


CACHE = {}


@pytest.fixture(scope="module", autouse=True)
def compilation_cache(tmp_path_factory):
    # the session's cache (tests/conftest.py) where there is one: the jobs' programs are compiled once, not per run
    CACHE["dir"] = jax.config.jax_compilation_cache_dir or str(tmp_path_factory.mktemp("xla_cache"))
    yield
    CACHE.clear()


def _start(
    out: Path, n_processes: int, devices_per_process: int = 1, *extra, script: list | None = None
) -> list[subprocess.Popen]:
    """The processes of one job (or one process when n_processes == 1); `script`: another
    job script and its leading arguments."""
    out.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    procs = []
    for i in range(n_processes):
        head = script or [SCRIPT, out, "--cache", CACHE["dir"]]
        args = [sys.executable, *map(str, head), *map(str, extra)]
        if n_processes > 1:
            args += ["--num-processes", str(n_processes), "--process-id", str(i), "--port", str(port)]
        procs.append(
            subprocess.Popen(
                args, env=_env(devices_per_process), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
        )
    return procs


def _finish(procs: list[subprocess.Popen]) -> None:
    outs = []
    try:
        for p in procs:
            outs.append(p.communicate(timeout=TIMEOUT))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err[-4000:]


def _run(out: Path, n_processes: int, devices_per_process: int = 1, *extra, script: list | None = None) -> Path:
    _finish(_start(out, n_processes, devices_per_process, *extra, script=script))
    return out


def _checkpoint(run: Path):
    c = Checkpointer(run / "run")
    arrays, meta = c.restore(LATEST)
    c.close()
    return jax.tree.map(np.asarray, arrays), meta


def _steps(out: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(out.glob("steps-*.json"))]


@pytest.fixture(scope="module")
def one_process_two_devices(tmp_path_factory):
    return _run(tmp_path_factory.mktemp("single"), 1, 2)


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    return _run(tmp_path_factory.mktemp("pair"), 2, 1)


def test_step_plan_groups_equal_shapes():
    assert step_plan(["a", "b", "a", "c"], 1) == [[0], [1], [2], [3]]
    assert step_plan(["a", "b", "a", "b", "a"], 2) == [[0, 2], [1, 3], [4, None]]
    assert step_plan([], 2) == []


def test_global_batch_and_config_checks():
    assert per_device_batch_size(12, 4) == 3
    with pytest.raises(ValueError, match="multiple of the number of devices"):
        per_device_batch_size(10, 4)
    with pytest.raises(ValueError, match="HOST:PORT"):
        DistributedConfig("localhost")
    with pytest.raises(ValueError, match="process_id 2"):
        DistributedConfig("localhost:1234", 2, 2)
    assert DistributedConfig.auto().is_auto


def test_two_processes_train_as_one_process_with_two_devices(one_process_two_devices, two_processes):
    single, pair = _steps(one_process_two_devices), _steps(two_processes)
    assert len(single) == 1 and len(pair) == 2
    assert single[0]["devices"] == pair[0]["devices"] == 2
    # every process sees the same (replicated) loss, one compilation per padded shape
    assert pair[0] == pair[1]
    assert pair[0]["compiles"] == single[0]["compiles"] == 2
    np.testing.assert_allclose(pair[0]["losses"], single[0]["losses"], rtol=1e-13)
    a, meta_a = _checkpoint(one_process_two_devices)
    b, meta_b = _checkpoint(two_processes)
    assert meta_a == meta_b and meta_a["epoch"] == 3
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-12, atol=1e-15), a, b)
    jax.tree.map(
        lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-12, atol=1e-15),
        load_model_variables(one_process_two_devices / "run" / "model"),
        load_model_variables(two_processes / "run" / "model"),
    )
    # one log, written once
    log = (two_processes / "run" / "metrics.jsonl").read_text().splitlines()
    assert len(log) == 3


def test_killed_process_stops_the_job_and_it_resumes_exactly(tmp_path, two_processes):
    out = tmp_path / "killed"
    procs = _start(out, 2, 1, "--skip-steps", "--sleep", "1.0")
    latest = out / "run" / "checkpoints" / LATEST
    deadline = time.time() + TIMEOUT
    try:
        while time.time() < deadline:
            if latest.exists() and any(p.name.isdigit() for p in latest.iterdir()):  # renamed when complete
                break
            assert all(p.poll() is None for p in procs), "the job ended before it could be killed"
            time.sleep(0.1)
        time.sleep(0.5)  # into the next epoch
        procs[1].send_signal(signal.SIGKILL)
        t0 = time.time()
        _, err = procs[0].communicate(timeout=60)
        stopped_after = time.time() - t0
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert procs[0].returncode != 0
    # the survivor names the cause, within the heartbeat timeout (5 s) and a margin
    assert "another process" in err or "another task died" in err, err[-3000:]
    assert stopped_after < 40, stopped_after
    _, meta = _checkpoint(out)
    assert 1 <= meta["epoch"] < 3, meta

    _run(out, 2, 1, "--skip-steps", "--resume")
    a, meta_a = _checkpoint(out)
    b, meta_b = _checkpoint(two_processes)
    assert meta_a == meta_b
    jax.tree.map(np.testing.assert_array_equal, a, b)
    assert len((out / "run" / "metrics.jsonl").read_text().splitlines()) == 3


def test_two_processes_stream_a_prepared_set_as_one_process(tmp_path):
    """A tiny MACE streamed from a prepared set: each process reads only its own batches, and
    the job trains as one process with both devices (losses, checkpoint)."""
    sys.path.insert(0, str(HERE.parent / "graph"))
    from test_ondisk import structures

    from jaxtl.graph.ondisk import write_ondisk

    prepared = write_ondisk(iter(structures(26, seed=3)), tmp_path / "prepared", 3.0, shard_size=8)
    single = _run(tmp_path / "single", 1, 2, script=[PREPARED_SCRIPT, prepared, tmp_path / "single"])
    pair = _run(tmp_path / "pair", 2, 1, script=[PREPARED_SCRIPT, prepared, tmp_path / "pair"])

    def losses(run):
        return [(r["train_loss"], r["valid_loss"]) for r in map(json.loads, (run / "run" / "metrics.jsonl").open())]

    assert len(losses(single)) == 2
    np.testing.assert_allclose(losses(pair), losses(single), rtol=1e-12)
    a, meta_a = _checkpoint(single)
    b, meta_b = _checkpoint(pair)
    assert meta_a == meta_b
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-12, atol=1e-15), a, b)
    # each process reads only the batches of its own device (and, for a step whose slot on
    # it is blank, the step's first batch as the shape of its blank one)
    everything = json.loads((single / "reads-0.json").read_text())
    mine = [json.loads((pair / f"reads-{i}.json").read_text()) for i in (0, 1)]
    assert len(mine[0]) + len(mine[1]) >= len(everything)
    assert 0 < len(mine[0]) < len(everything) and 0 < len(mine[1]) < len(everything)


@pytest.mark.slow
def test_four_processes_train_as_one_process_with_four_devices(tmp_path):
    single = _run(tmp_path / "single", 1, 4)
    four = _run(tmp_path / "four", 4, 1)
    two_by_two = _run(tmp_path / "two_by_two", 2, 2)
    ref = _steps(single)[0]
    for run in (four, two_by_two):
        steps = _steps(run)
        assert all(s == steps[0] for s in steps)
        np.testing.assert_allclose(steps[0]["losses"], ref["losses"], rtol=1e-13)
        a, meta_a = _checkpoint(single)
        b, meta_b = _checkpoint(run)
        assert meta_a == meta_b
        jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-12, atol=1e-15), a, b)
