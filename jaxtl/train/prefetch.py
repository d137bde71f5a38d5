"""Reading ahead: the next steps' batches read and padded on a background thread while the device trains.

A training step spends its time in XLA, which releases the GIL; the host work of the
next steps (reading structures from a prepared set, padding, stacking) can run
meanwhile. `Prefetch` runs an iterator on one background thread and hands its items
over through a queue of at most `depth` items:

* order: one producer, one FIFO queue, so the items arrive in the iterator's order
  whatever the threads' timing; a run's data order stays a function of (seed, epoch)
  and a run resumed from a checkpoint reads the same batches from the same position;
* memory: at most `depth` items wait (plus the one being made);
* errors: an exception of the iterator is raised in the consumer, at the item where
  it happened, with its own type and traceback;
* shutdown: `close()` (or leaving the `with` block, on any exception or
  KeyboardInterrupt of the consumer) stops the thread after the item it is making and
  waits for it, so no read outlives the epoch it belongs to.

With depth 0 the iterator runs on the calling thread (no thread at all).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")

_END = object()
_POLL_S = 0.05  # how often a blocked producer checks whether the consumer has gone


class Prefetch(Generic[T]):
    """Iterate `source` on a background thread, at most `depth` items ahead.

    Use as `with Prefetch(source, depth) as items: for x in items: ...`; iterate once.
    """

    def __init__(self, source: Iterable[T], depth: int):
        if depth < 0:
            raise ValueError(f"prefetch depth must be >= 0, got {depth}")
        self.depth = depth
        self._source = iter(source)
        self._queue: queue.Queue = queue.Queue(maxsize=max(depth, 1))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if depth:
            # a daemon thread: an interpreter that exits without closing us does not wait for it
            self._thread = threading.Thread(target=self._produce, name="jaxtl-prefetch", daemon=True)
            self._thread.start()

    def _put(self, entry) -> bool:
        """Queue `entry` unless the consumer stops first; whether it was queued."""
        while not self._stop.is_set():
            try:
                self._queue.put(entry, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self) -> None:
        try:
            for item in self._source:
                if not self._put((item, None)):
                    return
            self._put((_END, None))
        except BaseException as err:  # handed to the consumer, which raises it
            self._put((_END, err))

    def __iter__(self) -> Iterator[T]:
        if self._thread is None:
            yield from self._source
            return
        while True:
            item, err = self._queue.get()
            if err is not None:
                self.close()
                raise err
            if item is _END:
                return
            yield item

    def close(self) -> None:
        """Stop the producer after its current item and wait for it."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        close = getattr(self._source, "close", None)  # a generator source: run its finally blocks
        if close is not None and (self._thread is None or not self._thread.is_alive()):
            close()

    @property
    def running(self) -> bool:
        """Whether the background thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def __enter__(self) -> Prefetch[T]:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
