"""birdclef.prefetch (issue 14): decoding runs beside inference, in order, with errors where they arose."""
import threading

import pytest

from birdclef.prefetch import ahead


def test_items_come_in_order_and_the_next_is_made_while_the_consumer_works():
    made_second = threading.Event()

    def produce():
        yield 0
        made_second.set()  # made while the consumer still holds item 0
        yield from range(1, 50)

    got = []
    for x in ahead(produce()):
        if x == 0:
            assert made_second.wait(5), "the producer did not run while the consumer worked"
        got.append(x)
    assert got == list(range(50))


def test_an_error_of_the_producer_reaches_the_consumer_after_the_items_before_it():
    def produce():
        yield from (1, 2)
        raise ValueError("bad block")

    got = []
    with pytest.raises(ValueError, match="bad block"):
        for x in ahead(produce()):
            got.append(x)
    assert got == [1, 2]


def test_a_consumer_that_stops_early_stops_the_producer_within_the_queue_depth():
    made = []

    def produce():
        for i in range(10_000):
            made.append(i)
            yield i

    it = ahead(produce(), depth=2)
    assert [next(it) for _ in range(3)] == [0, 1, 2]
    it.close()  # as a for loop's break or an exception does
    n = len(made)
    assert n <= 3 + 2 + 1  # consumed, queued, one in hand
    assert not [t for t in threading.enumerate() if t.name == "birdclef-prefetch"]
    assert len(made) == n
