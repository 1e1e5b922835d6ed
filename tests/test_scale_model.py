"""benchmarks/scale_model.py's synthetic run directories are valid runs: 8 ranks (two nodes)
written by its fast path (templates copied and patched) summarise exactly as the same run written
trace by trace with TraceWriter, to the figures its timeline implies; and the aggregator's
parallel trace readers give what one reader gives."""

from __future__ import annotations

import importlib.util
import json

import pytest
from conftest import ROOT

from ai500 import aggregate
from ai500.aggregate import load
from ai500.errors import DataError

SPEC = importlib.util.spec_from_file_location("scale_model", ROOT / "benchmarks" / "scale_model.py")
scale_model = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(scale_model)

RANKS = 8


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("scale")
    fast = scale_model.write_run(base / "fast", RANKS, workers=1)
    reference = scale_model.write_run(base / "reference", RANKS, reference=True, workers=1)
    return fast, reference


def test_the_fast_generator_summarises_as_trace_by_trace_writing(runs):
    fast, reference = (aggregate.aggregate(run) for run in runs)
    assert fast == reference
    assert (runs[0] / "mllog.txt").read_text() == (runs[1] / "mllog.txt").read_text()


def test_the_synthetic_run_has_the_figures_its_timeline_implies(runs):
    summary = aggregate.aggregate(runs[0])
    rows = [scale_model.epoch_rows(rank) for rank in range(RANKS)]
    assert summary["status"] == "ok" and summary["ranks"] == RANKS and summary["nodes"] == 2
    assert summary["epochs_completed"] == scale_model.EPOCHS
    assert summary["time_to_quality_epoch"] == 3  # VAL_AUC passes resnet small's 0.94 there
    assert summary["time_to_quality_s"] == pytest.approx(max(r[3]["t_eval_end"] for r in rows))
    train = [[r[e]["t_train_end"] - r[e]["t_start"] for r in rows] for e in range(1, 5)]
    samples = RANKS * scale_model.STEPS_PER_EPOCH * scale_model.BATCH
    assert summary["throughput"]["samples_per_s"] == pytest.approx(
        4 * samples / sum(max(t) for t in train))
    assert summary["energy"]["method"] == "estimated" and len(summary["energy"]["per_node"]) == 2
    assert summary["system"]["nodes_described"] == 2
    assert json.loads((runs[0] / "config.json").read_text())["dist"]["hosts"][4] == "node00001"


def test_parallel_trace_readers_read_what_one_reader_reads(runs):
    files = load.trace_files(runs[0])
    serial, parallel = load.read_traces(files, workers=1), load.read_traces(files, workers=2)
    assert sorted(serial) == sorted(parallel) == list(range(RANKS))
    for rank in serial:
        assert serial[rank].attrs == parallel[rank].attrs
        assert {g: {k: v.tolist() for k, v in c.items()} for g, c in serial[rank].groups.items()} \
            == {g: {k: v.tolist() for k, v in c.items()} for g, c in parallel[rank].groups.items()}
        assert "steps" not in serial[rank].groups and "config" not in serial[rank].attrs


def test_reader_count(monkeypatch):
    assert load.reader_count(64, {}) == 1  # too few traces to repay a worker's start
    assert load.reader_count(10**6, {}) <= 16
    assert load.reader_count(10, {load.WORKERS_VAR: "3"}) == 3
    with pytest.raises(DataError, match="AI500_AGGREGATE_WORKERS='0'"):
        load.reader_count(10, {load.WORKERS_VAR: "0"})
