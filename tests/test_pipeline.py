"""The shared input path: batches in order, as tensors, errors where they happened, no thread left."""

import itertools
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


def consumed_crc32(source, take=None):
    """input_crc32 after consuming `take` batches of `source` (None: all of them)."""
    with Prefetcher(source) as it:
        for _ in itertools.islice(it, take):
            pass
        return it.input_crc32


def test_the_input_fingerprint_is_the_consumed_bytes_in_order():
    """Same arrays in the same order: the same number, however they were made (a
    non-contiguous view of the same values included); one changed value, two swapped batches
    or one batch fewer: another."""
    import zlib

    same = consumed_crc32(batches(4))
    assert same == consumed_crc32(batches(4))
    views = ((np.full((3, 2), i, np.float32).T, np.array([i, i], np.int64)) for i in range(4))
    assert consumed_crc32(views) == same
    changed = list(batches(4))
    changed[2][0][1, 1] = np.nextafter(np.float32(2), np.float32(3))  # one ulp
    assert consumed_crc32(iter(changed)) != same
    swapped = list(batches(4))
    swapped[1], swapped[2] = swapped[2], swapped[1]
    assert consumed_crc32(iter(swapped)) != same
    assert consumed_crc32(batches(4), take=3) == consumed_crc32(batches(3)) != same
    assert consumed_crc32(batches(0)) == 0
    # By definition: the CRC-32 of the batches' CRC-32s (little-endian uint32s).
    per_batch = [zlib.crc32(y.tobytes(), zlib.crc32(x.tobytes())) for x, y in batches(4)]
    assert same == zlib.crc32(np.asarray(per_batch, "<u4").tobytes())
