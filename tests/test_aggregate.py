import json

import numpy as np
import pytest
from conftest import run_record

from ai500 import aggregate
from ai500.errors import DataError
from ai500.trace import TraceWriter, trace_name

CONFIG = run_record()
# Per-rank training time of each epoch (seconds): rank 1 is slower in epochs 1 and 2.
DURATIONS = {0: [5.0, 2.0, 2.0], 1: [5.0, 4.0, 2.5]}
AUC = [0.6, 0.85, 0.9]


# Rank 0 meters the node: cumulative joules at t = -1, 5, 30 s (10 W throughout).
ENERGY = {"t": [-1.0, 5.0, 30.0], "estimated:node": [0.0, 60.0, 310.0]}


def make_run(tmp_path, config=CONFIG, ranks=(0, 1), statuses=("ok", "ok"), auc=AUC,
             energy=(ENERGY, None), hosts=("a", "a"), lag=(0.0, 0.0)):
    (tmp_path / "config.json").write_text(json.dumps(config))
    for rank, status in zip(ranks, statuses):
        w = TraceWriter(tmp_path / trace_name(rank), {"run_id": "run1", "rank": rank,
                                                      "wall_start": 1.7e9, "host": hosts[rank],
                                                      "init_seconds": 3.0 + rank})
        if energy[rank] is not None:
            w.set_group("energy", energy[rank])
        t = -lag[rank]  # a rank whose run_start came later reads every instant earlier
        for epoch, dur in enumerate(DURATIONS[rank]):
            # An evaluation ends in a collective (its metrics are reduced): at once on all ranks.
            eval_end = t + max(d[epoch] for d in DURATIONS.values()) + 0.5
            w.add_epoch({"epoch": epoch, "t_ready": t, "t_start": t, "t_train_end": t + dur, "t_eval_start": t + dur,
                         "t_eval_end": eval_end, "samples": 100,
                         "train_loss": 0.5, "val_auc": auc[epoch]})
            t += 10.0
        w.close(status)
    return tmp_path


def test_throughput_excludes_warmup_and_uses_slowest_rank(tmp_path):
    s = aggregate.aggregate(make_run(tmp_path))
    assert s["status"] == "ok"
    # Epochs 1 and 2: 200 + 200 global samples over slowest times 4.0 + 2.5 seconds.
    assert s["throughput"]["samples_per_s"] == pytest.approx(400 / 6.5)
    assert s["throughput"]["epochs_measured"] == [1, 2]
    assert s["throughput"]["per_rank_samples_per_s"] == pytest.approx([200 / 4.0, 200 / 6.5])
    assert s["flops"]["flops_per_s"] == pytest.approx(300 * 400 / 6.5)
    assert s["load_imbalance"]["median"] == pytest.approx(np.median([2.0, 1.25]))
    assert s["load_imbalance"]["max"] == pytest.approx(2.0)


def test_time_to_quality_is_first_eval_reaching_target(tmp_path):
    s = aggregate.aggregate(make_run(tmp_path))
    assert s["quality"]["reached"] is True
    assert s["time_to_quality_epoch"] == 1
    assert s["time_to_quality_s"] == pytest.approx(10.0 + 4.0 + 0.5)  # slowest rank's eval end
    assert s["init_s"] == pytest.approx(4.0)
    assert s["quality"]["best"] == pytest.approx(0.9)


def test_target_not_reached(tmp_path):
    s = aggregate.aggregate(make_run(tmp_path, auc=[0.5, 0.6, 0.7]))
    assert s["status"] == "ok"
    assert s["quality"]["reached"] is False and s["time_to_quality_s"] is None


def test_missing_rank_marks_failed_without_time_to_quality(tmp_path):
    s = aggregate.aggregate(make_run(tmp_path, ranks=(0,), statuses=("ok",)))
    assert s["status"] == "failed"
    assert s["time_to_quality_s"] is None and s["throughput"]["samples_per_s"] is None
    assert s["missing_or_failed_ranks"] == {"1": "no trace file"}
    assert s["epochs_completed"] == 3


def test_failed_rank_status_is_reported(tmp_path):
    s = aggregate.aggregate(make_run(tmp_path, statuses=("ok", "running")))
    assert s["status"] == "failed"
    assert s["missing_or_failed_ranks"] == {"1": "trace status 'running'"}


def test_summary_files_written_and_readable(tmp_path):
    import h5py

    make_run(tmp_path)
    aggregate.aggregate(tmp_path)
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    with h5py.File(tmp_path / "summary.h5") as f:
        assert json.loads(f.attrs["summary"]) == on_disk
        assert f["epochs/t_train_end"].shape == (2, 3)


def test_trace_from_another_run_is_refused(tmp_path):
    make_run(tmp_path)
    w = TraceWriter(tmp_path / trace_name(1), {"run_id": "other"})
    w.close("ok")
    with pytest.raises(DataError, match="belongs to run other"):
        aggregate.aggregate(tmp_path)


def test_not_a_run_dir(tmp_path):
    with pytest.raises(DataError, match="no config.json"):
        aggregate.aggregate(tmp_path)


def test_table_mentions_key_figures(tmp_path):
    text = aggregate.format_summary(aggregate.aggregate(make_run(tmp_path)))
    assert "time to quality 14.5 s (epoch 1)" in text
    assert "reached" in text and "epoch 0 excluded as warm-up" in text


def test_energy_cost_and_valid_flops(tmp_path):
    s = aggregate.aggregate(make_run(tmp_path))
    e = s["energy"]
    # run end = slowest rank's last eval end, 23.0 s; 10 W from t = 0.
    assert e["method"] == "estimated"
    assert e["joules"] == pytest.approx(230.0)
    assert e["joules_to_quality"] == pytest.approx(145.0)
    assert e["average_power_w"] == pytest.approx(10.0)
    assert e["peak_node_power_w"] == pytest.approx(10.0)
    assert s["samples_per_joule"] == pytest.approx(600 / 230.0)
    assert s["cost"]["node_hours_to_quality"] == pytest.approx(14.5 / 3600)
    assert s["cost"]["cost_to_quality"] == pytest.approx(2.0 * 14.5 / 3600)
    flops = 300 * 400 / 6.5
    assert s["flops"]["valid_flops_per_s"] == pytest.approx(flops * (0.9 / 0.8) ** 5)
    assert s["flops"]["valid_flops_per_watt"] == pytest.approx(flops * (0.9 / 0.8) ** 5 / 10.0)
    assert "[estimated]" in aggregate.format_summary(s)


def test_cost_is_na_with_the_reason_until_a_price_is_set(tmp_path):
    """The shipped system.yaml has no price: no cost figure, the reason in summary.json and in the
    printed table instead (a placeholder price would read as a real cost)."""
    from ai500 import config

    record = run_record()
    record["config"]["system"]["cost"] = config.resolve(["--benchmark", "resnet"]).system["cost"]
    s = aggregate.aggregate(make_run(tmp_path, config=record))
    c = s["cost"]
    assert c["price_per_node_hour"] is None and c["cost_to_quality"] is None
    assert c["node_hours_to_quality"] == pytest.approx(14.5 / 3600)  # still measured
    assert c["reason"] == ("no price_per_node_hour set in system.yaml (a site sets one with "
                           "--system FILE.yaml)")
    line = next(x for x in aggregate.format_summary(s).splitlines() if "cost " in x)
    assert line == f"  cost           n/a, 0.004028 node-hours to quality: {c['reason']}"
    assert "USD" not in line and "EUR" not in line


def test_cost_with_a_price_and_without_time_to_quality(tmp_path):
    (tmp_path / "priced").mkdir()
    s = aggregate.aggregate(make_run(tmp_path / "priced"))
    assert s["cost"]["reason"] is None
    table = aggregate.format_summary(s).splitlines()
    assert "  cost           0.008056 EUR to quality (0.004028 node-hours)" in table
    (tmp_path / "low").mkdir()
    s = aggregate.aggregate(make_run(tmp_path / "low", auc=[0.1, 0.2, 0.3]))
    assert s["cost"]["cost_to_quality"] is None
    assert s["cost"]["reason"] == "the quality target was not reached"


def test_measured_and_estimated_nodes_are_never_added(tmp_path):
    config = {**CONFIG, "dist": {"size": 2, "hosts": ["a", "b"], "nodes": 2}}
    rapl = {"t": [-1.0, 30.0], "rapl:package-0": [0.0, 3100.0]}
    s = aggregate.aggregate(make_run(tmp_path, config=config, energy=(ENERGY, rapl),
                                     hosts=("a", "b")))
    e = s["energy"]
    assert e["joules"] is None and e["method"] == "estimated+rapl"
    assert "not added" in e["reason"]
    assert [n["joules"] for n in e["per_node"]] == pytest.approx([230.0, 2300.0])
    assert s["samples_per_joule"] is None


def test_each_node_is_metered_to_the_end_of_the_run_on_its_own_clock(tmp_path):
    """Ranks take run_start as they leave a barrier, milliseconds apart. Rank 1, node b's
    metering rank, left it 5 ms after rank 0, so it reads the run's end (the last evaluation,
    ended in a collective) at 22.995 s where rank 0 reads 23.0 s; its meter stopped 1 ms after
    that. Node b is summed to its own rank's reading, not to rank 0's, which its samples never
    reached (before, three two-node jobs in two full test runs got no total this way)."""
    config = {**CONFIG, "dist": {"size": 2, "hosts": ["a", "b"], "nodes": 2}}
    node_b = {"t": [-1.0, 5.0, 22.996], "estimated:node": [0.0, 60.0, 239.96]}
    s = aggregate.aggregate(make_run(tmp_path, config=config, energy=(ENERGY, node_b),
                                     hosts=("a", "b"), lag=(0.0, 0.005)))
    e = s["energy"]
    assert s["run_s"] == pytest.approx(23.0)
    assert [n["joules"] for n in e["per_node"]] == pytest.approx([230.0, 229.95])
    assert e["joules"] == pytest.approx(459.95)
    assert e["joules_to_quality"] == pytest.approx(145.0 + 144.95)  # epoch 1, at 14.5 s


def test_a_node_whose_meter_stopped_early_is_named_with_the_reason(tmp_path):
    """A node's samples that end before its own end of the run leave the total None; the
    reason names the node, the interval, and the sampler's error from the trace."""
    import h5py

    config = {**CONFIG, "dist": {"size": 2, "hosts": ["a", "b"], "nodes": 2}}
    node_b = {"t": [-1.0, 5.0], "estimated:node": [0.0, 60.0]}
    make_run(tmp_path, config=config, energy=(ENERGY, node_b), hosts=("a", "b"))
    with h5py.File(tmp_path / trace_name(1), "a") as f:
        f.attrs["energy_error"] = "OSError: meter gone"
    e = aggregate.aggregate(tmp_path)["energy"]
    assert e["joules"] is None
    assert e["reason"].startswith("energy covers 1 of 2 node(s); b: interval [0.0, 23.0] s")
    assert e["reason"].endswith("(the sampler stopped: OSError: meter gone)")


def test_energy_disabled_is_unavailable_not_zero(tmp_path):
    config = json.loads(json.dumps(CONFIG))
    config["config"]["system"]["energy"]["enabled"] = False
    s = aggregate.aggregate(make_run(tmp_path, config=config))
    assert s["energy"]["joules"] is None and s["energy"]["method"] == "unavailable"
    assert "n/a [unavailable]" in aggregate.format_summary(s)


def test_time_accounting_adds_up_and_names_the_time_outside_the_phases(tmp_path):
    """Two ranks, three epochs of 10 s: rank 1 flushes slowly after epoch 0 (rank 0 waits 1.5 s
    at epoch 1's barrier) and rank 0 writes a 2 s checkpoint after epoch 1. Every second from
    run_start to the quality point (epoch 1) is training, evaluation, checkpoint or other."""
    (tmp_path / "config.json").write_text(json.dumps(CONFIG))
    starts = [0.0, 10.0, 20.0]
    ready = {0: [0.0, 8.5, 19.0], 1: [0.0, 10.0, 19.5]}
    for rank in (0, 1):
        w = TraceWriter(tmp_path / trace_name(rank), {"run_id": "run1", "rank": rank,
                                                      "wall_start": 1.7e9, "init_seconds": 3.0})
        for e, t in enumerate(starts):
            train_end = t + 5.0 + rank  # rank 1 trains 1 s longer: the slowest rank counts
            w.add_epoch({"epoch": e, "t_ready": ready[rank][e], "t_start": t,
                         "t_train_end": train_end, "t_eval_start": train_end + 0.5,
                         "t_eval_end": t + 8.0, "samples": 100, "train_loss": 0.5,
                         "val_auc": AUC[e]})
        if rank == 0:
            w.set_group("checkpoints", {"epoch": [1], "t_start": [t_ck := 18.0],
                                        "t_end": [t_ck + 1.0], "bytes": [1e6]})
        w.close("ok")
    s = aggregate.aggregate(tmp_path)
    epoch0, epoch1, epoch2 = s["epochs"]
    # Training until the last rank finished (6 s), evaluation from the last rank starting it.
    assert (epoch0["training_s"], epoch0["evaluation_s"], epoch0["wall_s"]) == (6.0, 1.5, 10.0)
    assert epoch0["other_s"] == pytest.approx(2.5)
    assert epoch1["checkpoint_s"] == 1.0 and epoch1["barrier_wait_s"] == 1.5
    assert epoch1["other_s"] == pytest.approx(10.0 - 6.0 - 1.5 - 1.0)
    # The last epoch lasts to the end of its evaluation; rank 1's 0.5 s between training and
    # evaluation is other.
    assert epoch2["wall_s"] == 8.0 and epoch2["other_s"] == pytest.approx(0.5)
    to_quality = s["time_accounting"]["to_quality"]  # epoch 1 reaches 0.8
    assert to_quality["total_s"] == 18.0
    assert (to_quality["training_s"], to_quality["evaluation_s"]) == (12.0, 3.0)
    assert to_quality["checkpoint_s"] == 0.0  # epoch 1's checkpoint came after its evaluation
    assert to_quality["other_s"] == pytest.approx(3.0)
    assert to_quality["other_share"] == pytest.approx(3.0 / 18.0)
    run = s["time_accounting"]["run"]
    assert run["total_s"] == 28.0 and run["checkpoint_s"] == 1.0
    assert run["training_s"] + run["evaluation_s"] + run["checkpoint_s"] + run["other_s"] == (
        pytest.approx(run["total_s"]))
    assert "other 3 s (16.67 %)" in aggregate.format_summary(s)


def test_the_summary_names_the_system_from_system_json(tmp_path):
    from ai500 import system

    run = make_run(tmp_path)
    assert "no readable system.json" in aggregate.aggregate(run)["system"]["unavailable"]
    node = {"cpu": {"model": "AMD EPYC 7763", "physical_cores": 64}, "gpus": []}
    (run / "system.json").write_text(json.dumps(system.describe(
        [node, node], {"launcher": "srun (Slurm step, PMI)"})))
    s = aggregate.aggregate(run)
    assert s["system"]["platform"] == "2 x AMD EPYC 7763 (64 cores), no GPU"
    assert s["system"]["nodes_described"] == 2 and s["system"]["launcher"].startswith("srun")
    assert "system         2 x AMD EPYC 7763 (64 cores), no GPU" in aggregate.format_summary(s)
