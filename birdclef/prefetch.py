"""Read ahead: an iterator's next items made in a background thread while the caller works on this one.

`predict` and `embed` decode and resample a file's next block of audio here while the model scores the
current one (issue 14: one long file keeps both cores busy). libsndfile and soxr release the GIL while
they work, so the decoding thread runs beside ONNX Runtime or TensorFlow.

    for block in prefetch(audio.stream(path)):   # same items, same order, same exceptions
        score(block)

An exception raised by the source is raised to the caller at the item where it happened. A caller that
stops early (an exception of its own, or `break`) stops the thread at its next item; nothing is left
running.
"""
from __future__ import annotations

import queue
import threading
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")
_END = object()


class _Raised:
    def __init__(self, error: BaseException):
        self.error = error


def prefetch(items: Iterable[T], depth: int = 2) -> Iterator[T]:
    """Yield the items of `items`, making up to `depth` of them ahead in a daemon thread."""
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

    def work():
        try:
            for x in items:
                if not put(x):
                    return
            put(_END)
        except BaseException as e:  # handed to the caller, raised there
            put(_Raised(e))
        finally:
            close = getattr(items, "close", None)
            if stop.is_set() and close is not None:
                close()  # a generator source: its `with` blocks (open files) end in this thread

    thread = threading.Thread(target=work, name="birdclef-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            x = q.get()
            if x is _END:
                return
            if isinstance(x, _Raised):
                raise x.error
            yield x
    finally:
        stop.set()
        thread.join()
