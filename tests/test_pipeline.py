"""The shared input path: batches in order, as tensors, errors where they happened, no thread left."""

import threading

import numpy as np
import pytest

from ai500.data.pipeline import Prefetcher


def batches(n, fail_at=None):
    for i in range(n):
        if i == fail_at:
            raise ValueError(f"bad batch {i}")
        yield np.full((2, 3), i, np.float32), np.array([i, i], np.int64)


def prefetch_threads():
    return [t for t in threading.enumerate() if t.name == "ai500-prefetch"]


def test_batches_arrive_in_order_as_tensors_and_the_thread_ends():
    with Prefetcher(batches(5), depth=2) as it:
        got = [(x.numpy()[0, 0], y.numpy().tolist()) for x, y in it]
    assert got == [(float(i), [i, i]) for i in range(5)]
    assert not prefetch_threads()


def test_an_error_in_the_generator_is_raised_at_its_batch():
    with Prefetcher(batches(5, fail_at=3)) as it:
        assert [int(next(it)[0].numpy()[0, 0]) for _ in range(3)] == [0, 1, 2]
        with pytest.raises(ValueError, match="bad batch 3"):
            next(it)
    assert not prefetch_threads()


def test_an_abandoned_epoch_stops_the_producer():
    with Prefetcher(batches(1000), depth=1) as it:
        next(it)
    assert not prefetch_threads()


def test_depth_must_be_positive():
    with pytest.raises(ValueError):
        Prefetcher(batches(1), depth=0)
