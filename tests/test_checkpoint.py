"""Checkpoint and resume: atomic checkpoints, the run-directory lock, bad checkpoints refused with
one line, and real `mpirun` runs interrupted and resumed (same and another rank count) that end
with the uninterrupted run's weights and a summary carrying both times to quality."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, load_summary, mpirun

from ai500 import checkpoint, config, rundir
from ai500.errors import Ai500Error, ConfigError, DataError
from ai500.trace import read_trace

STALL_S = 45  # as in test_faults: above a first step's graph tracing on a loaded 2-core machine


def error_lines(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("ai500: error:")]


# ---------------------------------------------------------------- the lock


def _write_lock(run_dir: Path, **fields) -> None:
    record = {"host": socket.gethostname(), "pid": os.getpid(), "pid_start": None,
              "token": "t0", "since": "earlier", **fields}
    (run_dir / rundir.LOCK_NAME).write_text(json.dumps(record))


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_lock_is_exclusive_and_only_its_holder_releases_it(tmp_path):
    token = rundir.acquire(tmp_path, ["first"])
    with pytest.raises(ConfigError, match="in use by a live run"):
        rundir.acquire(tmp_path, ["second"])
    rundir.release(tmp_path, "not-the-token")
    assert (tmp_path / rundir.LOCK_NAME).exists()
    rundir.release(tmp_path, token)
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no temporary files left either


def test_stale_lock_of_a_dead_pid_is_taken_over(tmp_path):
    _write_lock(tmp_path, pid=_dead_pid())
    token = rundir.acquire(tmp_path, ["resume"])
    assert rundir.read_lock(tmp_path).token == token
    assert sorted(p.name for p in tmp_path.iterdir()) == [rundir.LOCK_NAME]


def test_lock_of_a_reused_pid_is_stale(tmp_path):
    # Our own pid, but the lock says it started at another time: another process had it.
    _write_lock(tmp_path, pid_start=time.time() - 10_000)
    rundir.acquire(tmp_path, ["resume"])


@pytest.mark.parametrize("fields, fragment", [
    ({"host": "elsewhere"}, "another host"),
    ({}, "in use by a live run"),
])
def test_lock_held_elsewhere_or_alive_is_refused_and_kept(tmp_path, fields, fragment):
    _write_lock(tmp_path, **fields)
    before = (tmp_path / rundir.LOCK_NAME).read_text()
    with pytest.raises(ConfigError, match=fragment):
        rundir.check_free(tmp_path)
    with pytest.raises(ConfigError, match=fragment):
        rundir.acquire(tmp_path, ["resume"])
    assert (tmp_path / rundir.LOCK_NAME).read_text() == before


def test_unreadable_lock_is_refused(tmp_path):
    (tmp_path / rundir.LOCK_NAME).write_text("{not json")
    with pytest.raises(ConfigError, match="unreadable lock"):
        rundir.check_free(tmp_path)


# ---------------------------------------------------------------- options


def test_micro_benchmarks_refuse_checkpoints():
    with pytest.raises(ConfigError, match="--checkpoint-every not used by micro benchmark"):
        config.resolve(["--benchmark", "conv", "--preset", "ci", "--checkpoint-every", "1"])


def _record_dir(tmp_path: Path, kind: str = "training") -> Path:
    cfg = config.resolve(["--benchmark", "resnet", "--preset", "ci", "--checkpoint-every", "2",
                          "--stall-timeout", "99"])
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"run_id": "r1", "kind": kind,
                                                 "config": cfg.to_dict()}))
    return run


def test_resume_rebuilds_the_config_and_takes_only_allowed_options(tmp_path):
    run = _record_dir(tmp_path)
    cfg = config.resolve(["--resume", str(run), "--stall-timeout", "7", "--no-energy"])
    assert cfg.benchmark == "resnet" and cfg.preset == "ci" and cfg.train.epochs == 2
    assert cfg.resume == str(run.resolve()) and cfg.run_name == "run"
    assert cfg.stall_timeout_s == 7 and cfg.checkpoint_every == 2
    assert cfg.system["energy"]["enabled"] is False
    assert config.resolve(["--resume", str(run)]).stall_timeout_s == 99


@pytest.mark.parametrize("extra, fragment", [
    (["--epochs", "9"], "--epochs cannot be changed by --resume"),
    (["--lr", "0.1", "--seed", "2"], "--lr, --seed cannot be changed by --resume"),
    (["--preset", "small"], "--preset cannot be changed"),
    (["--benchmark", "dcgan"], "--benchmark cannot be changed"),
])
def test_resume_refuses_options_that_change_the_run(tmp_path, extra, fragment):
    run = _record_dir(tmp_path)
    with pytest.raises(ConfigError, match=fragment):
        config.resolve(["--resume", str(run), *extra])


def test_resume_needs_a_training_run_directory(tmp_path):
    with pytest.raises(ConfigError, match="no such run directory"):
        config.resolve(["--resume", str(tmp_path / "nope")])
    with pytest.raises(ConfigError, match="no config.json"):
        config.resolve(["--resume", str(tmp_path)])
    micro = _record_dir(tmp_path, kind="micro")
    with pytest.raises(ConfigError, match="only training runs have checkpoints"):
        config.resolve(["--resume", str(micro)])


# ---------------------------------------------------------------- writing and validating


def _model(width: int = 4):
    import tensorflow as tf

    return tf.keras.Sequential([tf.keras.layers.Dense(width, input_shape=(3,)),
                                tf.keras.layers.BatchNormalization(), tf.keras.layers.Dense(1)])


def _state(width: int = 4) -> dict:
    import tensorflow as tf

    model = _model(width)
    optimizer = tf.keras.optimizers.SGD(0.1, momentum=0.9)
    optimizer.build(model.trainable_variables)
    return {"model": model, "optimizer": optimizer}


def _write(run: Path, state: dict, epoch: int, final: bool = False, ranks: int = 2) -> None:
    """A checkpoint as the driver writes one: every rank's part, then rank 0's commit."""
    import tensorflow as tf

    record = rundir.read_record(run)
    name = checkpoint.checkpoint_name(epoch, 0)
    checkpoint.begin(run, name)
    for rank in range(ranks):
        checkpoint.write_rank_state(state, run, name, rank)
    checkpoint.commit(tf.train.Checkpoint(**state), run, name, {
        "run_id": record["run_id"], "benchmark": "resnet", "segment": 0, "ranks": ranks,
        "config_hash": checkpoint.config_hash(record["config"]), "steps_per_epoch": 8,
        "epoch": epoch, "final": final}, lambda: 12.5)


def test_commit_replaces_the_manifest_then_removes_the_previous_checkpoint(tmp_path):
    run = _record_dir(tmp_path)
    state = _state()
    _write(run, state, epoch=0)
    first = checkpoint.validate(run, rundir.read_record(run))
    assert first["epoch"] == 0 and first["elapsed_s"] == 12.5 and first["ranks"] == 2
    assert sorted(first["files"]) == ["rank-00000.npz", "rank-00001.npz",
                                      "state.data-00000-of-00001", "state.index"]
    _write(run, state, epoch=1)
    assert checkpoint.validate(run, rundir.read_record(run))["epoch"] == 1
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["epoch00001-seg00"]
    assert sorted(p.name for p in run.iterdir()) == ["checkpoint.json", "checkpoints",
                                                     "config.json"]


def test_a_writer_killed_midway_leaves_the_last_complete_checkpoint(tmp_path):
    run = _record_dir(tmp_path)
    state = _state()
    _write(run, state, epoch=0)
    # Killed after staging the next checkpoint, before its rename and the manifest.
    checkpoint.begin(run, checkpoint.checkpoint_name(1, 0))
    checkpoint.write_rank_state(state, run, checkpoint.checkpoint_name(1, 0), 0)
    assert checkpoint.validate(run, rundir.read_record(run))["epoch"] == 0
    checkpoint.remove_partial(run)
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["epoch00000-seg00"]


def _damage(run: Path, case: str) -> None:
    manifest_path = run / checkpoint.MANIFEST_NAME
    manifest = json.loads(manifest_path.read_text())
    data = run / manifest["path"] / "state.data-00000-of-00001"
    if case == "missing":
        manifest_path.unlink()
    elif case == "truncated_manifest":
        text = manifest_path.read_text()
        manifest_path.write_text(text[: len(text) // 2])
    elif case == "truncated_data":
        data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    elif case == "missing_file":
        (run / manifest["path"] / "rank-00001.npz").unlink()
    else:
        manifest.update({"other_benchmark": {"benchmark": "dcgan"},
                         "other_run": {"run_id": "someone-else"},
                         "other_config": {"config_hash": "0" * 64},
                         "schema": {"schema_version": 99},
                         "final": {"final": True}}[case])
        manifest_path.write_text(json.dumps(manifest))


BAD_CHECKPOINTS = [
    ("missing", "no checkpoint.json, so no checkpoint to resume from"),
    ("truncated_manifest", "checkpoint.json: unreadable or truncated"),
    ("truncated_data", "the manifest says"),
    ("missing_file", "rank-00001.npz: missing"),
    ("other_benchmark", "a checkpoint of benchmark 'dcgan', but this run is 'resnet'"),
    ("other_run", "a checkpoint of run someone-else"),
    ("other_config", "written for another configuration"),
    ("schema", "schema version 99, this ai500 reads 1"),
    ("final", "the run finished"),
]


@pytest.mark.parametrize("case, fragment", BAD_CHECKPOINTS)
def test_bad_checkpoints_are_refused_with_one_line(tmp_path, case, fragment):
    run = _record_dir(tmp_path)
    _write(run, _state(), epoch=0)
    _damage(run, case)
    with pytest.raises(Ai500Error) as info:
        checkpoint.validate(run, rundir.read_record(run))
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_restore_gives_each_rank_its_own_statistics_on_the_same_rank_count(tmp_path):
    run = _record_dir(tmp_path)
    saved = _state()
    saved["optimizer"].iterations.assign(16)  # 2 epochs of 8 steps
    moving_mean = saved["model"].layers[1].moving_mean
    name = checkpoint.checkpoint_name(1, 0)
    import tensorflow as tf

    checkpoint.begin(run, name)
    for rank in (0, 1):  # rank 1's batch-norm statistics differ from rank 0's
        moving_mean.assign(np.full(4, float(rank)))
        checkpoint.write_rank_state(saved, run, name, rank)
    moving_mean.assign(np.zeros(4))
    record = rundir.read_record(run)
    checkpoint.commit(tf.train.Checkpoint(**saved), run, name, {
        "run_id": "r1", "benchmark": "resnet", "segment": 0, "ranks": 2, "steps_per_epoch": 8,
        "config_hash": checkpoint.config_hash(record["config"]), "epoch": 1, "final": False},
        lambda: 1.0)
    manifest = checkpoint.validate(run, record)

    def restored(rank: int, size: int, steps_per_epoch: int) -> dict:
        state = _state()
        checkpoint.restore(tf.train.Checkpoint(**state), state, run, manifest, steps_per_epoch,
                           rank, size)
        return state

    same = restored(1, 2, 8)
    np.testing.assert_array_equal(same["model"].layers[1].moving_mean.numpy(), np.ones(4))
    for a, b in zip(same["model"].trainable_variables, saved["model"].trainable_variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert int(same["optimizer"].iterations) == 16
    # On another rank count every rank keeps rank 0's statistics, and the learning-rate schedule
    # resumes at the epoch boundary of the new count's steps (16 per epoch on one rank).
    other = restored(0, 1, 16)
    np.testing.assert_array_equal(other["model"].layers[1].moving_mean.numpy(), np.zeros(4))
    assert int(other["optimizer"].iterations) == 32


def test_restore_of_another_model_is_refused(tmp_path):
    import tensorflow as tf

    run = _record_dir(tmp_path)
    _write(run, _state(width=4), epoch=0)
    manifest = checkpoint.validate(run, rundir.read_record(run))
    state = _state(width=5)
    with pytest.raises(DataError, match="does not fit this workload") as info:
        checkpoint.restore(tf.train.Checkpoint(**state), state, run, manifest, 8, 0, 2)
    assert "\n" not in str(info.value)
