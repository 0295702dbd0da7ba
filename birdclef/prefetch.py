"""Run a generator in a background thread, a few items ahead of its consumer.

`predict` decodes and resamples audio (libsndfile and soxr, which release the GIL) while the model
scores the blocks before: on one long file the next block is decoded during inference of the current
one, and on many short files the next files are decoded while the current one is scored. The queue is
bounded, so memory stays at `depth` items; an error in the generator reaches the consumer where the
item would have; a consumer that stops early (an error, Ctrl-C) stops the thread too.
"""
from __future__ import annotations

import queue
import threading
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")
_END = object()


class _Failed:
    def __init__(self, error: BaseException):
        self.error = error


def ahead(items: Iterable[T], depth: int = 2) -> Iterator[T]:
    """Yield what `items` yields, produced in a daemon thread up to `depth` items ahead."""
    q: queue.Queue = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def put(x) -> bool:
        while not stop.is_set():
            try:
                q.put(x, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce():
        try:
            for x in items:
                if not put(x):
                    return
        except BaseException as e:  # noqa: BLE001 - handed to the consumer, raised there
            put(_Failed(e))
            return
        put(_END)

    thread = threading.Thread(target=produce, name="birdclef-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            x = q.get()
            if x is _END:
                return
            if isinstance(x, _Failed):
                raise x.error
            yield x
    finally:
        stop.set()
        thread.join(timeout=5)
