"""MLPerf-format logging: exact records with a fake clock, and mllog.txt of a (fake) finished
run read back by the mlperf-logging package's parser and compliance checker."""

from __future__ import annotations

import inspect
import json

import pytest
from mlperf_logging.compliance_checker import mlp_compliance, mlp_parser

from ai500 import aggregate, mllog
from ai500.trace import TraceWriter, trace_name

CONFIG = {
    "run_id": "run1", "kind": "training",
    "config": {"benchmark": "resnet", "preset": "ci", "seed": 7, "train": {"batch_size": 10},
               "quality": {"metric": "val_auc", "target": 0.8, "higher_is_better": True,
                           "vflops_exponent": 5.0}},
    "dist": {"size": 2, "hosts": ["nodeA", "nodeA"], "nodes": 1},
    "workload": {"train_events_used_per_epoch": 200},
    "flops_per_sample": {"forward": 100.0, "train": 300.0, "method": "test"},
}
WALL = 1_700_000_000.0  # run_start on the wall clock, seconds


def fake_run(path, auc):
    """Two ranks, three epochs: epoch e trains over [10e, 10e + 2 + rank], evaluates 0.5 s."""
    path.mkdir()
    (path / "config.json").write_text(json.dumps(CONFIG))
    for rank in (0, 1):
        w = TraceWriter(path / trace_name(rank), {"run_id": "run1", "rank": rank,
                                                  "wall_start": WALL, "init_seconds": 3.0})
        for e in range(3):
            t = 10.0 * e
            w.add_epoch({"epoch": e, "t_ready": t, "t_start": t, "t_train_end": t + 2 + rank,
                         "t_eval_start": t + 2.25 + rank, "t_eval_end": t + 2.5 + rank,
                         "samples": 100, "train_loss": 0.5, "val_auc": auc[e],
                         "val_events": 50.0})
        w.close("ok")
    aggregate.aggregate(path)
    return path


def records(path):
    return [json.loads(line[len(mllog.PREFIX):]) for line in path.read_text().splitlines()]


def test_three_verbs_exact_output_with_a_fake_clock():
    lines = []
    ticks = iter([1000.0, 1250.5, 2000.0004])
    log = mllog.MLLogger(lines.append, clock=lambda: next(ticks), namespace="worker0")
    first = inspect.currentframe().f_lineno + 1
    log.start(mllog.RUN_START)
    log.event(mllog.EVAL_ACCURACY, 0.75, {mllog.EPOCH_NUM: 1})
    log.end(mllog.RUN_STOP, metadata={mllog.STATUS: mllog.SUCCESS})
    log.event(mllog.SEED, 3, time_ms=5.0)  # an explicit time does not read the clock
    meta = '"metadata": {"file": "test_mllog.py", "lineno": %d'
    assert lines == [
        ':::MLLOG {"namespace": "worker0", "time_ms": 1000.0, "event_type": "INTERVAL_START", '
        '"key": "run_start", "value": null, ' + meta % first + '}}',
        ':::MLLOG {"namespace": "worker0", "time_ms": 1250.5, "event_type": "POINT_IN_TIME", '
        '"key": "eval_accuracy", "value": 0.75, ' + meta % (first + 1) + ', "epoch_num": 1}}',
        ':::MLLOG {"namespace": "worker0", "time_ms": 2000.0, "event_type": "INTERVAL_END", '
        '"key": "run_stop", "value": null, ' + meta % (first + 2) + ', "status": "success"}}',
        ':::MLLOG {"namespace": "worker0", "time_ms": 5.0, "event_type": "POINT_IN_TIME", '
        '"key": "seed", "value": 3, ' + meta % (first + 3) + '}}',
    ]


def test_non_finite_values_are_written_as_null():
    lines = []
    mllog.MLLogger(lines.append, clock=lambda: 1.0).event(mllog.EVAL_ACCURACY, float("nan"))
    assert json.loads(lines[0][len(mllog.PREFIX):])["value"] is None


def test_default_clock_is_wall_milliseconds():
    import time

    clock = mllog.anchored_clock()
    assert abs(clock() - time.time() * 1e3) < 1000


def test_run_that_reached_the_target(tmp_path):
    run = fake_run(tmp_path / "run", auc=[0.6, 0.85, 0.9])
    path = mllog.write_mllog(run)
    assert path == run / "mllog.txt"
    got = [(r["event_type"][9:] if r["event_type"].startswith("INTERVAL") else "POINT",
            r["key"], r["value"], {k: v for k, v in r["metadata"].items()
                                   if k not in ("file", "lineno")}, r["time_ms"])
           for r in records(path)]
    ms = lambda s: round((WALL + s) * 1e3, 3)
    init = ms(-3.0)
    assert got == [
        ("START", "init_start", None, {}, init),
        ("POINT", "submission_benchmark", "resnet", {}, init),
        ("POINT", "submission_org", "ai500", {}, init),
        ("POINT", "submission_division", "open", {}, init),
        ("POINT", "submission_platform", "1xnodeA", {}, init),
        ("POINT", "submission_status", "research", {}, init),
        ("POINT", "seed", 7, {}, init),
        ("POINT", "global_batch_size", 20, {}, init),
        ("POINT", "number_of_nodes", 1, {}, init),
        ("POINT", "accelerators_per_node", 0, {"ranks_per_node": 2}, init),
        ("POINT", "precision", "fp32", {"xla": False}, init),
        ("POINT", "train_samples", 200, {}, init),
        ("POINT", "eval_samples", 50, {"column": "val_events"}, init),
        ("POINT", "cache_clear", False, {"note": "the OS page cache is not cleared; each rank's "
                                                 "data shard is staged in memory before run_start"},
         init),
        ("END", "init_stop", None, {}, ms(0)),
        ("START", "run_start", None, {}, ms(0)),
        ("START", "epoch_start", None, {"epoch_num": 1}, ms(0)),
        ("END", "epoch_stop", None, {"epoch_num": 1}, ms(2)),
        ("START", "eval_start", None, {"epoch_num": 1}, ms(2.25)),
        ("END", "eval_stop", None, {"epoch_num": 1}, ms(2.5)),
        ("POINT", "eval_accuracy", 0.6, {"epoch_num": 1, "metric": "val_auc"}, ms(2.5)),
        ("START", "epoch_start", None, {"epoch_num": 2}, ms(10)),
        ("END", "epoch_stop", None, {"epoch_num": 2}, ms(12)),
        ("START", "eval_start", None, {"epoch_num": 2}, ms(12.25)),
        ("END", "eval_stop", None, {"epoch_num": 2}, ms(12.5)),
        ("POINT", "eval_accuracy", 0.85, {"epoch_num": 2, "metric": "val_auc"}, ms(12.5)),
        # The run stops at the target: the summary's time to quality (slowest rank, 13.5 s);
        # the third epoch, trained past the target, is not logged.
        ("END", "run_stop", None, {"status": "success"}, ms(13.5)),
    ]


def test_run_that_missed_the_target_is_aborted(tmp_path):
    run = fake_run(tmp_path / "run", auc=[0.6, 0.7, 0.75])
    recs = records(mllog.write_mllog(run, submission={"submission_org": "lab"}))
    assert [r["metadata"]["epoch_num"] for r in recs if r["key"] == "epoch_start"] == [1, 2, 3]
    assert recs[-1]["key"] == "run_stop" and recs[-1]["metadata"]["status"] == "aborted"
    assert recs[-1]["time_ms"] == round((WALL + 23.5) * 1e3, 3)  # slowest rank's last eval
    assert next(r for r in recs if r["key"] == "submission_org")["value"] == "lab"


# Rules for MLPerf's compliance checker: every key present the right number of times, intervals
# properly nested and in order (init → run → epochs with evaluations → run_stop with status).
RULES = """
- BEGIN:
    CODE: " s.update({'init_started': False, 'init_stopped': False, 'run_started': False,
            'run_stopped': False, 'in_epoch': False, 'in_eval': False, 'evals': 0}) "
- KEY: {NAME: submission_benchmark, REQ: EXACTLY_ONE, CHECK: " v['value'] == 'resnet' "}
- KEY: {NAME: submission_org, REQ: EXACTLY_ONE, CHECK: " v['value'] != '' "}
- KEY: {NAME: submission_platform, REQ: EXACTLY_ONE, CHECK: " v['value'] != '' "}
- KEY: {NAME: submission_division, REQ: EXACTLY_ONE, CHECK: " v['value'] in ['closed', 'open'] "}
- KEY: {NAME: submission_status, REQ: EXACTLY_ONE,
        CHECK: " v['value'] in ['cloud', 'onprem', 'preview', 'research'] "}
- KEY: {NAME: seed, REQ: EXACTLY_ONE, CHECK: " not s['run_started'] "}
- KEY: {NAME: global_batch_size, REQ: EXACTLY_ONE, CHECK: " v['value'] > 0 "}
- KEY: {NAME: number_of_nodes, REQ: EXACTLY_ONE, CHECK: " v['value'] >= 1 "}
- KEY: {NAME: accelerators_per_node, REQ: EXACTLY_ONE, CHECK: " v['value'] >= 0 "}
- KEY: {NAME: init_start, REQ: EXACTLY_ONE, CHECK: " not s['run_started'] ",
        POST: " s['init_started'] = True "}
- KEY: {NAME: init_stop, REQ: EXACTLY_ONE, CHECK: " s['init_started'] and not s['run_started'] ",
        POST: " s['init_stopped'] = True "}
- KEY: {NAME: run_start, REQ: EXACTLY_ONE, CHECK: " s['init_stopped'] ",
        POST: " s['run_started'] = True "}
- KEY: {NAME: epoch_start, REQ: AT_LEAST_ONE,
        CHECK: " s['run_started'] and not s['in_epoch'] and 'epoch_num' in v['metadata'] ",
        POST: " s['in_epoch'] = True "}
- KEY: {NAME: epoch_stop, REQ: AT_LEAST_ONE, CHECK: " s['in_epoch'] ",
        POST: " s['in_epoch'] = False "}
- KEY: {NAME: eval_start, REQ: AT_LEAST_ONE, CHECK: " not s['in_epoch'] and not s['in_eval'] ",
        POST: " s['in_eval'] = True "}
- KEY: {NAME: eval_stop, REQ: AT_LEAST_ONE, CHECK: " s['in_eval'] ", POST: " s['in_eval'] = False "}
- KEY: {NAME: eval_accuracy, REQ: AT_LEAST_ONE,
        CHECK: " 'epoch_num' in v['metadata'] and not s['in_eval'] ", POST: " s['evals'] += 1 "}
- KEY: {NAME: run_stop, REQ: EXACTLY_ONE,
        CHECK: " s['run_started'] and s['evals'] > 0 and v['metadata']['status'] in ['success', 'aborted'] "}
"""


@pytest.fixture()
def checker_rules(tmp_path):
    path = tmp_path / "ai500_rules.yaml"
    path.write_text(RULES)
    return str(path)


def check(path, rules) -> bool:
    checker = mlp_compliance.make_checker("training", "4.1.0", quiet=True, werror=False)
    return checker.check_file(str(path), rules)


def test_mlperf_logging_parses_and_checks_the_log(tmp_path, checker_rules):
    path = mllog.write_mllog(fake_run(tmp_path / "run", auc=[0.6, 0.85, 0.9]))
    lines, errors = mlp_parser.parse_file(str(path), ruleset="4.1.0")
    assert errors == [] and len(lines) == 27  # with cache_clear
    keys = [ll.key for ll in lines]
    assert keys[:2] == ["init_start", "submission_benchmark"] and keys[-1] == "run_stop"
    assert [ll.timestamp for ll in lines] == sorted(ll.timestamp for ll in lines)
    assert check(path, checker_rules)


def test_the_checker_rejects_a_log_without_run_stop(tmp_path, checker_rules):
    path = mllog.write_mllog(fake_run(tmp_path / "run", auc=[0.6, 0.85, 0.9]))
    broken = tmp_path / "broken.txt"
    broken.write_text("\n".join(path.read_text().splitlines()[:-1]) + "\n")
    assert not check(broken, checker_rules)
