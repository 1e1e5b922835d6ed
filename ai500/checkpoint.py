"""Checkpoints at epoch boundaries (`--checkpoint-every K`) and their validation for `--resume`.

Layout in a run directory:
  checkpoint.json                    manifest of the newest complete checkpoint (fields below)
  checkpoints/epoch00003-seg00/      one tf.train.Checkpoint (state.index, state.data-00000-of-00001)
                                     and rank-00000.npz ... (each rank's rank-local variables)

What a checkpoint holds: every object the workload's `checkpoint_state()` returns (models and
optimizers: weights, batch-norm statistics, optimizer slots and iteration counts), and in the
manifest the epoch and the elapsed training time. The data pipeline's position needs nothing
more: a workload's training order (and dcgan's latent noise) depends only on (seed, epoch, rank),
and checkpoints are taken at epoch boundaries, so the next epoch number is the position. Step-
driven learning-rate schedules resume with the optimizers' iteration counts.

Writing (after the epoch's evaluation and trace flush, so no checkpoint is ever ahead of the
traces): everything goes to `checkpoints/.tmp-<name>/` (rank 0 the shared state, every rank its
rank-local variables as rank-NNNNN.npz, see `rank_local`), that directory is renamed to
`checkpoints/<name>/` once complete and synced, then checkpoint.json is replaced (temporary file,
fsync, rename), and only then is the previous checkpoint removed. A crash at any moment leaves
checkpoint.json naming a complete checkpoint, or no checkpoint.json at all.

Manifest fields (schema MANIFEST_SCHEMA_VERSION): schema_version, run_id, benchmark, config_hash
(of the settings that decide training: see `config_hash`), epoch (the last completed epoch, from
0), elapsed_s (training-clock seconds when the checkpoint was complete: the sum over the run's
segments of their time from run_start, initialisation and the gaps between segments excluded),
segment (which segment wrote it), ranks and steps_per_epoch of that segment, final (written after
the run's last epoch), written_at (Unix seconds), path (the checkpoint directory, relative to the
run directory), files ({file name: bytes}, to detect truncation before TensorFlow reads them).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ai500.errors import ConfigError, DataError

MANIFEST_NAME = "checkpoint.json"
MANIFEST_SCHEMA_VERSION = 1
CHECKPOINTS = "checkpoints"
STATE_PREFIX = "state"  # tf.train.Checkpoint writes state.index and state.data-*
# The RunConfig fields that decide what is trained; the others (where output goes, threads,
# stall timeout, energy metering, checkpoint interval) may differ between segments.
TRAINING_FIELDS = ("benchmark", "preset", "train", "quality", "model", "data", "seed")


def config_hash(config: dict[str, Any]) -> str:
    """sha256 (hex) of a resolved config's training-defining fields, canonical JSON."""
    subset = {key: config.get(key) for key in TRAINING_FIELDS}
    return hashlib.sha256(json.dumps(subset, sort_keys=True).encode()).hexdigest()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def checkpoint_name(epoch: int, segment: int) -> str:
    # The segment in the name keeps a re-run epoch (after a resume) from meeting an orphan of
    # the failed segment: a checkpoint renamed into place just before a crash.
    return f"epoch{epoch:05d}-seg{segment:02d}"


def _staging(run_dir: Path, name: str) -> Path:
    return Path(run_dir) / CHECKPOINTS / f".tmp-{name}"


def rank_local(state: dict[str, Any]) -> list:
    """The variables each rank keeps for itself: every model's non-trainable variables (batch-norm
    moving statistics, which each rank updates from its own batches; Horovod averages gradients,
    not these). Everything else in `state` is identical on every rank."""
    return [v for obj in state.values() for v in getattr(obj, "non_trainable_variables", [])]


def begin(run_dir: Path, name: str) -> None:
    """Rank 0, step 1 of 3: an empty staging directory for checkpoint `name`."""
    staging = _staging(run_dir, name)
    shutil.rmtree(staging, ignore_errors=True)  # a killed writer's leftover (we hold the lock)
    staging.mkdir(parents=True)


def write_rank_state(state: dict[str, Any], run_dir: Path, name: str, rank: int) -> None:
    """Every rank, step 2 of 3 (after begin): its rank-local variables into the staging area."""
    import numpy as np

    path = _staging(run_dir, name) / f"rank-{rank:05d}.npz"
    np.savez(path, *[v.numpy() for v in rank_local(state)])
    _fsync(path)


def commit(ckpt, run_dir: Path, name: str, manifest: dict[str, Any],
           elapsed_s: Callable[[], float]) -> int:
    """Rank 0, step 3 of 3 (after every rank's write_rank_state): write `ckpt` (a
    tf.train.Checkpoint), move the complete checkpoint into place, then point checkpoint.json at
    it (`manifest` holds every field but schema_version, elapsed_s, written_at, path and files;
    `elapsed_s()` is read once the state is on disk) and remove the previous checkpoint.
    Returns the checkpoint's size in bytes."""
    run_dir = Path(run_dir)
    staging = _staging(run_dir, name)
    ckpt.write(str(staging / STATE_PREFIX))
    files = {}
    for path in sorted(staging.iterdir()):
        _fsync(path)
        files[path.name] = path.stat().st_size
    os.rename(staging, run_dir / CHECKPOINTS / name)
    _fsync(run_dir / CHECKPOINTS)
    try:
        previous = read_manifest_file(run_dir, required=False)
    except DataError:  # unreadable: replaced below; its checkpoint is left where it is
        previous = None
    record = {"schema_version": MANIFEST_SCHEMA_VERSION, **manifest, "elapsed_s": elapsed_s(),
              "written_at": time.time(), "path": f"{CHECKPOINTS}/{name}", "files": files}
    tmp_manifest = run_dir / f".{MANIFEST_NAME}.tmp-{os.getpid()}"
    tmp_manifest.write_text(json.dumps(record, indent=2) + "\n")
    _fsync(tmp_manifest)
    os.replace(tmp_manifest, run_dir / MANIFEST_NAME)
    _fsync(run_dir)
    if previous and isinstance(previous.get("path"), str) and previous["path"] != record["path"]:
        shutil.rmtree(run_dir / previous["path"], ignore_errors=True)
    return sum(files.values())


def remove_partial(run_dir: Path) -> None:
    """Delete checkpoints a killed writer left half-written (call only while holding the lock)."""
    for path in (Path(run_dir) / CHECKPOINTS).glob(".tmp-*"):
        shutil.rmtree(path, ignore_errors=True)


def read_manifest_file(run_dir: Path, required: bool = True) -> dict[str, Any] | None:
    """checkpoint.json as a dict (None if absent and not required); DataError if unreadable."""
    path = Path(run_dir) / MANIFEST_NAME
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        if not required:
            return None
        raise ConfigError(f"{run_dir}: no {MANIFEST_NAME}, so no checkpoint to resume from "
                          "(start runs with --checkpoint-every K to write them)") from None
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: unreadable or truncated ({exc})") from None
    if not isinstance(manifest, dict):
        raise DataError(f"{path}: expected a JSON object")
    return manifest


def validate(run_dir: Path, run_record: dict[str, Any]) -> dict[str, Any]:
    """The manifest of the checkpoint to resume `run_dir` from, checked against the run's
    config.json (`run_record`) and the files on disk; one-line DataError/ConfigError otherwise."""
    run_dir = Path(run_dir)
    m = read_manifest_file(run_dir)
    path = run_dir / MANIFEST_NAME
    if m.get("schema_version") != MANIFEST_SCHEMA_VERSION:
        raise DataError(f"{path}: schema version {m.get('schema_version')!r}, this ai500 reads "
                        f"{MANIFEST_SCHEMA_VERSION}")
    config = run_record["config"]
    try:
        epoch, segment = int(m["epoch"]), int(m["segment"])
        elapsed, files, where = float(m["elapsed_s"]), dict(m["files"]), str(m["path"])
        benchmark, run_id, digest = m["benchmark"], m["run_id"], m["config_hash"]
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"{path}: malformed ({type(exc).__name__}: {exc})") from None
    if benchmark != config["benchmark"]:
        raise DataError(f"{path}: a checkpoint of benchmark {benchmark!r}, but this run is "
                        f"{config['benchmark']!r}")
    if run_id != run_record["run_id"]:
        raise DataError(f"{path}: a checkpoint of run {run_id}, but {run_dir} is run "
                        f"{run_record['run_id']}")
    if digest != config_hash(config):
        raise DataError(f"{path}: written for another configuration than {run_dir}/config.json "
                        "describes (training settings differ)")
    if m.get("final"):
        raise ConfigError(f"{run_dir}: the run finished (its last checkpoint is from its final "
                          f"epoch {epoch}); nothing to resume")
    if epoch < 0 or segment < 0 or elapsed < 0 or not files:
        raise DataError(f"{path}: malformed (epoch {epoch}, segment {segment}, "
                        f"elapsed {elapsed}, {len(files)} files)")
    for name, size in files.items():
        file = run_dir / where / name
        if not file.is_file():
            raise DataError(f"{file}: missing (the checkpoint {path} names it)")
        if file.stat().st_size != size:
            raise DataError(f"{file}: {file.stat().st_size} bytes, the manifest says {size}: "
                            "truncated or replaced")
    return m


def restore(ckpt, state: dict[str, Any], run_dir: Path, manifest: dict[str, Any],
            steps_per_epoch: int, rank: int, size: int) -> None:
    """Load a validated checkpoint into `ckpt` (a tf.train.Checkpoint over `state`), requiring
    every saved value to find its object and vice versa; DataError if it does not fit.

    On the rank count that wrote it, each rank then takes back its own rank-local variables
    (see rank_local), so the run continues exactly; on another count every rank keeps rank 0's.
    Each optimizer's iteration count is set to (epochs done) × this segment's steps per epoch:
    the same number on the same rank count, and where the count changed (so did the steps per
    epoch) a step-driven learning-rate schedule resumes at the epoch boundary."""
    import numpy as np
    import tensorflow as tf

    where = Path(run_dir) / manifest["path"]
    try:
        ckpt.read(str(where / STATE_PREFIX)).assert_consumed()
    except (AssertionError, ValueError, tf.errors.OpError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"checkpoint {where}: does not fit this workload ({first})") from None
    if int(manifest["ranks"]) == size:
        path = where / f"rank-{rank:05d}.npz"
        variables = rank_local(state)
        try:
            with np.load(path) as saved:
                values = [saved[f"arr_{i}"] for i in range(len(saved.files))]
        except (OSError, ValueError, KeyError) as exc:
            raise DataError(f"{path}: unreadable ({exc})") from None
        if [v.shape for v in values] != [tuple(v.shape) for v in variables]:
            raise DataError(f"{path}: rank-local variables do not fit this workload")
        for variable, value in zip(variables, values):
            variable.assign(value)
    optimizers = (tf.keras.optimizers.Optimizer, tf.keras.optimizers.legacy.Optimizer)
    for obj in state.values():
        if isinstance(obj, optimizers):
            obj.iterations.assign((int(manifest["epoch"]) + 1) * steps_per_epoch)
