"""Kill-and-resume is bit-exact; a kill during a save never corrupts the previous checkpoint."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np

from jaxtl.train.checkpoint import LATEST, Checkpointer, load_model_variables

HERE = Path(__file__).parent
SCRIPT = HERE / "run_toy_training.py"


def _env(**extra):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(HERE.parent.parent), env.get("PYTHONPATH", "")])
    env.update(extra)
    return env


def _run(*args, timeout=300):
    out = subprocess.run(
        [sys.executable, str(SCRIPT), *map(str, args)], env=_env(), capture_output=True, text=True, timeout=timeout
    )
    assert out.returncode == 0, out.stderr[-3000:]


def _latest_arrays(out):
    c = Checkpointer(out)
    arrays, meta = c.restore(LATEST)
    c.close()
    return jax.tree.map(np.asarray, arrays), meta


def test_kill_and_resume_is_bit_exact(tmp_path):
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPT), str(killed), "--sleep", "0.4"],
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    latest = killed / "checkpoints" / LATEST
    deadline = time.time() + 240
    while time.time() < deadline:
        done = (
            [p for p in latest.glob("*") if p.name.isdigit() and (p / "commit_success.txt").exists()]
            if latest.exists()
            else []
        )
        if done or proc.poll() is not None:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "training finished before it could be killed"
    time.sleep(0.5)  # into the next epoch
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    arrays, meta = _latest_arrays(killed)
    assert 1 <= meta["epoch"] < 6, meta
    _run(killed, "--resume")
    _run(clean)
    a, meta_a = _latest_arrays(killed)
    b, meta_b = _latest_arrays(clean)
    assert meta_a == meta_b
    jax.tree.map(np.testing.assert_array_equal, a, b)
    jax.tree.map(
        np.testing.assert_array_equal, load_model_variables(killed / "model"), load_model_variables(clean / "model")
    )
    # The metrics log of the resumed run holds each epoch once.
    epochs = [l for l in (killed / "metrics.jsonl").read_text().splitlines()]
    assert len(epochs) == 6


SAVER = """
import sys, numpy as np
from jaxtl.train.checkpoint import Checkpointer
c = Checkpointer(sys.argv[1])
for step in range(1, 1000):
    print("saving", step, flush=True)
    c.save("latest", step, {"x": np.full((2_000_000,), float(step))}, {"step": step})
"""


def test_kill_during_save_keeps_previous_checkpoint(tmp_path):
    interrupted = 0
    # kills at growing delays after a save starts, until one lands inside a save (on a loaded
    # machine a save's files may appear later than a fixed delay); every kill keeps a checkpoint
    for delay in (0.0, 0.02, 0.05, 0.1, 0.2, 0.35, 0.5, 0.8):
        if interrupted:
            break
        out = tmp_path / f"d{delay}"
        proc = subprocess.Popen([sys.executable, "-c", SAVER, str(out)], env=_env(), stdout=subprocess.PIPE, text=True)
        for line in proc.stdout:
            if line.strip() == "saving 3":
                break
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        interrupted += any("tmp" in p.name for p in (out / "checkpoints" / LATEST).iterdir())
        c = Checkpointer(out)
        arrays, meta = c.restore(LATEST)
        c.close()
        assert meta["step"] >= 2
        np.testing.assert_array_equal(np.asarray(arrays["x"]), float(meta["step"]))
    assert interrupted, "no kill landed inside a save (only unfinished saves leave tmp folders)"


def test_sigterm_writes_the_epochs_held_in_memory(tmp_path):
    """With checkpoints written only at the first and last epoch, a SIGTERM (handled as the
    `jaxtl` command does) still leaves the last completed epoch on disk."""
    out = tmp_path / "terminated"
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPT), str(out), "--sleep", "0.2", "--epochs", "50"]
        + ["--checkpoint-interval", "1e9", "--sigterm-as-exit"],
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    log = out / "metrics.jsonl"
    deadline = time.time() + 240
    while not log.exists() or len(log.read_text().splitlines()) < 4:
        assert proc.poll() is None and time.time() < deadline, "training ended before four epochs"
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err[-2000:]
    _, meta = _latest_arrays(out)
    completed = [line for line in log.read_text().splitlines() if '"valid_loss"' in line]
    assert meta["epoch"] == len(completed) >= 4  # not just the first epoch
