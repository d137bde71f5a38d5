"""What the tests' job scripts share: one process of a job on 127.0.0.1 (jax.distributed).

p = argparse.ArgumentParser(); ...; add_job_args(p); args = p.parse_args()
join_local_job(args, heartbeat_timeout_s=10)     # nothing to join when --num-processes is 1
"""

from __future__ import annotations

import argparse

from jaxtl.train.distributed import DistributedConfig, initialize


def add_job_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--num-processes", type=int, default=1)
    p.add_argument("--process-id", type=int, default=0)
    p.add_argument("--port", type=int, default=0)


def join_local_job(args, **timeouts) -> None:
    """Join the job of `args.num_processes` processes whose coordinator listens on
    127.0.0.1:`args.port` (before any JAX computation); `timeouts`: DistributedConfig's."""
    if args.num_processes > 1:
        initialize(DistributedConfig(f"127.0.0.1:{args.port}", args.num_processes, args.process_id, **timeouts))
