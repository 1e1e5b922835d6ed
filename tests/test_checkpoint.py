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
from conftest import (
    ROOT,
    checkpoint_state,
    load_summary,
    mpirun,
    run_record,
    wait_for_lock_holder_to_exit,
)

from ai500 import checkpoint, config, rundir
from ai500.errors import Ai500Error, ConfigError, DataError
from ai500.trace import read_trace

STALL_S = 45  # as in test_faults: above a later step or evaluation on a loaded 2-core machine


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


# ---------------------------------------------------------------- real runs, interrupted and resumed


def _args(data: Path, out: Path, name: str, epochs: int, *extra: str) -> list[str]:
    return ["--benchmark", "resnet", "--preset", "ci", "--data", str(data), "--out", str(out),
            "--run-name", name, "--epochs", str(epochs), "--no-stop-at-target",
            "--checkpoint-every", "1", "--stall-timeout", str(STALL_S), *extra]


def _manifest_epoch(run: Path) -> int | None:
    try:
        return json.loads((run / checkpoint.MANIFEST_NAME).read_text())["epoch"]
    except (OSError, ValueError, KeyError):
        return None


@pytest.fixture(scope="module")
def resumed(tmp_path_factory, hep_ci_data):
    """An uninterrupted 2-rank run of 4 epochs; the same run hung in epoch 2 (a resume attempted
    while it is alive), ended by the watchdog, then resumed on 2 ranks and a copy on 1 rank."""
    out = tmp_path_factory.mktemp("resume")
    full = mpirun(2, _args(hep_ci_data, out, "full", 4))
    assert full.returncode == 0, full.stderr[-3000:]
    auc = read_trace(out / "full" / "trace-rank00000.h5").epochs["val_auc"]
    # A target first reached in epoch 2 or 3, which the resumed segment will run.
    target = next((auc[e] for e in (2, 3) if auc[e] > max(auc[:e])), None)
    extra = ["--target", repr(float(target))] if target is not None else []
    cut_args = _args(hep_ci_data, out, "cut", 4, *extra)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "AI500_FAULT": "rank=1,epoch=2,kind=hang"}
    cmd = ["mpirun", "--allow-run-as-root", "--oversubscribe", "--bind-to", "none", "-np", "2",
           sys.executable, "-m", "ai500.run", *cut_args]
    cut = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True)
    try:
        deadline = time.monotonic() + 240
        while _manifest_epoch(out / "cut") != 1:  # the checkpoint of epoch 1 is in place
            assert cut.poll() is None and time.monotonic() < deadline, "no checkpoint of epoch 1"
            time.sleep(0.5)
        while_alive = mpirun(2, ["--resume", str(out / "cut")], timeout=120)
        _, cut_err = cut.communicate(timeout=240)
    finally:
        if cut.poll() is None:
            cut.kill()
    assert cut.returncode != 0 and "no progress for" in cut_err, cut_err[-3000:]
    wait_for_lock_holder_to_exit(out / "cut")
    traces_before = {p.name: p.read_bytes() for p in (out / "cut").glob("trace-rank*.h5")}
    shutil.copytree(out / "cut", out / "cut-np1")
    shutil.copytree(out / "cut", out / "cut-pristine")
    again = mpirun(2, ["--resume", str(out / "cut")])
    one = mpirun(1, ["--resume", str(out / "cut-np1")])
    return {"out": out, "full": full, "while_alive": while_alive, "again": again, "one": one,
            "target": target, "traces_before": traces_before}


def test_a_resume_into_a_live_run_is_refused_with_one_line(resumed):
    result = resumed["while_alive"]
    assert result.returncode != 0
    lines = error_lines(result)
    assert len(lines) == 1 and "in use by a live run" in lines[0], result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert not (resumed["out"] / "cut-pristine" / "segment-01").exists()


def test_resume_on_the_same_ranks_ends_with_the_uninterrupted_weights(resumed):
    out = resumed["out"]
    assert resumed["again"].returncode == 0, resumed["again"].stderr[-3000:]
    full, cut = checkpoint_state(out / "full"), checkpoint_state(out / "cut")
    assert sorted(full) == sorted(cut) and len(full) > 10
    for key in full:
        np.testing.assert_allclose(cut[key], full[key], rtol=0, atol=1e-6, err_msg=key)
    # The evaluation after the resume sees the same model on every rank, batch-norm statistics
    # included: its metrics repeat the uninterrupted run's.
    a = read_trace(out / "full" / "trace-rank00000.h5").epochs
    b = read_trace(out / "cut" / "segment-01" / "trace-rank00000.h5").epochs
    assert b["epoch"].tolist() == [2, 3]
    for key in ("train_loss", "val_auc", "val_loss"):
        np.testing.assert_allclose(b[key], a[key][2:], rtol=0, atol=1e-6, err_msg=key)
    for rank in (0, 1):  # and each rank trained on the input of the uninterrupted epochs
        name = f"trace-rank{rank:05d}.h5"
        np.testing.assert_array_equal(read_trace(out / "cut" / "segment-01" / name)
                                      .epochs["input_crc32"],
                                      read_trace(out / "full" / name).epochs["input_crc32"][2:])


def test_resume_keeps_the_earlier_traces_and_adds_a_segment(resumed):
    run = resumed["out"] / "cut"
    for name, data in resumed["traces_before"].items():
        assert (run / name).read_bytes() == data
    names = sorted(p.name for p in run.iterdir())
    assert names == ["checkpoint.json", "checkpoints", "config.json", "mllog.txt",
                     "segment-01", "summary.h5", "summary.json", "system.json",
                     "trace-rank00000.h5", "trace-rank00001.h5"]  # the lock is gone: it ended
    segment = json.loads((run / "segment-01" / "segment.json").read_text())
    assert segment["resumed_from"]["epoch"] == 1 and segment["resumed_from"]["segment"] == 0
    assert segment["run_id"] == json.loads((run / "config.json").read_text())["run_id"]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["epoch00003-seg01"]
    assert json.loads((run / "checkpoint.json").read_text())["final"] is True


def test_resumed_summary_reports_both_times_and_says_which_is_which(resumed):
    s = load_summary(resumed["out"] / "cut")
    assert s["status"] == "ok" and s["resumed"] is True and s["mlperf_valid"] is False
    assert [e["epoch"] for e in s["epochs"]] == [0, 1, 2, 3]
    assert [e["segment"] for e in s["epochs"]] == [0, 0, 1, 1]
    assert [seg["ranks"] for seg in s["segments"]] == [2, 2]
    assert s["segments"][0]["epochs_recorded"] == [0, 1] and s["segments"][1]["resumed_from_epoch"] == 1
    assert "MLPerf" in s["time_to_quality_definition"]
    assert "sum" in s["time_to_quality_training_definition"]
    assert s["throughput"]["epochs_measured"] == [1, 3]  # each segment's first epoch is warm-up
    seg1 = read_trace(resumed["out"] / "cut" / "segment-01" / "trace-rank00000.h5")
    seg0 = read_trace(resumed["out"] / "cut" / "trace-rank00000.h5")
    resumed_from = json.loads((resumed["out"] / "cut" / "segment-01" / "segment.json").read_text())
    offset = seg1.attrs["wall_start"] - seg0.attrs["wall_start"]
    last = s["epochs"][-1]
    assert last["t_end_s"] == pytest.approx(offset + seg1.epochs["t_eval_end"][-1], abs=0.05)
    assert last["t_end_training_s"] == pytest.approx(
        resumed_from["resumed_from"]["elapsed_s"] + seg1.epochs["t_eval_end"][-1], abs=0.05)
    # The gap (the hang, the watchdog's timeout, the restart) is on the MLPerf clock only.
    assert last["t_end_s"] - last["t_end_training_s"] > STALL_S
    if resumed["target"] is not None:
        assert s["quality"]["reached"] and s["time_to_quality_epoch"] in (2, 3)
        assert s["time_to_quality_s"] - s["time_to_quality_training_s"] > STALL_S
    text = resumed["again"].stdout
    assert "MLPerf clock" in text and "training time" in text and "not a valid MLPerf" in text


def test_resume_on_another_rank_count_runs_to_the_end(resumed):
    result = resumed["one"]
    assert result.returncode == 0, result.stderr[-3000:]
    s = load_summary(resumed["out"] / "cut-np1")
    assert s["status"] == "ok" and [seg["ranks"] for seg in s["segments"]] == [2, 1]
    assert [e["epoch"] for e in s["epochs"]] == [0, 1, 2, 3]
    # One rank takes the whole training shard: twice the samples per rank, the same global count.
    assert len({e["global_samples"] for e in s["epochs"]}) == 1
    assert "time_to_quality_s" in s and "time_to_quality_training_s" in s
    if s["quality"]["reached"]:
        assert s["time_to_quality_training_s"] < s["time_to_quality_s"]


@pytest.mark.parametrize("case, fragment", [
    ("missing", "no checkpoint.json"),
    ("truncated_data", "truncated or replaced"),
    ("other_benchmark", "a checkpoint of benchmark 'dcgan'"),
    ("schema", "schema version 99"),
])
def test_bad_checkpoint_ends_a_resume_on_every_rank_with_one_line(resumed, tmp_path, case,
                                                                  fragment):
    run = tmp_path / "cut"
    shutil.copytree(resumed["out"] / "cut-pristine", run)
    _damage(run, case)
    before = sorted(p.relative_to(run) for p in run.rglob("*"))
    result = mpirun(2, ["--resume", str(run)], timeout=120)
    assert result.returncode != 0
    lines = error_lines(result)
    assert len(lines) == 1 and fragment in lines[0], result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert not (run / "segment-01").exists()
    assert sorted(p.relative_to(run) for p in run.rglob("*")) == before  # nothing written


def test_checkpoint_of_another_model_fails_the_restore_on_every_rank(resumed, tmp_path):
    import tensorflow as tf

    run = tmp_path / "cut"
    shutil.copytree(resumed["out"] / "cut-pristine", run)
    manifest = json.loads((run / checkpoint.MANIFEST_NAME).read_text())
    # A well-formed checkpoint with a consistent manifest, but of a different network.
    tf.train.Checkpoint(**_state(width=3)).write(str(run / manifest["path"] / "state"))
    manifest["files"] = {p.name: p.stat().st_size for p in (run / manifest["path"]).iterdir()}
    (run / checkpoint.MANIFEST_NAME).write_text(json.dumps(manifest))
    result = mpirun(2, ["--resume", str(run)], timeout=240)
    assert result.returncode != 0
    lines = error_lines(result)
    assert len(lines) == 1 and "does not fit this workload" in lines[0], result.stderr[-3000:]
    assert not (run / "segment-01").exists() and not (run / rundir.LOCK_NAME).exists()


def test_dcgan_resume_ends_with_the_uninterrupted_networks_and_average(tmp_path):
    # Two networks, two optimizers and the generator's weight average, per-rank latent noise.
    base = ["--benchmark", "dcgan", "--preset", "ci", "--out", str(tmp_path), "--epochs", "3",
            "--no-stop-at-target", "--checkpoint-every", "1", "--stall-timeout", str(STALL_S)]
    full = mpirun(2, [*base, "--run-name", "full"])
    assert full.returncode == 0, full.stderr[-3000:]
    cut = mpirun(2, [*base, "--run-name", "cut"], env={"AI500_FAULT": "rank=1,epoch=2,kind=exit"})
    assert cut.returncode != 0 and _manifest_epoch(tmp_path / "cut") == 1, cut.stderr[-3000:]
    wait_for_lock_holder_to_exit(tmp_path / "cut")
    again = mpirun(2, ["--resume", str(tmp_path / "cut")])
    assert again.returncode == 0, again.stderr[-3000:]
    a, b = checkpoint_state(tmp_path / "full"), checkpoint_state(tmp_path / "cut")
    assert sorted(a) == sorted(b) and any(key.startswith("generator_ema/") for key in a)
    for key in a:
        np.testing.assert_allclose(b[key], a[key], rtol=0, atol=1e-6, err_msg=key)
    quality_full = load_summary(tmp_path / "full")["epochs"][-1]["val_quality"]
    assert load_summary(tmp_path / "cut")["epochs"][-1]["val_quality"] == pytest.approx(
        quality_full, abs=1e-6)


# ---------------------------------------------------------------- joining segments (hand-made traces)

RECORD = run_record(price_per_node_hour=3600.0)


def _segment(directory: Path, record: dict, wall: float, epochs: dict[int, float],
             status: str) -> None:
    """Traces of one segment: each epoch trains 2 s (rank 1: 3 s) then evaluates 1 s, back to
    back from run_start; `epochs` maps epoch -> val_auc; 10 W metered on rank 0 throughout."""
    from ai500.trace import TraceWriter, trace_name

    directory.mkdir(exist_ok=True)
    name = "config.json" if "resumed_from" not in record else "segment.json"
    (directory / name).write_text(json.dumps(record))
    end = 4.0 * len(epochs)
    for rank in range(record["dist"]["size"]):
        w = TraceWriter(directory / trace_name(rank), {
            "run_id": "run1", "rank": rank, "size": record["dist"]["size"], "host": "a",
            "wall_start": wall, "init_seconds": 5.0})
        if rank == 0:
            w.set_group("energy", {"t": [-1.0, end + 1.0], "estimated:node": [0.0, 10.0 * (end + 2)]})
        for i, (epoch, auc) in enumerate(epochs.items()):
            t = 4.0 * i
            w.add_epoch({"epoch": epoch, "t_ready": t, "t_start": t, "t_train_end": t + 2.0 + rank, "t_eval_start": t + 2.0 + rank,
                         "t_eval_end": t + 4.0, "samples": 100, "train_loss": 0.5,
                         "val_auc": auc})
        w.close(status)


def test_segments_join_along_the_final_models_lineage(tmp_path):
    from ai500 import aggregate

    # Segment 0 ran epochs 0-2 (checkpoint after epoch 1) and died in epoch 3; resume 1 (one
    # rank) died in its first epoch after the flush, before any checkpoint; resume 2 (two ranks)
    # started again from epoch 1's checkpoint and finished epochs 2-3.
    _segment(tmp_path, RECORD, 1000.0, {0: 0.5, 1: 0.6, 2: 0.7}, "running")
    origin = {"segment": 0, "epoch": 1, "elapsed_s": 8.5, "path": "x", "ranks": 2}
    one = {**RECORD, "dist": {"size": 1, "hosts": ["a"], "nodes": 1}, "segment": 1,
           "resumed_from": origin}
    _segment(tmp_path / "segment-01", one, 1100.0, {2: 0.75}, "running")
    _segment(tmp_path / "segment-02", {**RECORD, "segment": 2, "resumed_from": origin}, 1200.0,
             {2: 0.7, 3: 0.9}, "ok")
    s = aggregate.aggregate(tmp_path)
    assert s["status"] == "ok" and s["resumed"] is True and s["mlperf_valid"] is False
    assert [(e["epoch"], e["segment"]) for e in s["epochs"]] == [(0, 0), (1, 0), (2, 2), (3, 2)]
    assert [g["in_lineage"] for g in s["segments"]] == [True, False, True]
    assert [g["training_s"] for g in s["segments"]] == [8.5, None, 8.0]
    # Target 0.8 first reached at epoch 3, segment 2's second epoch, evaluated at 8 s.
    assert s["time_to_quality_epoch"] == 3
    assert s["time_to_quality_s"] == pytest.approx(200.0 + 8.0)
    assert s["time_to_quality_training_s"] == pytest.approx(8.5 + 8.0)
    assert s["epochs"][1]["t_end_training_s"] == pytest.approx(8.0)
    assert s["run_training_s"] == pytest.approx(16.5)
    # Throughput over epochs 1 and 3 (each segment's first excluded): 200 samples in 3 s each.
    assert s["throughput"]["epochs_measured"] == [1, 3]
    assert s["throughput"]["samples_per_s"] == pytest.approx(400 / 6.0)
    # Energy: 10 W over every segment's own run (12 s, 4 s, 8 s) and to quality the first two
    # whole plus segment 2 to its 8 s quality point; cost the same seconds on one node.
    assert s["energy"]["joules"] == pytest.approx(10.0 * 24)
    assert s["energy"]["joules_to_quality"] == pytest.approx(10.0 * 24)
    assert s["cost"]["node_hours_to_quality"] == pytest.approx(24 / 3600)
    assert [n["segment"] for n in s["energy"]["per_node"]] == [0, 1, 2]
    text = aggregate.format_summary(s)
    assert "208 s (epoch 3) on the MLPerf clock" in text and "16.5 s training time" in text
    assert "segment 1      1 rank(s), epochs 2, resumed from the checkpoint of epoch 1" in text
    assert "not in the final model's lineage" in text
    # mllog.txt spans the segments: four epochs, run_stop at the MLPerf-clock quality point.
    log = (tmp_path / "mllog.txt").read_text()
    assert log.count('"epoch_start"') == 4 and '"time_ms": 1208000.0' in log


def test_a_lineage_segment_without_its_checkpoint_epoch_fails_the_summary(tmp_path):
    from ai500 import aggregate

    _segment(tmp_path, RECORD, 1000.0, {0: 0.5}, "running")  # epoch 1's trace row is missing
    origin = {"segment": 0, "epoch": 1, "elapsed_s": 8.5, "path": "x", "ranks": 2}
    _segment(tmp_path / "segment-01", {**RECORD, "segment": 1, "resumed_from": origin}, 1100.0,
             {2: 0.9}, "ok")
    s = aggregate.aggregate(tmp_path)
    assert s["status"] == "failed" and s["time_to_quality_s"] is None
    assert any("before epoch 1" in why for why in s["lineage_problems"])
