"""One process of a (multi-process) job training a tiny MACE streamed from a prepared set,
for tests/train/test_distributed.py.

    python run_distributed_prepared.py PREPARED OUT --num-processes P --process-id I --port PORT
    python run_distributed_prepared.py PREPARED OUT                      (a single process)

Local devices come from XLA_FLAGS. Trains with `jaxtl.train.stream.train_from_prepared`
into OUT/run (global batch 6 over all devices) and writes OUT/reads-I.json: the padded
batches this process read from disk (`StreamedBatches.__getitem__` calls).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import jax
from local_job import add_job_args, join_local_job
from test_stream import MODEL  # the tiny model of the in-memory/streamed comparison (this folder is on sys.path)

GLOBAL_BATCH = 6


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("prepared")
    p.add_argument("out")
    add_job_args(p)
    args = p.parse_args()
    join_local_job(args, heartbeat_timeout_s=10)
    jax.config.update("jax_enable_x64", True)

    from jaxtl.graph.ondisk import StreamedBatches
    from jaxtl.train import TrainConfig
    from jaxtl.train.distributed import per_device_batch_size
    from jaxtl.train.stream import PreparedData, train_from_prepared

    reads = []
    read = StreamedBatches.__getitem__

    def counted(self, i):
        reads.append(int(i))
        return read(self, i)

    StreamedBatches.__getitem__ = counted
    batch = per_device_batch_size(GLOBAL_BATCH, jax.device_count())
    cfg = TrainConfig(max_num_epochs=2, dtype="float64", n_devices=jax.device_count(), progress_bar=False, plot=False)
    train_from_prepared(
        PreparedData(args.prepared, batch_size=batch, valid_batch_size=batch),
        Path(args.out) / "run",
        model=MODEL,
        train_config=cfg,
    )
    (Path(args.out) / f"reads-{jax.process_index()}.json").write_text(json.dumps(reads))
    return 0


if __name__ == "__main__":
    sys.exit(main())
