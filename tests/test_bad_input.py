"""Bad input to every entry point that needs no MPI: config files, the aggregator's run directory
(config.json, traces), the report's summaries and manifests, the sweep's arguments, and the dataset
readers. Each gives one clear line naming the file and the problem, a non-zero exit, and leaves
earlier results as they were (the README's bad-input table lists them)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import ROOT, python_module

sys.path.insert(0, str(ROOT))
from ai500 import aggregate, config, report
from ai500.data import cosmo, hep
from ai500.errors import ConfigError, DataError
from ai500.trace import TraceWriter, read_trace, trace_name
from launch import sweep

RUN_ID = "badrun"


def one_error_line(err: str, prefix: str = "ai500: error: ") -> str:
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(prefix), err
    return lines[0]


# --- config files --------------------------------------------------------------------------------

@pytest.mark.parametrize("text, flag, fragment", [
    (b"train: {epochs: 2}\n\xff\xfe", "--config", "cannot read ('utf-8' codec"),
    (b"train: {epochs: 2, epochs: 3}\n", "--config", "duplicate key 'epochs', line 1"),
    (b"train:\n", "--config", "section 'train' must be a mapping of keys, got None"),
    (b"train:\n\tepochs: 3\n", "--config", "cannot start any token, line 2"),
    (b"train: {warmup_epochs: .nan}\n", "--config", "train.warmup_epochs must be finite"),
    (b"quality: {vflops_exponent: -1}\n", "--config", "Valid FLOPS exponent must be"),
    (b"model: {stage_widths: [8, .inf]}\n", "--config", "model.stage_widths must be finite"),
    (b"data: {image_size: 64.5}\n", "--config", "data.image_size must be a whole number"),
    (b"model: {stem_pool: 1}\n", "--config", "model.stem_pool must be true or false"),
    (b"energy: {enabled: sometimes}\n", "--system", "energy.enabled must be true or false"),
    (b"energy: {watts_per_core: lots}\n", "--system", "energy.watts_per_core must be a number"),
    (b"cost: {price_per_node_hour: .nan}\n", "--system", "price_per_node_hour must be finite"),
    (b"cost: {price_per_node_hour: -3}\n", "--system", "price_per_node_hour must be >= 0"),
    (b"cost: {price_per_node_hour: cheap}\n", "--system",
     "price_per_node_hour must be >= 0 (a number, or null for no price), got 'cheap'"),
    (b"cost: {price_per_node_hour: true}\n", "--system", "price_per_node_hour must be >= 0"),
    (b"cost: {currency: 5}\n", "--system", "cost.currency must be text"),
])
def test_bad_config_files(tmp_path, text, flag, fragment):
    path = tmp_path / "bad.yaml"
    path.write_bytes(text)
    with pytest.raises(ConfigError) as info:
        config.resolve(["--benchmark", "resnet", "--preset", "ci", flag, str(path)])
    message = str(info.value)
    assert fragment in message and "\n" not in message


def test_config_path_that_is_a_directory_and_data_that_is_a_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        config.resolve(["--benchmark", "resnet", "--config", str(tmp_path)])
    data = tmp_path / "train.h5"
    data.write_bytes(b"")
    with pytest.raises(ConfigError, match="not a directory"):
        config.resolve(["--benchmark", "resnet", "--data", str(data)])


def test_yaml_merge_keys_may_repeat_a_key(tmp_path):
    path = tmp_path / "merge.yaml"
    path.write_text("model: {<<: {stem_width: 4, stem_kernel: 5}, stem_kernel: 7}\n")
    model = config.resolve(["--benchmark", "resnet", "--preset", "ci", "--config",
                            str(path)]).model
    assert (model["stem_width"], model["stem_kernel"]) == (4, 7)


# --- the aggregator: run directories ---------------------------------------------------------------

CONFIG = {
    "run_id": RUN_ID, "kind": "training",
    "config": {"benchmark": "resnet", "preset": "ci", "seed": 0, "train": {"batch_size": 10},
               "quality": {"metric": "val_auc", "target": 0.8, "higher_is_better": True,
                           "vflops_exponent": 5.0},
               "system": {"energy": {"enabled": False}, "cost": {"price_per_node_hour": 1.0,
                                                                "currency": "USD"}}},
    "dist": {"size": 2, "hosts": ["a", "a"], "nodes": 1},
    "flops_per_sample": {"forward": 1.0, "train": 3.0, "method": "test"},
}


def write_trace(path: Path, rank: int, run_id: str = RUN_ID, size: int = 2, status: str = "ok",
                epochs: int = 2, attrs: dict | None = None) -> None:
    w = TraceWriter(path, {"run_id": run_id, "rank": rank, "size": size, "wall_start": 1.7e9,
                           "init_seconds": 2.0, **(attrs or {})})
    for e in range(epochs):
        w.add_epoch({"epoch": e, "t_ready": 10.0 * e, "t_start": 10.0 * e, "t_train_end": 10.0 * e + 4.0, "t_eval_start": 10.0 * e + 4.0,
                     "t_eval_end": 10.0 * e + 5.0, "samples": 50, "train_loss": 0.5,
                     "val_auc": 0.7 + 0.1 * e})
    w.close(status)


def make_run(run_dir: Path, cfg: dict = CONFIG) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(json.dumps(cfg))
    for rank in range(cfg["dist"]["size"]):
        write_trace(run_dir / trace_name(rank), rank)
    return run_dir


def aggregate_cli(run_dir: Path, capsys) -> tuple[int, str]:
    code = aggregate.main([str(run_dir)])
    return code, capsys.readouterr().err


def _edited(**changes) -> dict:
    cfg = json.loads(json.dumps(CONFIG))
    for dotted, value in changes.items():
        *path, key = dotted.split("__")
        target = cfg
        for part in path:
            target = target[part]
        if value is KeyError:
            del target[key]
        else:
            target[key] = value
    return cfg


@pytest.mark.parametrize("text, fragment", [
    ("", "unreadable or not JSON"),
    ("[1, 2]", "expected a JSON object, got list"),
    (json.dumps(_edited(run_id=KeyError)), "no run_id"),
    (json.dumps(_edited(dist__size="2")), "dist.size is '2', expected a whole number >= 1"),
    (json.dumps(_edited(dist__size=0)), "dist.size is 0"),
    (json.dumps(_edited(config__quality__target=float("nan"))), "quality.target is nan"),
    (json.dumps(_edited(config__train=KeyError)), "no config.train.batch_size"),
    (json.dumps(_edited(config__system__cost__price_per_node_hour="cheap")),
     "price_per_node_hour is 'cheap'"),
    (json.dumps(_edited(dist__size=3)), "dist.size is 3, but the traces were written by"),
])
def test_malformed_config_json(tmp_path, capsys, text, fragment):
    run = make_run(tmp_path / "run")
    (run / "config.json").write_text(text)
    code, err = aggregate_cli(run, capsys)
    assert code == 1 and fragment in one_error_line(err), err
    assert not (run / "summary.json").exists()


def test_not_a_run_directory(tmp_path, capsys):
    for path, fragment in ((tmp_path / "missing", "no such run directory"),
                           (tmp_path, "no config.json")):
        code, err = aggregate_cli(path, capsys)
        assert code == 1 and fragment in one_error_line(err)
    (tmp_path / "file").write_text("x")
    code, err = aggregate_cli(tmp_path / "file", capsys)
    assert code == 1 and "no such run directory" in one_error_line(err)


def test_no_trace_at_all_is_nothing_to_summarise(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps(CONFIG))
    code, err = aggregate_cli(run, capsys)
    assert code == 1 and "no usable trace, nothing to summarise" in one_error_line(err)


def test_a_trace_from_another_run_or_a_bigger_one(tmp_path, capsys):
    run = make_run(tmp_path / "run")
    write_trace(run / trace_name(1), 1, run_id="someone-else")
    code, err = aggregate_cli(run, capsys)
    assert code == 1 and "belongs to run someone-else, not badrun" in one_error_line(err)
    run = make_run(tmp_path / "run2")
    write_trace(run / trace_name(2), 2, size=3)
    code, err = aggregate_cli(run, capsys)
    assert code == 1 and "rank 2, but" in one_error_line(err)
    assert not (run / "summary.json").exists()


@pytest.mark.parametrize("damage, fragment", [
    (lambda p: p.write_bytes(p.read_bytes()[:1000]), "not a readable HDF5 trace (Unable to"),
    (lambda p: p.write_bytes(b""), "not a readable HDF5 trace"),
    (lambda p: p.unlink(), "no trace file"),
    (lambda p: write_trace(p, 1, attrs={"schema_version": 1}), "schema version 1, expected 2"),
    (lambda p: write_trace(p, 1, status="running"), "trace status 'running'"),
    (lambda p: write_trace(p, 1, attrs={"rank": 0}), "holds rank 0"),
    (lambda p: write_trace(p, 1, attrs={"wall_start": float("nan")}), "attribute wall_start is nan"),
    (lambda p: write_trace(p, 1, epochs=0), "status ok but no epochs"),
])
def test_damaged_trace_fails_the_run_and_never_replaces_a_good_summary(tmp_path, capsys, damage,
                                                                       fragment):
    run = make_run(tmp_path / "run")
    assert aggregate_cli(run, capsys)[0] == 0
    good = {name: (run / name).read_bytes() for name in ("summary.json", "summary.h5",
                                                          "mllog.txt")}
    damage(run / trace_name(1))
    code, err = aggregate_cli(run, capsys)
    line = one_error_line(err)
    assert code == 1 and fragment in line and "summary.json (status ok) kept" in line, line
    assert {name: (run / name).read_bytes() for name in good} == good
    # Without an earlier good summary the failed run is summarised as failed, and said so.
    for name in good:
        (run / name).unlink()
    code, err = aggregate_cli(run, capsys)
    assert code == 1 and fragment in one_error_line(err)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "failed" and summary["time_to_quality_s"] is None
    assert fragment in summary["missing_or_failed_ranks"]["1"]


def test_epoch_columns_are_checked(tmp_path, capsys):
    run = make_run(tmp_path / "run")
    w = TraceWriter(run / trace_name(1), {"run_id": RUN_ID, "rank": 1, "wall_start": 1.7e9})
    w.add_epoch({"epoch": 0, "t_ready": 5.0, "t_start": 5.0, "t_train_end": 4.0, "t_eval_start": 4.0, "t_eval_end": 6.0,
                 "samples": 5, "val_auc": 0.9})
    w.close("ok")
    code, err = aggregate_cli(run, capsys)
    assert code == 1 and "epochs out of order" in one_error_line(err)
    w = TraceWriter(run / trace_name(1), {"run_id": RUN_ID, "rank": 1, "wall_start": 1.7e9})
    w.add_epoch({"epoch": 0, "t_ready": 0.0, "t_start": 0.0, "t_train_end": 4.0, "t_eval_start": 4.0, "t_eval_end": 6.0,
                 "samples": 5})
    w.close("ok")
    code, err = aggregate_cli(run, capsys)
    assert code == 1 and "epochs has no val_auc column" in one_error_line(err)


def test_cli_prints_no_traceback(tmp_path):
    run = make_run(tmp_path / "run")
    (run / trace_name(0)).write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(64))
    result = python_module("ai500.aggregate", [str(run)], timeout=120)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "trace-rank00000.h5: not a readable HDF5 trace" in one_error_line(result.stderr)


# --- trace and dataset readers -----------------------------------------------------------------------

def test_trace_reader_rejects_foreign_layouts(tmp_path):
    path = tmp_path / "t.h5"
    with h5py.File(path, "w") as f:
        f.attrs["schema_version"] = 2
        f["epochs"] = np.zeros(3)  # a dataset where a group of columns belongs
    with pytest.raises(DataError, match="epochs is not a group of columns"):
        read_trace(path)
    with h5py.File(path, "w") as f:
        f.attrs["schema_version"] = 2
        f.create_group("epochs")["t_start"] = np.zeros((2, 2))
    with pytest.raises(DataError, match="epochs/t_start is not a 1-D column"):
        read_trace(path)
    with h5py.File(path, "w") as f:
        f.attrs["schema_version"] = 2
        f.attrs["config"] = "{not json"
    with pytest.raises(DataError, match="attribute config is not a JSON object"):
        read_trace(path)
    with pytest.raises(DataError, match="no such file"):
        read_trace(tmp_path / "missing.h5")


def _hep_file(path: Path, n: int = 6, **changes) -> Path:
    arrays = {"data": np.ones((n, 3, 8, 8), np.float32), "label": (np.arange(n) % 2).astype("f4"),
              "weight": np.ones(n, np.float32), "normweight": np.ones(n, np.float32), **changes}
    with h5py.File(path, "w") as f:
        for key, value in arrays.items():
            if value is not None:
                f[key] = value
    return path


def test_hep_reader(tmp_path):
    empty = tmp_path / "empty.h5"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match="empty.h5: empty file"):
        hep.inspect_files([empty])
    path = _hep_file(tmp_path / "text.h5", data=np.array([b"x"] * 6))
    with pytest.raises(DataError, match="text.h5: data has non-numeric dtype"):
        hep.inspect_files([path])
    path = _hep_file(tmp_path / "none.h5", n=0)
    with pytest.raises(DataError, match=r"none.h5: data has shape \(0, 3, 8, 8\)"):
        hep.inspect_files([path])
    path = _hep_file(tmp_path / "label.h5", label=np.array([0, 1, 2, 0, 1, 0], np.float32))
    counts = hep.inspect_files([path])
    with pytest.raises(DataError, match="label.h5: label of event 2 is 2, expected 0 or 1"):
        hep.load_range([path], counts, 0, 6)
    with h5py.File(tmp_path / "group.h5", "w") as f:
        for key in hep.KEYS:
            f.create_group(key)
    with pytest.raises(DataError, match="group.h5: data is not a dataset"):
        hep.inspect_files([tmp_path / "group.h5"])


def test_cosmo_reader(tmp_path):
    for name, write, fragment in (
            ("empty", lambda p: p.write_bytes(b""), "empty file"),
            ("zip", lambda p: shutil.copy(_npz(tmp_path), p), "not a .npy file"),
            ("complex", lambda p: np.save(p, np.zeros((2, 4, 4), np.complex64)), "non-numeric"),
            ("header", lambda p: p.write_bytes(b"\x93NUMPY\x01\x00\x10\x00{'descr': (\n"),
             "not a readable .npy file")):
        d = tmp_path / name
        d.mkdir()
        write(d / "train.npy")
        with pytest.raises(DataError, match=fragment) as info:
            cosmo.load_shard(d, "train", 0, 1, equal=True)
        assert "train.npy" in str(info.value) and "\n" not in str(info.value)


def _npz(tmp_path: Path) -> Path:
    path = tmp_path / "maps.npz"
    np.savez(path, maps=np.zeros((2, 4, 4), np.float32))
    return path


# --- the report ------------------------------------------------------------------------------------

def _summary(n: int, **changes) -> dict:
    s = {"schema_version": 1, "status": "ok", "kind": "training", "benchmark": "resnet",
         "preset": "ci", "ranks": n, "global_batch_size": 32 * n, "run_id": f"r{n}",
         "quality": {"metric": "val_auc", "target": 0.9, "reached": False, "best": 0.8},
         "throughput": {"samples_per_s": 100.0 * n, "per_rank_samples_per_s": [100.0] * n,
                        "epochs_measured": [1], "method": "m"},
         "epochs": [{"epoch": 0, "slowest_rank_s": 2.0}, {"epoch": 1, "slowest_rank_s": 1.0}]}
    s.update(changes)
    return s


def _runs(tmp_path: Path, first: dict | str) -> list[Path]:
    runs = []
    for n, s in ((1, first), (2, _summary(2))):
        d = tmp_path / f"run{n}"
        d.mkdir()
        (d / "summary.json").write_text(s if isinstance(s, str) else json.dumps(s))
        runs.append(d)
    return runs


@pytest.mark.parametrize("first, fragment", [
    ('{"status": "ok", ', "summary.json: unreadable (Expecting"),
    ("[]", "summary.json: expected a JSON object, got list"),
    (_summary(1, schema_version=7), "schema_version is 7, expected 1"),
    (_summary(1, ranks="one"), "ranks is 'one', expected a whole number >= 1"),
    (_summary(1, throughput={"samples_per_s": "fast"}), "throughput.samples_per_s is 'fast'"),
    (json.dumps(_summary(1)).replace("100.0,", "NaN,", 1), "samples_per_s is nan"),
    (_summary(1, quality=[1]), "quality.reached is inside [1]"),
])
def test_damaged_summary_is_listed_failed_and_exits_1(tmp_path, capsys, first, fragment):
    out = tmp_path / "out"
    code = report.main([*map(str, _runs(tmp_path, first)), "--mode", "weak", "--out", str(out)])
    line = one_error_line(capsys.readouterr().err, "ai500.report: error: ")
    assert code == 1 and fragment in line and "run1" in line, line
    r = json.loads((out / "report.json").read_text())
    assert [f["name"] for f in r["failed"]] == ["run1"] and fragment in r["failed"][0]["problem"]


MANIFEST = {"kind": "ai500-sweep", "benchmark": "resnet", "preset": "ci", "mode": "weak",
            "points": []}


@pytest.mark.parametrize("manifest, fragment", [
    ("{", "manifest.json: unreadable"),
    ('{"kind": "ai500-sweep", "benchmark": "resnet", "preset": "ci", "points": []}', "no mode"),
    (json.dumps({**MANIFEST, "points": [{"name": "a"}]}), "points is [{'name': 'a'}], expected"),
    (json.dumps({**MANIFEST, "schema_version": 2}), "schema_version is 2, expected 1"),
])
def test_damaged_manifest_is_refused(tmp_path, capsys, manifest, fragment):
    (tmp_path / "sweep").mkdir()
    (tmp_path / "sweep" / "manifest.json").write_text(manifest)
    code = report.main([str(tmp_path / "sweep"), "--out", str(tmp_path / "out")])
    assert code == 2 and fragment in one_error_line(capsys.readouterr().err,
                                                    "ai500.report: error: ")
    assert not (tmp_path / "out").exists()


def test_report_refuses_one_run_twice_and_an_unwritable_out(tmp_path, capsys):
    runs = _runs(tmp_path, _summary(1))
    code = report.main([*map(str, runs), str(runs[0]), "--mode", "weak", "--out",
                        str(tmp_path / "out")])
    assert code == 2 and "refusing to count a run twice" in one_error_line(
        capsys.readouterr().err, "ai500.report: error: ")
    copy = tmp_path / "copy"
    shutil.copytree(runs[1], copy)
    code = report.main([*map(str, runs), str(copy), "--mode", "weak", "--out",
                        str(tmp_path / "out")])
    assert code == 2 and "the same run (run_id r2)" in capsys.readouterr().err
    (tmp_path / "file").write_text("x")
    code = report.main([*map(str, runs), "--mode", "weak", "--out", str(tmp_path / "file")])
    assert code == 1 and "cannot write the report" in one_error_line(
        capsys.readouterr().err, "ai500.report: error: ")


# --- the sweep ----------------------------------------------------------------------------------

@pytest.mark.parametrize("argv, fragment", [
    (["--mode", "sideways"], "argument --mode: invalid choice: 'sideways'"),
    (["--mode", "weak", "--repeats", "x"], "argument --repeats: invalid int value: 'x'"),
    (["--mode", "weak", "--timeout", "nan"], "--timeout must be a finite number"),
    (["--mode", "weak", "--timeout", "0"], "--timeout must be a finite number"),
    (["--mode", "weak", "--sweep-name", "../elsewhere"], "a plain directory name"),
    (["--mode", "weak", "--", "--epochs", "zero"],
     "point np0001-r01: ai500.run would refuse its arguments: argument --epochs"),
    (["--mode", "weak", "--", "--config", "/no/such.yaml"], "--config /no/such.yaml: no such"),
    (["--mode", "strong", "--", "--lr=nan"], "must be a finite number > 0, got nan"),
])
def test_sweep_argument_errors_are_one_line_before_anything_runs(tmp_path, capsys, argv,
                                                                  fragment):
    code = sweep.main(["--benchmark", "resnet", "--preset", "ci", "--ranks", "1,2",
                       "--out", str(tmp_path), *argv])
    captured = capsys.readouterr()
    assert code == 2 and captured.out == ""
    assert fragment in one_error_line(captured.err, "sweep: error: ")
    assert list(tmp_path.iterdir()) == []


def test_sweep_out_that_is_a_file(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    code = sweep.main(["--benchmark", "resnet", "--preset", "ci", "--mode", "weak",
                       "--ranks", "1", "--out", str(tmp_path / "file")])
    assert code == 2 and "cannot create the sweep directory" in one_error_line(
        capsys.readouterr().err, "sweep: error: ")
