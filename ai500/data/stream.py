"""The one reader of every dataset layout's files: a rank's shard staged in memory or streamed.

A split is a list of files (SplitFiles, found once by rank 0's inspection and broadcast, `once`);
a rank's shard is a contiguous range [start, stop) of its global sample index (common.shard_range).
Each dataset module supplies a Layout: the fields a sample delivers (float32, their per-sample
shapes) and how to read rows lo..hi of one of its files straight into preallocated output slices,
checking them. This module does the rest for all of them:

- `Shard.load` (--stage memory): the whole shard into buffers allocated once, in blocks of at
  most BLOCK_BYTES, so loading holds the shard plus one block (not pieces, their concatenation and
  a transposed copy);
- `Streamed` (--stage stream): only the `resident` fields (labels, weights, boxes: bytes per
  sample) are held; every batch's samples are read from the files when the batch is made, in the
  driver's prefetch thread (ai500.data.pipeline.Prefetcher runs train_batches ahead of the step);
- both give the same batches for the same indices, bit for bit (the same reads, the same
  conversion); the indices of an epoch come from `epoch_order`/`step_indices`, the order every
  workload used before streaming existed.

A batch's indices are sorted, so a batch is read as contiguous runs (each split at file and block
boundaries): one read per run and field, never a sample twice.

Memory of a streamed shard: the resident fields, plus the batches in flight: the one being read,
the Prefetcher's queue (2) and the one training: about 4 batches, whatever the shard's size.

`--stage auto` streams when the shard (training + validation, as float32) exceeds MEMORY_SHARE of
the node's MemAvailable (/proc/meminfo, read by each rank when it stages) divided by the ranks on
the node; a synthetic set (no --data) is generated in memory and is never streamed.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np

from ai500.config import STAGES
from ai500.data import common
from ai500.errors import Ai500Error, ConfigError, DataError

MEMORY_SHARE = 0.5  # auto: a rank may stage at most this share of MemAvailable / ranks on the node
BLOCK_BYTES = 8 << 20  # at most this many bytes of one field are read in one call (loading's scratch)
MEMINFO = Path("/proc/meminfo")

T = TypeVar("T")


@dataclass(frozen=True)
class SplitFiles:
    """One split as inspection found it: its files (sorted), the samples in each, and the shape of
    one sample's main array in the files (e.g. (3, S, S)). Picklable, for `once`."""

    files: tuple[str, ...]
    counts: tuple[int, ...]
    sample_shape: tuple[int, ...]

    @property
    def total(self) -> int:
        return sum(self.counts)


def inspect_splits(data_dir: Path, suffix: str,
                   inspect: Callable[[list[Path]], tuple[list[int], tuple[int, ...]]],
                   splits: tuple[str, ...] = common.SPLITS) -> dict[str, SplitFiles]:
    """Each split's files `<split>*<suffix>` under data_dir checked by inspect(files) -> (samples
    per file, sample shape), every split before any sample is read. Meant for rank 0 alone
    (`once` broadcasts the result)."""
    found = {}
    for split in splits:
        files = common.split_files(Path(data_dir), split, suffix)
        counts, shape = inspect(files)
        found[split] = SplitFiles(tuple(map(str, files)), tuple(counts), tuple(shape))
    return found


class Layout(Protocol):
    """A dataset's file layout as the reader needs it (see hep.HepLayout for an example)."""

    unit: str  # what a sample is called in messages ("events", "maps", "fields")
    fields: dict[str, tuple[int, ...]]  # name -> per-sample shape of the float32 output
    resident: tuple[str, ...]  # small fields a streamed shard holds whole (bytes per sample)

    def open(self, path: Path) -> contextlib.AbstractContextManager[Any]:
        """Open one file for reading (a DataError naming it if it cannot be)."""

    def read(self, handle: Any, path: Path, lo: int, hi: int, out: dict[str, np.ndarray]) -> None:
        """Fill out[name] (hi - lo rows each, C-contiguous float32, only the names given) from
        rows lo..hi-1 of the file; DataError naming the file and rows for a bad read or value."""


def sample_bytes(layout: Layout, names: Iterable[str] | None = None) -> int:
    """Bytes of one sample's float32 fields (all, or `names`)."""
    names = layout.fields if names is None else names
    return sum(4 * math.prod(layout.fields[k]) for k in names)


class Shard:
    """Rows [start, stop) of a split's global sample index, read through `layout`."""

    def __init__(self, layout: Layout, split: SplitFiles, start: int, stop: int,
                 block_bytes: int = BLOCK_BYTES):
        if not 0 <= start <= stop <= split.total:
            raise ValueError(f"shard [{start}, {stop}) is outside 0..{split.total}")
        self.layout, self.split, self.start, self.stop = layout, split, start, stop
        self.block_bytes = block_bytes

    def __len__(self) -> int:
        return self.stop - self.start

    @property
    def nbytes(self) -> int:
        """Bytes of the whole shard in memory (float32)."""
        return len(self) * sample_bytes(self.layout)

    def _pieces(self, rows: np.ndarray, names: tuple[str, ...]) -> Iterator[tuple[str, int, int, int]]:
        """(file, lo, hi, at): file rows lo..hi-1 go to output rows at..at+hi-lo-1, for the sorted
        shard-local `rows`, as contiguous runs split at file boundaries and into blocks."""
        block = max(1, self.block_bytes // max(1, sample_bytes(self.layout, names)))
        where = rows.astype(np.int64) + self.start
        breaks = np.flatnonzero(np.diff(where) != 1) + 1
        for a, b in zip(np.r_[0, breaks], np.r_[breaks, len(where)]):
            at = int(a)
            for path, lo, hi in common.file_ranges(list(self.split.files), list(self.split.counts),
                                                   int(where[a]), int(where[b - 1]) + 1):
                for first in range(lo, hi, block):
                    last = min(hi, first + block)
                    yield path, first, last, at
                    at += last - first

    @contextlib.contextmanager
    def reader(self) -> Iterator[Callable[..., dict[str, np.ndarray]]]:
        """A context giving read(rows, names=all) -> {name: float32 (len(rows), ...)} for sorted
        shard-local rows; each file is opened on first use (only files holding the shard's rows
        are ever opened) and closed when the context ends."""
        with contextlib.ExitStack() as stack:
            handles: dict[str, Any] = {}

            def read(rows: np.ndarray, names: tuple[str, ...] | None = None) -> dict[str, np.ndarray]:
                names = tuple(self.layout.fields) if names is None else names
                rows = np.asarray(rows)
                if rows.size and (rows[0] < 0 or rows[-1] >= len(self) or np.any(np.diff(rows) <= 0)):
                    raise ValueError("rows must be sorted, unique and inside the shard")
                out = {k: np.empty((rows.size, *self.layout.fields[k]), np.float32) for k in names}
                if not names or not rows.size:
                    return out
                for path, lo, hi, at in self._pieces(rows, names):
                    if path not in handles:
                        handles[path] = stack.enter_context(self.layout.open(Path(path)))
                    self.layout.read(handles[path], Path(path), lo, hi,
                                     {k: v[at:at + hi - lo] for k, v in out.items()})
                return out

            yield read

    def load(self, names: tuple[str, ...] | None = None) -> dict[str, np.ndarray]:
        """The whole shard's fields (all, or `names`) read into buffers allocated once."""
        with self.reader() as read:
            return read(np.arange(len(self)), names)


class Staged:
    """A shard held in memory (--stage memory, and every synthetic set)."""

    mode = "memory"

    def __init__(self, arrays: dict[str, np.ndarray], start: int = 0):
        lengths = {len(v) for v in arrays.values()}
        if len(lengths) != 1:
            raise ValueError(f"fields of different lengths {sorted(lengths)}")
        self.arrays, self.start = arrays, start

    def __len__(self) -> int:
        return len(next(iter(self.arrays.values())))

    def field(self, name: str) -> np.ndarray:
        """One field of the whole shard."""
        return self.arrays[name]

    def batches(self, indices: Iterable[np.ndarray]) -> Iterator[dict[str, np.ndarray]]:
        """{field: rows idx} for each sorted index array in `indices`."""
        for idx in indices:
            yield {k: v[idx] for k, v in self.arrays.items()}


class Streamed:
    """A shard read from its files batch by batch (--stage stream): only the layout's resident
    fields are held (read when it is opened, so their errors come at staging)."""

    mode = "stream"

    def __init__(self, shard: Shard):
        self.shard, self.start = shard, shard.start
        self.resident = shard.load(shard.layout.resident)
        self.streamed = tuple(k for k in shard.layout.fields if k not in shard.layout.resident)

    def __len__(self) -> int:
        return len(self.shard)

    def field(self, name: str) -> np.ndarray:
        """One resident field of the whole shard (a streamed one is never held whole)."""
        if name not in self.resident:
            raise KeyError(f"{name} is streamed, not held: read it through batches()")
        return self.resident[name]

    def batches(self, indices: Iterable[np.ndarray]) -> Iterator[dict[str, np.ndarray]]:
        """As Staged.batches, each batch read from the files (its files stay open until the
        iteration ends)."""
        with self.shard.reader() as read:
            for idx in indices:
                batch = read(idx, self.streamed)
                batch.update({k: v[idx] for k, v in self.resident.items()})
                yield batch


def epoch_order(seed: int, epoch: int, rank: int, n: int) -> tuple[np.random.Generator, np.ndarray]:
    """The generator of (seed, epoch, rank) and the permutation of a rank's n training samples
    it draws first (a workload may draw more from it, e.g. crop offsets)."""
    rng = np.random.default_rng([seed, epoch, rank])
    return rng, rng.permutation(n)


def step_indices(order: np.ndarray, batch: int, steps: int) -> Iterator[np.ndarray]:
    """The sorted indices of each of `steps` batches of `batch` samples taken from `order`."""
    for step in range(steps):
        yield np.sort(order[step * batch:(step + 1) * batch])


def blocks(n: int, size: int) -> Iterator[np.ndarray]:
    """Indices 0..n-1 in consecutive blocks of `size` (an evaluation pass)."""
    for lo in range(0, n, size):
        yield np.arange(lo, min(n, lo + size))


@dataclass(frozen=True)
class StageChoice:
    """How a rank holds its shard, and why: the --stage asked for, the mode taken, the shard's
    bytes in memory and the auto limit (bytes; None when no limit applied)."""

    requested: str
    mode: str
    shard_bytes: int
    limit_bytes: int | None
    reason: str

    def describe(self) -> dict[str, Any]:
        return {"requested": self.requested, "mode": self.mode, "shard_bytes": self.shard_bytes,
                "limit_bytes": self.limit_bytes, "reason": self.reason}


def mem_available_bytes(meminfo: Path = MEMINFO) -> int | None:
    """The node's MemAvailable in bytes, or None where /proc/meminfo does not say."""
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def choose_stage(requested: str, shard_bytes: int, ranks_on_node: int, files: bool,
                 mem_available: int | None = None) -> StageChoice:
    """The mode for a shard of `shard_bytes` (see the module docstring for the auto rule);
    `files`: the shard is in files (a synthetic set is generated in memory, never streamed);
    `mem_available`: the node's available bytes (default: read /proc/meminfo now)."""
    if requested not in STAGES:
        raise ValueError(f"stage must be one of {', '.join(STAGES)}, got {requested!r}")
    if not files:
        if requested == "stream":
            raise ConfigError("--stage stream reads the dataset's files batch by batch: give them "
                              "with --data (a synthetic set is generated in memory)")
        return StageChoice(requested, "memory", shard_bytes, None,
                           "synthetic set, generated in memory")
    if requested != "auto":
        return StageChoice(requested, requested, shard_bytes, None, f"--stage {requested}")
    available = mem_available_bytes() if mem_available is None else mem_available
    if available is None:
        return StageChoice(requested, "memory", shard_bytes, None,
                           "auto: MemAvailable unknown (no /proc/meminfo), staged in memory")
    limit = int(MEMORY_SHARE * available / max(1, ranks_on_node))
    mode = "stream" if shard_bytes > limit else "memory"
    return StageChoice(requested, mode, shard_bytes, limit,
                       f"auto: shard {shard_bytes} B {'>' if mode == 'stream' else '<='} "
                       f"{MEMORY_SHARE:g} x MemAvailable {available} B / {ranks_on_node} "
                       f"rank(s) on the node = {limit} B")


def _ranges(totals: dict[str, int], rank: int, size: int, unit: str) -> dict[str, tuple[int, int]]:
    """This rank's [start, stop) of each split: "train" equal on every rank, "val" all covered."""
    return {split: common.shard_range(total, rank, size, split == "train", unit=unit)
            for split, total in totals.items()}


def stage_splits(layout_for: Callable[[SplitFiles], Layout], splits: dict[str, SplitFiles],
                 rank: int, size: int, ranks_on_node: int, requested: str,
                 mem_available: int | None = None) -> tuple[dict[str, Staged | Streamed], StageChoice]:
    """This rank's training shard (equal sizes on every rank) and validation shard (all samples
    covered), each read through layout_for(its split), staged or streamed as choose_stage decides
    for both together. Reads only this rank's rows (no collectives: call after every `once`)."""
    ranges = _ranges({k: v.total for k, v in splits.items()}, rank, size,
                     layout_for(splits["train"]).unit)
    shards = {k: Shard(layout_for(splits[k]), splits[k], *ranges[k]) for k in splits}
    choice = choose_stage(requested, sum(s.nbytes for s in shards.values()), ranks_on_node,
                          files=True, mem_available=mem_available)
    if choice.mode == "stream":
        return {k: Streamed(s) for k, s in shards.items()}, choice
    return {k: Staged(s.load(), s.start) for k, s in shards.items()}, choice


def open_files(inspect: Callable[[], dict[str, SplitFiles]],
               layout_for: Callable[[SplitFiles], Layout], dist: Any, requested: str,
               name: str) -> tuple[dict[str, Staged | Streamed], StageChoice]:
    """A workload's shards from files: rank 0 runs inspect() (e.g. hep.inspect_splits) and
    broadcasts it (`once`), then each rank stages or streams its shards (stage_splits)."""
    splits = once(dist, inspect, name)
    return stage_splits(layout_for, splits, dist.rank, dist.size, dist.local_size, requested)


def stage_synthetic(layout: Layout, totals: dict[str, int], dist: Any, requested: str,
                    generate: Callable[[str, int, int], dict[str, np.ndarray]]
                    ) -> tuple[dict[str, Staged], StageChoice]:
    """A workload's shards of a synthetic set, generated in memory: generate(split, start, count)
    makes the fields of samples [start, start + count) of split; the choice is always memory
    (--stage stream is a ConfigError, raised before anything is generated)."""
    ranges = _ranges(totals, dist.rank, dist.size, layout.unit)
    choice = choose_stage(requested, sample_bytes(layout) * sum(b - a for a, b in ranges.values()),
                          dist.local_size, files=False)
    return {k: Staged(generate(k, a, b - a), a) for k, (a, b) in ranges.items()}, choice


def once(dist: Any, compute: Callable[[], T], name: str) -> T:
    """Rank 0's compute() (file inspection, statistics) on every rank: computed once, broadcast.
    An Ai500Error on rank 0 is raised on every rank (everywhere=True), so all end with its line.
    Every rank must reach this call, and before anything that can fail on one rank alone."""
    if dist.size == 1:
        return compute()
    from ai500 import dist as distlib

    result, error = None, None
    if dist.is_root:
        try:
            result = compute()
        except Ai500Error as exc:
            error = str(exc)
    result, error = distlib.broadcast_object((result, error), f"data.{name}")
    if error is not None:
        raise DataError(error, everywhere=True)
    return result
