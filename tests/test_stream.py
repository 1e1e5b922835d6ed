"""ai500.data.stream: streamed batches equal staged ones for every dataset layout, the auto rule,
the reads a batch makes, bounded memory, and rank 0's inspection broadcast (no MPI here)."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from ai500 import dist as distlib
from ai500.data import cosmo, hep, stream, weather, weather_synthetic
from ai500.dist import Dist
from ai500.errors import ConfigError, DataError

S = 16


def _hep_set(d):
    d.mkdir()
    hep.write_split(d / "train-a.h5", 30, seed=1, image_size=S)
    hep.write_split(d / "train-b.h5", 27, seed=2, image_size=S)
    hep.write_split(d / "val.h5", 13, seed=3, image_size=S)
    return lambda split: hep.HepLayout(split.sample_shape[1]), hep.inspect_splits(d, S)


def _cosmo_set(d):
    d.mkdir()
    cosmo.write_split(d / "train-a.npy", 23, seed=1, size=S)
    # a float64 file: read through a scratch block and converted, like np.asarray(..., float32)
    np.save(d / "train-b.npy", cosmo.generate_maps(0, 31, seed=2, size=S).astype(np.float64) * 1.1)
    cosmo.write_split(d / "val.npy", 9, seed=3, size=S)
    return lambda split: cosmo.CosmoLayout(split.sample_shape[0]), cosmo.inspect_splits(d, S)


def _weather_set(d):
    d.mkdir()
    weather_synthetic.write_split(d / "train-a.h5", 9, seed=1, height=32, width=48)
    weather_synthetic.write_split(d / "train-b.h5", 8, seed=2, height=32, width=48)
    weather_synthetic.write_split(d / "val.h5", 5, seed=3, height=32, width=48)
    return lambda split: weather.WeatherLayout(split.sample_shape), weather.inspect_splits(d)


@pytest.mark.parametrize("make", [_hep_set, _cosmo_set, _weather_set], ids=["hep", "cosmo", "weather"])
@pytest.mark.parametrize("rank", [0, 1])
def test_streamed_batches_equal_staged_batches(tmp_path, make, rank):
    layout, splits = make(tmp_path / "d")
    staged, memory = stream.stage_splits(layout, splits, rank, 2, 2, "memory")
    streamed, streaming = stream.stage_splits(layout, splits, rank, 2, 2, "stream")
    assert (memory.mode, streaming.mode) == ("memory", "stream")
    assert isinstance(staged["train"], stream.Staged) and isinstance(streamed["train"], stream.Streamed)
    assert memory.shard_bytes == streaming.shard_bytes
    for split in ("train", "val"):
        assert len(staged[split]) == len(streamed[split]) and staged[split].start == streamed[split].start
    # a training shard spanning both files for rank 1 (train-a holds 30/23/9 samples, the shard half)
    n = len(staged["train"])
    for epoch in range(3):
        _, order = stream.epoch_order(7, epoch, rank, n)
        a = list(staged["train"].batches(stream.step_indices(order, 4, n // 4)))
        b = list(streamed["train"].batches(stream.step_indices(order, 4, n // 4)))
        assert len(a) == len(b) == n // 4
        for x, y in zip(a, b):
            assert x.keys() == y.keys()
            for key in x:
                assert x[key].dtype == y[key].dtype == np.float32
                np.testing.assert_array_equal(x[key], y[key])
    val = [list(s["val"].batches(stream.blocks(len(s["val"]), 3))) for s in (staged, streamed)]
    for x, y in zip(*val):
        for key in x:
            np.testing.assert_array_equal(x[key], y[key])


def test_staged_shard_is_what_the_files_hold(tmp_path):
    layout, splits = _hep_set(tmp_path / "d")
    shards, _ = stream.stage_splits(layout, splits, 1, 2, 1, "memory")
    train = shards["train"]
    start = train.start  # 28: events 28, 29 of train-a then 0..25 of train-b
    expected = [hep.generate_events(start, 30 - start, 1, S), hep.generate_events(0, 26, 2, S)]
    data = np.concatenate([e["data"] for e in expected]).transpose(0, 2, 3, 1)
    np.testing.assert_array_equal(train.field("data"), data)
    assert train.field("data").flags.c_contiguous
    np.testing.assert_array_equal(train.field("label"),
                                  np.concatenate([e["label"] for e in expected]))


def test_epoch_order_is_the_workloads_order():
    rng, order = stream.epoch_order(3, 2, 1, 50)
    np.testing.assert_array_equal(order, np.random.default_rng([3, 2, 1]).permutation(50))
    steps = list(stream.step_indices(order, 8, 6))
    assert len(steps) == 6 and all(np.all(np.diff(s) > 0) for s in steps)
    np.testing.assert_array_equal(steps[2], np.sort(order[16:24]))
    # the generator goes on where the permutation left it (faster_rcnn draws crops from it)
    assert rng.integers(0, 1 << 30) == _after_permutation(3, 2, 1, 50)


def _after_permutation(seed, epoch, rank, n):
    rng = np.random.default_rng([seed, epoch, rank])
    rng.permutation(n)
    return rng.integers(0, 1 << 30)


class _Spy:
    """A layout recording its reads: sample i of file f has the value 1000 f + i."""

    unit = "samples"
    resident = ()

    def __init__(self):
        self.fields = {"x": (2,)}
        self.reads, self.opened = [], []

    def open(self, path):
        self.opened.append(path.name)
        from contextlib import nullcontext
        return nullcontext(int(path.name[1:]))

    def read(self, handle, path, lo, hi, out):
        self.reads.append((path.name, lo, hi))
        out["x"][:] = (1000 * handle + np.arange(lo, hi, dtype=np.float32))[:, None]


def test_a_batch_is_read_as_contiguous_runs_and_only_its_files_are_opened():
    spy = _Spy()
    split = stream.SplitFiles(("f0", "f1", "f2", "f3"), (5, 5, 5, 5), (2,))
    shard = stream.Shard(spy, split, 3, 14)  # global 3..13: f0 rows 3-4, f1 all, f2 rows 0-3
    with shard.reader() as read:
        got = read(np.array([0, 1, 2, 3, 7, 9, 10]))["x"][:, 0]
    # shard rows 0-3 are global 3-6 (f0 3..5, f1 0..2), 7 is global 10 (f2 0), 9-10 global 12-13
    assert spy.reads == [("f0", 3, 5), ("f1", 0, 2), ("f2", 0, 1), ("f2", 2, 4)]
    np.testing.assert_array_equal(got, [3, 4, 1000, 1001, 2000, 2002, 2003])
    assert spy.opened == ["f0", "f1", "f2"]  # f3 holds none of the shard: never opened
    spy.reads.clear()
    small = stream.Shard(spy, split, 0, 20, block_bytes=3 * 8)  # 3 samples of 8 bytes a block
    small.load()
    assert [r for r in spy.reads if r[0] == "f0"] == [("f0", 0, 3), ("f0", 3, 5)]
    with pytest.raises(ValueError, match="sorted"), shard.reader() as read:
        read(np.array([2, 1]))


def test_auto_streams_when_the_shard_exceeds_its_share_of_memory():
    gib = 1 << 30
    big = stream.choose_stage("auto", 3 * gib, ranks_on_node=4, files=True, mem_available=16 * gib)
    assert big.mode == "stream" and big.limit_bytes == 2 * gib  # 0.5 x 16 GiB / 4 ranks
    assert "auto" in big.reason and str(2 * gib) in big.reason
    small = stream.choose_stage("auto", gib, ranks_on_node=4, files=True, mem_available=16 * gib)
    assert small.mode == "memory" and small.limit_bytes == 2 * gib
    assert stream.choose_stage("memory", 3 * gib, 4, True, 16 * gib).mode == "memory"
    assert stream.choose_stage("stream", 1, 4, True, 16 * gib).mode == "stream"
    synthetic = stream.choose_stage("auto", 3 * gib, 4, files=False, mem_available=16 * gib)
    assert synthetic.mode == "memory" and "synthetic" in synthetic.reason
    with pytest.raises(ConfigError, match="--stage stream .* --data"):
        stream.choose_stage("stream", 1, 1, files=False)


def test_auto_through_stage_splits_with_a_small_memory_figure(tmp_path):
    layout, splits = _hep_set(tmp_path / "d")
    shards, choice = stream.stage_splits(layout, splits, 0, 2, 2, "auto", mem_available=100_000)
    assert choice.mode == "stream" and isinstance(shards["train"], stream.Streamed)
    assert choice.shard_bytes > choice.limit_bytes == 25_000
    shards, choice = stream.stage_splits(layout, splits, 0, 2, 2, "auto", mem_available=1 << 34)
    assert choice.mode == "memory" and isinstance(shards["train"], stream.Staged)


def test_mem_available_from_meminfo(tmp_path):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       16000 kB\nMemAvailable:    8000 kB\n")
    assert stream.mem_available_bytes(meminfo) == 8000 * 1024
    meminfo.write_text("MemTotal:       16000 kB\n")
    assert stream.mem_available_bytes(meminfo) is None
    assert stream.mem_available_bytes(tmp_path / "none") is None


def _peak_while(fn) -> int:
    """Peak bytes traced (numpy's buffers included) above what was held before fn() ran."""
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        fn()
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


def test_streaming_holds_a_few_batches_and_loading_one_copy(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    size = 32
    hep.write_split(d / "train.h5", 640, seed=1, image_size=size)
    hep.write_split(d / "val.h5", 8, seed=2, image_size=size)
    layout = hep.HepLayout(size)
    splits = hep.inspect_splits(d, size)
    batch = 16
    batch_bytes = batch * stream.sample_bytes(layout)
    shard = stream.Shard(layout, splits["train"], 0, 640)
    assert shard.nbytes == 40 * batch_bytes

    def epoch():
        streamed = stream.Streamed(shard)
        _, order = stream.epoch_order(0, 0, 0, len(streamed))
        kept = []  # the Prefetcher's queue and the batch in training: 3 batches alive at once
        for b in streamed.batches(stream.step_indices(order, batch, 40)):
            kept = [*kept[-2:], b]

    # resident labels and weights (12 B an event) plus about 4 batches: a tenth of the shard
    assert _peak_while(epoch) < 640 * 12 + 5 * batch_bytes < shard.nbytes / 6
    loaded = {}
    block = 1 << 18
    # the whole shard once, plus one block read (not pieces, a concatenation and a transposed copy)
    blocked = stream.Shard(layout, splits["train"], 0, 640, block_bytes=block)
    peak = _peak_while(lambda: loaded.update(blocked.load()))
    assert shard.nbytes <= peak < shard.nbytes + 2 * block


def _dist(rank: int, size: int) -> Dist:
    return Dist(rank=rank, size=size, local_rank=rank, local_size=size, host="h")


@pytest.mark.parametrize("rank", [0, 1])
def test_once_computes_on_rank_0_and_raises_its_error_everywhere(monkeypatch, rank):
    sent = []
    root_result = {}

    def broadcast(obj, name):
        sent.append((obj, name))
        return root_result["value"]

    monkeypatch.setattr(distlib, "broadcast_object", broadcast)
    calls = []
    root_result["value"] = ({"n": 3}, None)
    assert stream.once(_dist(rank, 2), lambda: calls.append(1) or {"n": 3}, "x") == {"n": 3}
    assert calls == ([1] if rank == 0 else [])  # only rank 0 inspects
    assert sent[-1][1] == "data.x"

    def bad():
        raise DataError("train.h5: no such file")

    root_result["value"] = (None, "train.h5: no such file")
    with pytest.raises(DataError, match="train.h5: no such file") as info:
        stream.once(_dist(rank, 2), bad, "x")
    assert info.value.everywhere
    if rank == 0:
        assert sent[-1][0] == (None, "train.h5: no such file")
    assert stream.once(_dist(0, 1), lambda: 5, "x") == 5  # one rank: no broadcast
