"""One process of a (multi-process) `distill` job, for tests/distill/test_distill_distributed.py.

    python run_distill_process.py TEACHER STARTS OUT --num-processes P --process-id I --port PORT
    python run_distill_process.py TEACHER STARTS OUT                      (a single process)

Local devices come from XLA_FLAGS. Distils the tiny teacher's labels of STARTS (no MD) into a
tiny MACE student trained data parallel over every device of the job (global batch 4), and
writes OUT/labelled-I.json: the number of structures this process gave the teacher to label.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import jax
from local_job import add_job_args, join_local_job

GLOBAL_BATCH = 4
TINY_STUDENT = dict(hidden_irreps="4x0e", radial_MLP=(8,), correlation=1, MLP_irreps="4x0e", num_bessel=4)


def job_config(teacher_dir, starts, n_devices: int):
    """Labels of the starts as they are, a 2-epoch float64 student over `n_devices` devices."""
    from jaxtl.distill import (
        DistillConfig,
        DistillDataConfig,
        MACEStudentConfig,
        SpeedConfig,
    )
    from jaxtl.train.config import TrainConfig

    train = TrainConfig(max_num_epochs=2, dtype="float64", plot=False, progress_bar=False, n_devices=n_devices)
    return DistillConfig(
        str(teacher_dir),
        DistillDataConfig(starts=(str(starts),), label_batch_size=4, test_fraction=0.25),
        None,  # no MD: the starts are labelled as they are
        MACEStudentConfig(model=TINY_STUDENT, train=train, batch_size=GLOBAL_BATCH),
        SpeedConfig(structures=1, repeats=1),
    )


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("teacher")
    p.add_argument("starts")
    p.add_argument("out")
    add_job_args(p)
    args = p.parse_args()
    join_local_job(args, heartbeat_timeout_s=10)
    jax.config.update("jax_enable_x64", True)
    import jaxtl.distill.labelled_set as labelled_set
    from jaxtl.distill import distill

    labelled = []
    label = labelled_set.label_structures

    def counted(teacher, structures, *rest, **kwargs):
        labelled.append(len(structures))
        return label(teacher, structures, *rest, **kwargs)

    labelled_set.label_structures = counted
    distill(job_config(args.teacher, args.starts, jax.device_count()), args.out, progress=False)
    (Path(args.out) / f"labelled-{jax.process_index()}.json").write_text(json.dumps(sum(labelled)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
