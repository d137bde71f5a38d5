"""Reading ahead on a background thread: the same items in the same order, errors raised where they
happened, bounded, and stopped when the consumer stops."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from jaxtl.graph.io import DataError
from jaxtl.graph.ondisk import OnDiskDataset, streamed_batches, write_ondisk
from jaxtl.train.parallel import group_batches
from jaxtl.train.prefetch import Prefetch

sys.path.insert(0, str(Path(__file__).parent.parent / "graph"))
from test_ondisk import structures  # noqa: E402


def _jittery(n: int, seed: int = 0, fail_at: int | None = None, log: list | None = None):
    """0..n-1 with random delays (so the threads' timing varies), optionally failing at `fail_at`."""
    rng = np.random.default_rng(seed)
    try:
        for i in range(n):
            time.sleep(float(rng.uniform(0, 0.004)))
            if i == fail_at:
                raise DataError(f"structure {i}: unreadable")
            if log is not None:
                log.append(i)
            yield i
    finally:
        if log is not None:
            log.append("closed")


@pytest.mark.parametrize("depth", [0, 1, 3])
def test_items_arrive_in_source_order(depth):
    for seed in range(3):
        with Prefetch(_jittery(40, seed), depth) as items:
            assert list(items) == list(range(40))
        assert not items.running


def test_an_error_of_the_source_is_raised_at_its_item():
    got = []
    with pytest.raises(DataError, match="structure 5: unreadable"):
        with Prefetch(_jittery(20, fail_at=5), 2) as items:
            got.extend(items)
    assert got == [0, 1, 2, 3, 4]
    assert not items.running


def test_the_thread_stays_at_most_depth_ahead_and_stops_with_the_consumer():
    produced = []
    with pytest.raises(KeyboardInterrupt):
        with Prefetch(_jittery(1000, log=produced), 3) as items:
            for i in items:
                if i == 4:
                    time.sleep(0.3)  # the producer fills the queue and waits
                    ahead = len(produced) - 1 - i
                    raise KeyboardInterrupt
    assert ahead <= 3 + 1  # the queue plus the item being handed over
    assert not items.running and produced[-1] == "closed"  # the source's finally ran
    assert not any(t.name == "jaxtl-prefetch" for t in threading.enumerate())


def _equal(a, b):
    jax.tree.map(np.testing.assert_array_equal, a, b)
    assert jax.tree.structure(a) == jax.tree.structure(b)


def test_prefetched_steps_are_the_steps_read_in_place(tmp_path):
    write_ondisk(iter(structures(23)), tmp_path / "set", 3.0, shard_size=5)
    batches = streamed_batches(OnDiskDataset(tmp_path / "set"), 3, seed=1)(0)
    plain = list(group_batches(batches, 2, np.float64))
    for depth in (1, 4):
        ahead = list(group_batches(batches, 2, np.float64, prefetch=depth))
        assert len(ahead) == len(plain)
        for (i, a, ta), (j, b, tb) in zip(ahead, plain):
            assert i == j and ta == tb
            _equal(a, b)
    # started at a step, the same steps from there on (resuming at a position)
    tail = list(group_batches(batches, 2, np.float64, prefetch=2, start=3))
    assert [s[0] for s in tail] == [s[0] for s in plain[3:]]
    _equal(tail[0][1], plain[3][1])


def test_validation_reads_ahead_and_gives_the_same_numbers(monkeypatch):
    """The evaluator (validation and the final test metrics) pads its steps on the prefetch thread
    when `TrainConfig.prefetch` > 0, with the same loss and metrics as in place."""
    sys.path.insert(0, str(Path(__file__).parent))
    import train_toy as T

    from jaxtl.train import TrainConfig
    from jaxtl.train import prefetch as prefetch_module
    from jaxtl.train.loop import make_evaluator

    depths = []

    class Recording(Prefetch):
        def __init__(self, source, depth):
            depths.append(depth)
            super().__init__(source, depth)

    monkeypatch.setattr(prefetch_module, "Prefetch", Recording)
    batches, variables = T.dataset(5, seed=3), T.init_variables(0)
    results = {}
    for depth in (0, 2):
        cfg = TrainConfig(dtype="float64", progress_bar=False, prefetch=depth)
        results[depth] = make_evaluator(T.predict, cfg)(variables, batches)
    assert depths == [0, 2]
    assert results[0][0] == results[2][0] and np.isfinite(results[0][0])
    assert results[0][1] == results[2][1]
