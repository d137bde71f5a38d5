"""A benchmark side (mace-torch's) in a process of its own, called in step with this one.

The scripts restart themselves with jaxtl's glibc tunables (jaxtl/_allocator.py), as the
`jaxtl` command does. mace-torch in the same process profits from them too (on the
2-core CPU its 64x0e+64x1o float64 training step took 1.7 s with them and 3.2 s
without), which is not how `mace_run_train` or mace's calculator run. `ChildSide` builds
a side in a child process started with the environment the script was started with
(jaxtl's tunables taken out, and JAXTL_NO_HUGEPAGES=1 so that an `import jaxtl` there
does not make the same settings with `mallopt`) and calls it over a pipe, so that both codes still alternate
call for call, each as its own command runs it. A call's time, taken in the parent,
includes the pipe's round trip (well under a millisecond).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import traceback
from collections.abc import Callable


def _serve(conn, factory: Callable, args: tuple, to_host: Callable, threads: int) -> None:
    """The child: torch with `threads` threads, the side built, then each "call" answered
    with ("ok", output) or ("error", traceback)."""
    try:
        import mace  # noqa: F401  (before e3nn)
        import torch

        # jaxtl imported here on purpose (a light import, no JAX): were the child's
        # JAXTL_NO_HUGEPAGES missing, its heap settings would be made now, and reported
        from jaxtl import _allocator

        torch.set_num_threads(threads)
        side = factory(*args)
        conn.send(
            (
                "ok",
                {name: getattr(side, name) for name in ("n_edges", "n_parameters") if hasattr(side, name)}
                | {
                    "glibc_tunables": os.environ.get("GLIBC_TUNABLES", ""),
                    "jaxtl_heap_settings": _allocator.heap_settings_made(),
                },
            )
        )
        while conn.recv() == "call":
            conn.send(("ok", to_host(side.sync(side()))))
    except Exception:  # noqa: BLE001  (handed to the parent, which raises it)
        conn.send(("error", traceback.format_exc()))


@contextlib.contextmanager
def _environ(env: dict):
    """os.environ replaced by `env` inside the block (a spawned child inherits it)."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _identity(out):
    return out


class ChildSide:
    """`factory(*args)` built and called in a child process without jaxtl's glibc tunables.

    The child runs torch with `threads` threads (all cores by default).
    factory and to_host must be module-level functions (they are pickled): factory builds
    the side (an object with `__call__` and `sync`), to_host turns a call's output into
    something picklable. The side's `n_edges`, `n_parameters` and the child's
    `GLIBC_TUNABLES` and whether it ran with jaxtl's heap settings (`jaxtl_heap_settings`)
    are copied to attributes here; `returned` keeps every call's output.
    An error in the child, or its death, is raised in this process.
    """

    def __init__(self, factory: Callable, args: tuple, to_host: Callable = _identity, threads: int | None = None):
        from jaxtl._allocator import without_tunable

        ctx = multiprocessing.get_context("spawn")
        self.conn, child_conn = ctx.Pipe()
        # JAXTL_NO_HUGEPAGES: an `import jaxtl` in the child (the factory's module may
        # import it) must not make jaxtl's heap settings in mace-torch's process either
        with _environ({**without_tunable(os.environ), "JAXTL_NO_HUGEPAGES": "1"}):
            self.process = ctx.Process(
                target=_serve, daemon=True, args=(child_conn, factory, args, to_host, threads or os.cpu_count())
            )
            self.process.start()
        self.__dict__.update(self._receive())
        self.returned: list = []

    def _receive(self):
        """The child's next answer; an error in the child, or its death, raised here."""
        while not self.conn.poll(1.0):
            if not self.process.is_alive():
                raise RuntimeError(f"the mace-torch child process died (exit code {self.process.exitcode})")
        status, payload = self.conn.recv()
        if status == "error":
            raise RuntimeError(f"the mace-torch child process failed:\n{payload}")
        return payload

    def __call__(self):
        self.conn.send("call")
        self.returned.append(self._receive())
        return self.returned[-1]

    @staticmethod
    def sync(out):
        return out

    def close(self) -> None:
        self.conn.send("stop")
        self.process.join(timeout=60)


def state_arrays(model) -> dict:
    """A torch module's state as numpy arrays (picklable without torch's shared memory)."""
    return {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}


def load_state(model, state: dict):
    """`model` with the weights of `state_arrays`."""
    import torch

    model.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
    return model
