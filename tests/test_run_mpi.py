"""Integration: real `mpirun -np 2` runs of the resnet benchmark at the ci preset."""

from __future__ import annotations

import json
import socket
import time

import h5py
import numpy as np
import pytest
from conftest import load_summary, mpirun, only_run_dir

from ai500.trace import read_trace


@pytest.fixture(scope="module")
def ci_run(tmp_path_factory, hep_ci_data):
    out = tmp_path_factory.mktemp("runs")
    result = mpirun(2, ["--benchmark", "resnet", "--preset", "ci", "--data", str(hep_ci_data),
                        "--out", str(out), "--epochs", "3"])
    assert result.returncode == 0, result.stdout + result.stderr
    return result, only_run_dir(out)


def test_run_directory_layout(ci_run):
    _, run_dir = ci_run
    assert run_dir.name.startswith("resnet-") and run_dir.name.endswith("-np2")
    names = sorted(p.name for p in run_dir.iterdir())
    assert names == ["config.json", "mllog.txt", "summary.h5", "summary.json", "system.json",
                     "trace-rank00000.h5", "trace-rank00001.h5"]
    described = json.loads((run_dir / "system.json").read_text())
    assert [node["host"] for node in described["nodes"]] == [socket.gethostname()]  # one per node
    assert described["job"]["launcher"] == "mpirun (Open MPI)"
    assert described["job"]["horovod"]["built"]["mpi"] is True


def test_each_trace_written_by_its_rank(ci_run):
    _, run_dir = ci_run
    pids = set()
    for rank in (0, 1):
        t = read_trace(run_dir / f"trace-rank{rank:05d}.h5")
        assert t.attrs["rank"] == rank and t.attrs["size"] == 2 and t.attrs["status"] == "ok"
        pids.add(t.attrs["pid"])
        epochs = t.epochs
        assert epochs["epoch"].tolist() == [0, 1, 2]
        assert np.all(epochs["t_ready"] <= epochs["t_start"])
        assert np.all(epochs["t_train_end"] > epochs["t_start"])
        assert np.all(epochs["t_eval_start"] >= epochs["t_train_end"])
        assert np.all(epochs["t_eval_end"] >= epochs["t_eval_start"])
        # 256 training events per rank (512 / 2), batch 32: 8 steps of 32 per epoch.
        assert epochs["samples"].tolist() == [256, 256, 256]
        for key in ("train_loss", "train_accuracy", "val_auc", "val_accuracy", "val_loss"):
            assert np.all(np.isfinite(epochs[key])), key
        assert len(t.groups["steps"]["t_start"]) == 24
        assert len(t.groups["system"]["rss_bytes"]) == 3
    assert len(pids) == 2


def test_global_metrics_agree_across_ranks(ci_run):
    _, run_dir = ci_run
    t0, t1 = (read_trace(run_dir / f"trace-rank{r:05d}.h5").epochs for r in (0, 1))
    for key in ("train_loss", "val_auc", "val_accuracy"):
        np.testing.assert_array_equal(t0[key], t1[key])


def test_summary_contents(ci_run):
    result, run_dir = ci_run
    s = load_summary(run_dir)
    assert s["status"] == "ok" and s["ranks"] == 2 and s["epochs_completed"] == 3
    assert s["global_batch_size"] == 64
    assert s["throughput"]["samples_per_s"] > 0
    assert s["throughput"]["epochs_measured"] == [1, 2]
    assert len(s["throughput"]["per_rank_samples_per_s"]) == 2
    assert s["flops"]["per_sample_train"] == pytest.approx(3 * s["flops"]["per_sample_forward"])
    assert s["flops"]["flops_per_s"] == pytest.approx(
        s["flops"]["per_sample_train"] * s["throughput"]["samples_per_s"])
    assert s["init_s"] > 0 and s["load_imbalance"]["median"] >= 1.0
    assert {"tensorflow", "horovod", "mpi", "numpy"} <= set(s["versions"])
    assert s["versions"]["tensorflow"] == "2.15.1"
    # The full validation set (256 events) was scored, not rank 0's half.
    assert all(e["val_events"] == 256 for e in s["epochs"])
    cfg = json.loads((run_dir / "config.json").read_text())
    assert cfg["config"]["seed"] == 0 and cfg["dist"]["size"] == 2
    assert "linear scaling" in cfg["workload"]["lr_rule"]
    with h5py.File(run_dir / "summary.h5") as f:
        assert f["epochs/t_train_end"].shape == (2, 3)
    # Every second of the run is training, evaluation, checkpoint or other, epoch by epoch too.
    account = s["time_accounting"]["run"]
    assert account["total_s"] == pytest.approx(s["run_s"])
    assert account["training_s"] + account["evaluation_s"] + account["checkpoint_s"] + (
        account["other_s"]) == pytest.approx(account["total_s"])
    assert all(e["other_s"] >= 0 and e["training_s"] > 0 for e in s["epochs"])
    # The epochs follow one another from run_start (epoch 0 starts after one more barrier).
    assert sum(e["wall_s"] for e in s["epochs"]) == pytest.approx(account["total_s"], abs=0.5)
    # Rank 0 alone prints the table.
    assert result.stdout.count("ai500 resnet (ci) on 2 rank(s)") == 1
    assert result.stdout.count("epoch   0") == 1
    assert "it/s" not in result.stdout + result.stderr  # no progress bar into a pipe


def test_one_rank_per_node_meters_energy_labelled_estimated(ci_run):
    _, run_dir = ci_run
    leader = read_trace(run_dir / "trace-rank00000.h5")
    other = read_trace(run_dir / "trace-rank00001.h5")
    assert "energy" in leader.groups and "energy" not in other.groups
    t = leader.groups["energy"]["t"]
    assert t[0] < 0 < t[-1] and len(t) >= 3  # sampled from before run_start to the end
    joules = leader.groups["energy"]["estimated:node"]
    assert np.all(np.diff(joules) >= 0)
    e = load_summary(run_dir)["energy"]
    # No meter is readable on these VMs: the figure is the model's, and says so.
    assert e["method"] == "estimated" and e["joules"] > 0
    assert e["per_node"][0]["meters"]["rapl"] != "available"


def test_same_seed_same_losses(ci_run, tmp_path, hep_ci_data):
    _, first_dir = ci_run
    result = mpirun(2, ["--benchmark", "resnet", "--preset", "ci", "--data", str(hep_ci_data),
                        "--out", str(tmp_path), "--epochs", "3"])
    assert result.returncode == 0, result.stderr
    a = read_trace(first_dir / "trace-rank00000.h5").epochs
    b = read_trace(only_run_dir(tmp_path) / "trace-rank00000.h5").epochs
    np.testing.assert_array_equal(a["train_loss"], b["train_loss"])
    np.testing.assert_array_equal(a["val_auc"], b["val_auc"])


def test_in_memory_synthetic_data_matches_generated_files(tmp_path):
    # Without --data each rank generates its shard; the set is the one `ai500.data` writes.
    result = mpirun(2, ["--benchmark", "resnet", "--preset", "ci", "--out", str(tmp_path),
                        "--epochs", "1", "--run-name", "mem"])
    assert result.returncode == 0, result.stderr
    cfg = json.loads((tmp_path / "mem" / "config.json").read_text())
    assert "in memory" in cfg["workload"]["data_source"]


def _bad_run(args, tmp_path, timeout=180):
    start = time.monotonic()
    result = mpirun(2, ["--benchmark", "resnet", "--preset", "ci", "--out", str(tmp_path), *args],
                    timeout=timeout)
    return result, time.monotonic() - start


def _error_lines(result):
    return [line for line in result.stderr.splitlines() if line.startswith("ai500: error:")]


@pytest.mark.parametrize("args, fragment", [
    (["--benchmark", "nonesuch"], "invalid choice: 'nonesuch'"),
    (["--preset", "gigantic"], "invalid choice: 'gigantic'"),
    (["--batch-size", "0"], "must be > 0"),
    (["--batch-size", "-8"], "must be > 0"),
    (["--data", "/definitely/missing"], "no such file or directory"),
])
def test_bad_options_fail_fast_with_one_line(tmp_path, args, fragment):
    result, _ = _bad_run(args, tmp_path)
    assert result.returncode != 0
    lines = _error_lines(result)
    assert len(lines) == 1 and fragment in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert not any(tmp_path.iterdir())  # no run directory for a run that never started


def test_unknown_quality_metric_ends_every_rank_with_one_line_and_a_failed_summary(tmp_path):
    override = tmp_path / "metric.yaml"
    override.write_text("quality: {metric: val_nonesuch}\n")
    out = tmp_path / "runs"
    result = mpirun(2, ["--benchmark", "resnet", "--preset", "ci", "--out", str(out),
                        "--config", str(override)], timeout=180)
    assert result.returncode != 0
    lines = _error_lines(result)
    assert len(lines) == 1 and "'val_nonesuch' is not one that resnet reports" in lines[0], \
        result.stderr
    assert "val_auc" in lines[0] and "Traceback" not in result.stderr
    summary = load_summary(only_run_dir(out))
    assert summary["status"] == "failed" and summary["time_to_quality_s"] is None


def _write_hep(path, n=64, size=64, drop=None, shape=None, nan=False):
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        data = np.random.default_rng(0).random((n, 3, size, size), dtype=np.float32)
        if nan:
            data[n // 2, 0, 0, 0] = np.nan
        f["data"] = data if shape is None else np.zeros(shape, np.float32)
        for key in ("label", "weight", "normweight"):
            if key != drop:
                f[key] = (np.arange(n) % 2).astype(np.float32) if key == "label" else np.ones(n, np.float32)


@pytest.mark.parametrize("case, fragment", [
    ("missing_key", "normweight"),
    ("wrong_shape", "data"),
    ("truncated", "val.h5"),
    ("nan", "non-finite"),
    ("no_val", "val"),
])
def test_bad_data_fails_on_every_rank_without_hang(tmp_path, case, fragment):
    data = tmp_path / "data"
    _write_hep(data / "train.h5", nan=(case == "nan"))
    if case == "missing_key":
        _write_hep(data / "val.h5", drop="normweight")
    elif case == "wrong_shape":
        _write_hep(data / "val.h5", shape=(64, 64, 64, 3))
    elif case in ("truncated", "nan"):
        _write_hep(data / "val.h5")
        if case == "truncated":
            raw = (data / "val.h5").read_bytes()
            (data / "val.h5").write_bytes(raw[: len(raw) // 2])
    out = tmp_path / "runs"
    earlier = out / "earlier-run"
    earlier.mkdir(parents=True)
    (earlier / "summary.json").write_text('{"keep": true}')
    result, _ = _bad_run(["--data", str(data), "--out", str(out)], tmp_path)
    assert result.returncode != 0
    lines = _error_lines(result)
    assert len(lines) == 1 and fragment in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["earlier-run"]
    assert (earlier / "summary.json").read_text() == '{"keep": true}'


def test_existing_run_name_is_never_reused(tmp_path, hep_ci_data):
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "summary.json").write_text("precious")
    result, _ = _bad_run(["--data", str(hep_ci_data), "--run-name", "taken"], tmp_path)
    assert result.returncode != 0
    assert "already exists" in _error_lines(result)[0]
    assert sorted(p.name for p in taken.iterdir()) == ["summary.json"]
    assert (taken / "summary.json").read_text() == "precious"


def test_nan_loss_ends_run_on_every_rank_and_keeps_a_failed_summary(tmp_path, hep_ci_data):
    result, _ = _bad_run(["--data", str(hep_ci_data), "--lr", "1e12", "--epochs", "2",
                          "--run-name", "nan"], tmp_path)
    assert result.returncode != 0
    lines = _error_lines(result)
    assert len(lines) == 1 and "non-finite training metric in epoch 0" in lines[0], result.stderr
    summary = load_summary(tmp_path / "nan")
    assert summary["status"] == "failed" and summary["time_to_quality_s"] is None
    for rank in (0, 1):
        assert read_trace(tmp_path / "nan" / f"trace-rank{rank:05d}.h5").attrs["status"] == "failed"


def test_impossible_system_value_fails_before_any_run_directory(tmp_path):
    site = tmp_path / "site.yaml"
    site.write_text("energy: {watts_per_core: -1}\n")
    out = tmp_path / "runs"
    result, _ = _bad_run(["--system", str(site), "--out", str(out)], tmp_path)
    assert result.returncode != 0
    lines = _error_lines(result)
    assert len(lines) == 1 and "watts_per_core must be > 0" in lines[0], result.stderr
    assert not out.exists() or not any(out.iterdir())
