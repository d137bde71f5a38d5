"""Multi-host data parallelism on JAX's own multi-controller runtime (`jax.distributed`).

Every process runs the same program. `initialize` starts the runtime (from
explicit settings or, with none given, from the SLURM / Open MPI / Cloud TPU
environment, as `jax.distributed.initialize()` detects it); afterwards
`jax.devices()` lists the devices of all processes and `parallel.make_mesh`
builds one data mesh over them. Each process computes the same epoch plan from
the global dataset (same seed, same budgets, hence the same padded shapes and no
process recompiling for another), pads only the batches of its own devices, and
`parallel.group_batches` forms global arrays from them with
`jax.make_array_from_process_local_data`. Gradients and loss terms are summed
over the whole mesh inside the jitted step, so every process holds the same
replicated state.

Checkpoints are written by all processes together through Orbax (which
coordinates them: one copy of each replicated array, metadata by process 0);
logs, metrics and the final model folder are written by process 0 only.

A process that dies stops the others: a collective with the lost peer fails
(`DistributedError`, raised by the step), and the coordination service, which
expects a heartbeat from each process every `heartbeat_timeout_s`, terminates
any process still waiting. Restart every process with `--resume` to continue
from the last checkpoint; with the same number of processes (and devices) the
continued run is bit for bit the uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import logging

import jax
import numpy as np

log = logging.getLogger("jaxtl.train")


class DistributedError(RuntimeError):
    """Another process of a multi-process job died or could not be reached."""


@dataclasses.dataclass(frozen=True)
class DistributedConfig:
    """How this process joins a multi-process job (names as `jax.distributed.initialize`'s).

    Attributes:
        coordinator_address: "HOST:PORT" of process 0's coordination service; None:
            detected from the cluster environment (SLURM, Open MPI, Cloud TPU).
        num_processes: processes in the job; None: detected.
        process_id: this process's rank, 0 .. num_processes - 1; None: detected.
        local_device_ids: the accelerators this process drives; None: JAX's default
            (all visible ones, or one GPU per task under SLURM / Open MPI).
        heartbeat_timeout_s: a process silent this long is declared dead and the
            job stops (JAX's default 100 s).
        initialization_timeout_s: how long a process waits for all others to join.
    """

    coordinator_address: str | None = None
    num_processes: int | None = None
    process_id: int | None = None
    local_device_ids: tuple[int, ...] | None = None
    heartbeat_timeout_s: int = 100
    initialization_timeout_s: int = 300

    def __post_init__(self):
        if self.coordinator_address is not None and ":" not in self.coordinator_address:
            raise ValueError(f"coordinator_address must be HOST:PORT, got {self.coordinator_address!r}")
        if self.num_processes is not None and self.num_processes < 1:
            raise ValueError(f"num_processes must be positive, got {self.num_processes}")
        if (
            self.process_id is not None
            and self.num_processes is not None
            and not 0 <= self.process_id < self.num_processes
        ):
            raise ValueError(f"process_id {self.process_id} is not in 0..{self.num_processes - 1}")

    @classmethod
    def auto(cls, **timeouts) -> DistributedConfig:
        """Everything detected from the cluster's environment."""
        return cls(**timeouts)

    @property
    def is_auto(self) -> bool:
        return self.coordinator_address is None and self.num_processes is None and self.process_id is None


def initialize(cfg: DistributedConfig) -> None:
    """Start JAX's distributed runtime (once, before any other JAX call) and log the layout."""
    if jax.distributed.is_initialized():
        return
    explicit = {
        "coordinator_address": cfg.coordinator_address,
        "num_processes": cfg.num_processes,
        "process_id": cfg.process_id,
        "local_device_ids": list(cfg.local_device_ids) if cfg.local_device_ids is not None else None,
    }
    try:
        jax.distributed.initialize(
            **{k: v for k, v in explicit.items() if v is not None},
            initialization_timeout=cfg.initialization_timeout_s,
            heartbeat_timeout_seconds=cfg.heartbeat_timeout_s,
        )
    except ValueError as err:
        if cfg.is_auto:
            raise ValueError(
                f"{err}: no cluster environment (SLURM, Open MPI, Cloud TPU) was detected; give "
                "--coordinator-address HOST:PORT --num-processes N --process-id I"
            ) from err
        raise
    log.info(
        "process %d of %d: %d local of %d devices (%s); a process silent for %d s stops the job",
        jax.process_index(),
        jax.process_count(),
        jax.local_device_count(),
        jax.device_count(),
        jax.devices()[0].platform,
        cfg.heartbeat_timeout_s,
    )


def is_primary() -> bool:
    """True on the process that writes logs and files (process 0; always in a single-process run)."""
    return jax.process_index() == 0


def barrier(name: str) -> None:
    """Wait until every process of the job gets here (`name`: the same on all); at once in a
    single process. Used after process 0 writes a file the others then read."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def primary_decides(flag: bool) -> bool:
    """Process 0's `flag` on every process (a collective: all must call it together); `flag`
    itself in a single process. For choices, such as when to save, that must agree."""
    if jax.process_count() == 1:
        return bool(flag)
    from jax.experimental import multihost_utils

    return bool(multihost_utils.broadcast_one_to_all(np.asarray(flag, dtype=np.int32)))


def per_device_batch_size(global_batch_size: int, n_devices: int) -> int:
    """Structures per padded device batch when `global_batch_size` are split over `n_devices`."""
    if global_batch_size % n_devices:
        raise ValueError(
            f"the batch size ({global_batch_size}) is the global batch of one step and must be a "
            f"multiple of the number of devices ({n_devices})"
        )
    return global_batch_size // n_devices


def lost_peer(err: Exception) -> bool:
    """Whether a runtime error is a collective that lost another process."""
    text = str(err)
    return any(
        s in text
        for s in (
            "Gloo",
            "Connection closed by peer",
            "Connection reset",
            "heartbeat",
            "CoordinationService",
            "NCCL",
            "DEADLINE_EXCEEDED",
        )
    )


def peer_error(err: Exception, what: str) -> DistributedError:
    """The error a process raises when `what` failed because another process is gone."""
    return DistributedError(
        f"process {jax.process_index()} of {jax.process_count()}: {what} failed because another process of the "
        f"job died or became unreachable ({str(err).splitlines()[0][:200]}). The job stops; restart every "
        "process with --resume to continue from the last checkpoint"
    )
