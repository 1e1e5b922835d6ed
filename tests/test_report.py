"""Scaling reports from fake sweeps: definitions per mode, repeats, refusals, failed and
not-reached runs, energy, micro benchmarks, and self-contained HTML."""

from __future__ import annotations

import json
import statistics

import pytest

from ai500 import report as rpt


def summary(n, x, *, benchmark="resnet", preset="ci", batch=32, ttq=None, status="ok",
            energy=None, vflops=None, epoch_s=1.0, seed=0, epoch=1, epochs=3):
    """A hand-made run summary: `epochs` epochs evaluated (val_auc 0.95 from epoch `epoch` on
    when ttq is given, else 0.7 at most), reached at `epoch` with time to quality `ttq`."""
    aucs = [0.95 if ttq is not None and e >= epoch else 0.6 + 0.1 * e / max(epochs - 1, 1)
            for e in range(epochs)]
    times = [9.0, epoch_s, epoch_s * 3] + [epoch_s] * (epochs - 3)
    s = {"status": status, "kind": "training", "benchmark": benchmark, "preset": preset,
         "ranks": n, "nodes": 1, "global_batch_size": batch * n, "seed": seed,
         "epochs_completed": epochs, "time_to_quality_epoch": epoch if ttq is not None else None,
         "quality": {"metric": "val_auc", "target": 0.9, "higher_is_better": True,
                     "reached": ttq is not None, "best": 0.95 if ttq else 0.7},
         "time_to_quality_s": ttq, "init_s": 2.0,
         "throughput": {"samples_per_s": x, "per_rank_samples_per_s": [x / n] * n,
                        "epochs_measured": [1, 2], "method": "global samples / slowest rank"},
         "flops": {"flops_per_s": x * 1e6, "method": "profiler"},
         "load_imbalance": {"median": 1.1, "max": 1.25, "definition": "slowest / fastest"},
         "epochs": [{"epoch": e, "slowest_rank_s": times[e], "t_end_s": sum(times[:e + 1]),
                     "val_auc": aucs[e]} for e in range(epochs)]}
    if vflops is not None:
        s["flops"]["valid_flops_per_s"] = vflops
    if energy is not None:
        s["energy"] = energy
    return s


def make_sweep(root, name, points, mode="weak", benchmark="resnet", preset="ci", cores=2):
    """points: (ranks, repeat, summary dict or None, manifest status[, seed of a --seeds sweep])."""
    sweep = root / name
    sweep.mkdir(parents=True)
    entries = []
    for n, r, s, status, *seed in points:
        run = f"np{n:04d}" + "".join(f"-s{x:02d}" for x in seed) + f"-r{r:02d}"
        (sweep / run).mkdir()
        if s is not None:
            (sweep / run / "summary.json").write_text(json.dumps(s))
        entries.append({"name": run, "ranks": n, "repeat": r, "run_dir": run, "status": status,
                        "oversubscribed": n > cores, "cores": cores,
                        "problem": None if status == "ok" else "exit status 1"})
    (sweep / "manifest.json").write_text(json.dumps({
        "kind": "ai500-sweep", "benchmark": benchmark, "preset": preset, "mode": mode,
        "batch_rule": {"rule": f"{mode} rule"}, "points": entries}))
    return sweep


def report(tmp_path, *paths, mode=None):
    out = tmp_path / "out"
    code = rpt.main([*map(str, paths), "--out", str(out)] + (["--mode", mode] if mode else []))
    assert code == 0
    return json.loads((out / "report.json").read_text()), (out / "report.md").read_text(), out


def test_olympic_mean_drops_best_and_worst():
    assert rpt.olympic_mean([5.0, 1.0, 100.0, 3.0, 4.0]) == 4.0  # mean of 3, 4, 5
    assert rpt.olympic_mean([2.0, 2.0, 2.0]) == 2.0
    with pytest.raises(ValueError, match="at least 3"):
        rpt.olympic_mean([1.0, 2.0])
    s = rpt.stats([10.0, 12.0, 11.0, 30.0, 9.0])
    assert (s["median"], s["min"], s["max"], s["olympic_mean"]) == (11.0, 9.0, 30.0, 11.0)
    assert rpt.stats([1.0, 2.0, 3.0, 4.0])["olympic_mean"] is None  # only from 5 repeats
    assert rpt.stats([None, float("nan")]) is None


def test_weak_efficiency_uses_medians_over_repeats(tmp_path):
    xs1 = [100.0, 90.0, 110.0, 95.0, 300.0]
    pts = [(1, r + 1, summary(1, x), "ok") for r, x in enumerate(xs1)]
    pts += [(2, 1, summary(2, 150.0), "ok"), (4, 1, summary(4, 240.0), "ok")]
    r, md, _ = report(tmp_path, make_sweep(tmp_path, "w", pts))
    p1, p2, p4 = r["points"]
    assert p1["throughput"]["median"] == statistics.median(xs1) == 100.0
    assert p1["throughput"]["olympic_mean"] == pytest.approx((95 + 100 + 110) / 3)
    assert p2["efficiency"] == 150.0 / (2 * 100.0) and p4["efficiency"] == 240.0 / (4 * 100.0)
    assert p4["throughput_ratio"] == 2.4 and p4["speedup"] is None
    assert "100 [90–300] o.m. 101.7" in md
    assert "| 4 | 128 | 240 | 60 | 400 | 2.4 | 0.6 |" in md
    assert "yes (> 2 cores)" in md and "**Oversubscribed:** N = 4" in md


def test_strong_speedup_from_time_to_quality_when_every_n_reached(tmp_path):
    pts = [(1, 1, summary(1, 100.0, batch=64, ttq=80.0), "ok"),
           (2, 1, summary(2, 180.0, batch=32, ttq=50.0), "ok"),
           (4, 1, summary(4, 300.0, batch=16, ttq=25.0), "ok")]
    r, md, out = report(tmp_path, make_sweep(tmp_path, "s", pts, mode="strong"))
    assert r["scaling"]["basis"] == "time to quality"
    s = {p["ranks"]: p for p in r["points"]}
    assert s[2]["speedup"] == 80.0 / 50.0 and s[2]["efficiency"] == 80.0 / 50.0 / 2
    assert s[4]["speedup"] == 80.0 / 25.0 and s[4]["efficiency"] == 80.0 / 25.0 / 4
    assert "speedup S(N) = T(1)/T(N)" in md and "strong-scaling efficiency S(N)/N" in md
    assert "T(N) = time to quality s" in md
    assert (out / "time_to_quality.png").exists()


def test_strong_falls_back_to_time_per_epoch_and_says_so(tmp_path):
    pts = [(1, 1, summary(1, 100.0, batch=64, ttq=80.0, epoch_s=4.0), "ok"),
           (2, 1, summary(2, 180.0, batch=32, epoch_s=2.5), "ok")]  # N=2 did not reach
    r, md, _ = report(tmp_path, make_sweep(tmp_path, "s", pts, mode="strong"))
    assert r["scaling"]["basis"] == "time per epoch"
    p2 = r["points"][1]
    # time per epoch: mean of the slowest rank's time over the measured epochs 1 and 2
    assert p2["time_per_epoch_s"]["median"] == (2.5 + 7.5) / 2
    assert p2["speedup"] == ((4.0 + 12.0) / 2) / ((2.5 + 7.5) / 2)
    assert p2["efficiency"] == p2["speedup"] / 2
    assert "because not every N reached the quality target" in md
    assert "`np0002-r01` (N=2): best 0.7, target 0.9" in md


def test_failed_and_not_reached_runs_are_listed_not_dropped(tmp_path):
    pts = [(1, 1, summary(1, 100.0, ttq=10.0), "ok"),
           (2, 1, None, "failed"),                                    # launch failed
           (2, 2, summary(2, 190.0, status="failed"), "failed"),      # a rank died
           (2, 3, summary(2, 150.0), "ok")]                           # did not reach
    r, md, _ = report(tmp_path, make_sweep(tmp_path, "w", pts))
    assert [f["name"] for f in r["failed"]] == ["np0002-r01", "np0002-r02"]
    assert r["failed"][0]["problem"] == "exit status 1; no summary.json"
    assert [f["name"] for f in r["not_reached"]] == ["np0002-r03"]
    p2 = r["points"][1]
    assert (p2["runs"], p2["ok"], p2["failed"], p2["reached"]) == (3, 1, 2, 0)
    assert p2["throughput"]["values"] == [150.0]  # failed runs do not enter the statistics
    assert "- `np0002-r01` (N=2): exit status 1; no summary.json" in md
    assert "| 2 | 1/3 | 0/1 | n/a |" in md
    assert "| np0002-r02 | 2 | 1 | 0 | 2 | failed |" in md  # N, nodes, seed, repeat


def test_energy_and_valid_flops_when_the_summaries_have_them(tmp_path):
    e1 = {"joules": 500.0, "method": "estimated", "joules_to_quality": 400.0}
    e2 = {"joules": 900.0, "method": "estimated", "joules_to_quality": 700.0}
    pts = [(1, 1, summary(1, 100.0, ttq=10.0, energy=e1, vflops=2e9), "ok"),
           (2, 1, summary(2, 190.0, ttq=6.0, energy=e2, vflops=3e9), "ok")]
    r, md, out = report(tmp_path, make_sweep(tmp_path, "w", pts))
    assert r["points"][1]["energy_to_quality_j"]["median"] == 700.0
    assert "| 2 | 900 | estimated | 700 | n/a |" in md
    assert "| 1 | 0.1 | 2 |" in md  # FLOPS and Valid FLOPS in GFLOP/s
    assert (out / "energy_to_quality.png").exists()
    assert r["plots"]["skipped"] == {}


def test_cost_is_na_with_the_reason_until_a_price_is_set(tmp_path):
    reason = "no price_per_node_hour set in system.yaml (a site sets one with --system FILE.yaml)"
    unpriced = summary(1, 100.0, ttq=3600.0)
    unpriced["cost"] = {"node_hours_to_quality": 1.0, "price_per_node_hour": None,
                        "currency": "USD", "cost_to_quality": None, "reason": reason}
    priced = summary(2, 190.0, ttq=900.0)
    priced["cost"] = {"node_hours_to_quality": 0.25, "price_per_node_hour": 3.0,
                      "currency": "EUR", "cost_to_quality": 0.75, "reason": None}
    pts = [(1, 1, unpriced, "ok"), (2, 1, priced, "ok"), (4, 1, summary(4, 300.0), "ok")]
    r, md, _ = report(tmp_path, make_sweep(tmp_path, "w", pts))
    assert r["points"][0]["cost_to_quality"] is None
    assert r["points"][0]["cost_reasons"] == [reason]
    assert f"| 1 | 1 | n/a | {reason} |" in md  # not "USD"
    assert "| 2 | 0.25 | 0.75 EUR |  |" in md
    assert "| 4 | n/a | n/a | no run reached the quality target |" in md


def test_html_is_self_contained(tmp_path):
    pts = [(1, 1, summary(1, 100.0), "ok"), (2, 1, summary(2, 150.0), "ok")]
    r, _, out = report(tmp_path, make_sweep(tmp_path, "w", pts))
    page = (out / "report.html").read_text()
    assert page.count("src='data:image/png;base64,") == len(r["plots"]["files"]) == 3
    assert "http" not in page and "<link" not in page and "<script" not in page
    assert "time to quality: not drawn (no run reached the quality target)" in page


def refused(tmp_path, capsys, *paths, mode=None) -> str:
    code = rpt.main([*map(str, paths), "--out", str(tmp_path / "out")]
                    + (["--mode", mode] if mode else []))
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith("ai500.report: error: ")
    assert not (tmp_path / "out").exists()
    return err


def test_refuses_different_benchmarks(tmp_path, capsys):
    a = make_sweep(tmp_path, "a", [(1, 1, summary(1, 100.0), "ok")])
    b = make_sweep(tmp_path, "b", [(2, 1, summary(2, 100.0, benchmark="dcgan"), "ok")],
                   benchmark="dcgan")
    assert "refusing to merge runs of different benchmarks (dcgan:" in refused(tmp_path, capsys,
                                                                             a, b)


def test_refuses_different_presets(tmp_path, capsys):
    a = make_sweep(tmp_path, "a", [(1, 1, summary(1, 100.0), "ok")])
    b = make_sweep(tmp_path, "b", [(2, 1, summary(2, 100.0, preset="small"), "ok")],
                   preset="small")
    assert "different presets" in refused(tmp_path, capsys, a, b)


def test_refuses_different_modes(tmp_path, capsys):
    a = make_sweep(tmp_path, "a", [(1, 1, summary(1, 100.0), "ok")])
    b = make_sweep(tmp_path, "b", [(2, 1, summary(2, 100.0, batch=16), "ok")], mode="strong")
    assert "different scaling modes" in refused(tmp_path, capsys, a, b)
    assert "different scaling modes" in refused(tmp_path, capsys, a, mode="strong")


def test_refuses_a_batch_that_breaks_the_mode(tmp_path, capsys):
    a = make_sweep(tmp_path, "a", [(1, 1, summary(1, 100.0, batch=32), "ok"),
                                   (2, 1, summary(2, 100.0, batch=16), "ok")])
    assert "different per-rank batches (weak scaling keeps it fixed)" in refused(tmp_path,
                                                                                capsys, a)


def test_run_directories_need_a_mode(tmp_path, capsys):
    runs = []
    for n, x in ((1, 100.0), (2, 180.0)):
        d = tmp_path / f"run{n}"
        d.mkdir()
        (d / "summary.json").write_text(json.dumps(summary(n, x)))
        runs.append(d)
    assert "pass --mode weak|strong" in refused(tmp_path, capsys, *runs)
    r, md, _ = report(tmp_path, *runs, mode="weak")
    assert r["points"][1]["efficiency"] == 180.0 / 200.0
    assert "Oversubscription unknown" in md


def test_not_a_run_directory(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert "neither a sweep directory" in refused(tmp_path, capsys, tmp_path / "empty")


def test_micro_runs_are_summarised_not_crashed_on(tmp_path):
    def micro(n, g):
        return {"status": "ok", "kind": "micro", "benchmark": "conv", "preset": "ci", "ranks": n,
                "peak": {"practical": {"aggregate_gflops": 50.0 * n},
                         "theoretical": {"aggregate_gflops": 80.0 * n}},
                "kernels": [{"op": "conv", "size": "c1", "direction": "forward",
                             "aggregate_gflops": g}]}
    sweep = make_sweep(tmp_path, "m", [(1, 1, micro(1, 10.0), "ok"), (2, 1, micro(2, 15.0), "ok")],
                       benchmark="conv")
    r, md, _ = report(tmp_path, sweep)
    assert r["kind"] == "micro" and r["kernels"][0]["efficiency_at_max"]["value"] == 0.75
    assert "| conv | c1 | forward | 10 | 15 | 0.75 |" in md
    assert "not drawn for micro benchmarks" in md


def test_a_resumed_run_says_its_time_is_wall_clock_and_gives_the_training_time(tmp_path):
    resumed = {**summary(1, 100.0, ttq=30.0), "resumed": True, "mlperf_valid": False,
               "time_to_quality_training_s": 20.0}
    pts = [(1, 1, resumed, "ok"), (2, 1, summary(2, 190.0, ttq=16.0), "ok")]
    _, md, _ = report(tmp_path, make_sweep(tmp_path, "w", pts))
    assert ("| np0001-r01 | 1 | 1 | 0 | 1 | ok | yes | 30 (resumed: wall clock, not a valid MLPerf "
            "result; training time 20) |") in md
    assert "| np0002-r01 | 2 | 1 | 0 | 1 | ok | yes | 16 |" in md


def test_time_to_quality_is_taken_apart_per_n(tmp_path):
    def accounted(n, ttq, other):
        s = summary(n, 100.0 * n, ttq=ttq)
        s["time_accounting"] = {"to_quality": {
            "total_s": ttq, "training_s": ttq - 2.0 - other, "evaluation_s": 2.0,
            "checkpoint_s": 0.0, "other_s": other, "other_share": other / ttq}}
        return s
    pts = [(1, 1, accounted(1, 100.0, 1.0), "ok"), (2, 1, accounted(2, 50.0, 0.25), "ok")]
    r, md, _ = report(tmp_path, make_sweep(tmp_path, "w", pts))
    p1, p2 = r["points"]
    assert p1["ttq_other_s"]["median"] == 1.0 and p2["ttq_training_s"]["median"] == 47.75
    assert "### Where the time to quality went" in md
    assert "| 2 | 50 | 47.75 | 2 | 0 | 0.25 | 0.5 |" in md  # other % of time to quality


def test_runs_from_different_systems_are_merged_and_said_to_differ(tmp_path):
    from ai500 import system

    node = {"cpu": {"model": "AMD EPYC 7763", "physical_cores": 64}, "gpus": []}
    job = {"tensorflow": "2.15.1", "horovod": {"version": "0.28.1"}, "mpi": "Open MPI v4.1.4"}
    sweep = make_sweep(tmp_path, "w", [(1, 1, summary(1, 100.0), "ok"),
                                       (2, 1, summary(2, 180.0), "ok")])
    for run, nodes in (("np0001-r01", [node]), ("np0002-r01", [node])):
        (sweep / run / "system.json").write_text(json.dumps(system.describe(nodes, job)))
    r, md, _ = report(tmp_path, sweep)
    assert r["systems"] == [("nodes of AMD EPYC 7763 (64 cores), no GPU; TensorFlow 2.15.1, "
                             "Horovod 0.28.1, Open MPI v4.1.4")]
    assert "System (system.json): nodes of AMD EPYC 7763" in md
    other = {"cpu": {"model": "Intel Xeon 8480", "physical_cores": 56}, "gpus": []}
    (sweep / "np0002-r01" / "system.json").write_text(json.dumps(system.describe([other], job)))
    r, md, _ = report(tmp_path / "again", sweep)
    assert len(r["systems"]) == 2 and "come from 2 different systems" in md
    assert [run["system"].split(";")[0] for run in r["runs"]] == [
        "nodes of AMD EPYC 7763 (64 cores), no GPU", "nodes of Intel Xeon 8480 (56 cores), no GPU"]


# --- several seeds per N: spread, the not-reached rule, references, curves ---------------------

def seed_sweep(tmp_path):
    """N=1: 5 seeds reached at epochs 3, 4, 3, 5, 4 (0-based 2, 3, 2, 4, 3); N=2: seeds 0-4,
    seeds 1 and 3 missed the target within their 6 epochs; seed 4 failed."""
    pts = []
    for seed, (epoch, ttq) in enumerate([(2, 30.0), (3, 40.0), (2, 31.0), (4, 52.0), (3, 41.0)]):
        pts.append((1, 1, summary(1, 100.0, ttq=ttq, seed=seed, epoch=epoch, epochs=epoch + 1),
                    "ok", seed))
    for seed, epoch, ttq in [(0, 1, 12.0), (1, None, None), (2, 2, 20.0), (3, None, None)]:
        pts.append((2, 1, summary(2, 190.0, ttq=ttq, seed=seed, epoch=epoch or 0, epochs=6),
                    "ok", seed))
    pts.append((2, 1, None, "failed", 4))
    return make_sweep(tmp_path, "seeds", pts)


def test_seed_spread_per_n_with_not_reached_runs(tmp_path):
    r, md, out = report(tmp_path, seed_sweep(tmp_path))
    one, two = r["seeds"]
    assert one["seeds"] == [0, 1, 2, 3, 4] and one["runs"] == 5
    t, e = one["time_to_quality_s"], one["epochs_to_target"]
    assert (t["median"], t["min"], t["max"]) == (40.0, 30.0, 52.0)
    assert t["olympic_mean"] == pytest.approx((31 + 40 + 41) / 3)  # 30 and 52 dropped
    assert t["cv_reached"] == pytest.approx(statistics.stdev([30, 40, 31, 52, 41]) / 38.8)
    assert e["values"] == [3.0, 4.0, 3.0, 5.0, 4.0] and e["olympic_mean"] == pytest.approx(11 / 3)
    # N=2: the failed run is left out (listed apart), the two misses count as slowest
    t2, e2 = two["time_to_quality_s"], two["epochs_to_target"]
    assert (two["runs"], t2["reached"], t2["runs"]) == (4, 2, 4)
    assert (t2["median"], t2["median_reached"]) == (None, False)  # 12, 20, inf, inf: middle has inf
    assert (t2["min"], t2["max_reached"], t2["olympic_mean"]) == (12.0, False, None)
    assert e2["cv_reached"] == pytest.approx(statistics.stdev([2, 3]) / 2.5)
    assert ("| 1 | 32 | 0, 1, 2, 3, 4 | 5 of 5 | 40 | 30–52 | "
            f"{100 * t['cv_reached']:.1f} % | 37.33 | 4 | 3–5 |") in md
    assert "| 2 | 64 | 0, 1, 2, 3 | 2 of 4 | not reached | 12–not reached |" in md
    assert "CV (reached runs)" in md and "counts as slower than every run" in md
    assert "`np0002-s04-r01` (N=2)" in md  # failed: listed
    assert (out / "quality_vs_time.png").stat().st_size > 0
    assert r["plots"]["files"]["quality_vs_time"] == "quality_vs_time.png"


def test_seeds_against_references_from_a_file(tmp_path):
    import yaml

    entry = {"benchmark": "resnet", "preset": "ci", "metric": "val_auc", "target": 0.9,
             "higher_is_better": True, "seeds": [0, 1, 2, 3, 4], "ranks": [2],
             "command": "python launch/sweep.py --seeds 5", "date": "2026-12-01",
             "machine": "m", "added": "2026-12-01", "sweeps": []}
    refs = tmp_path / "refs.yaml"
    refs.write_text(yaml.safe_dump({"schema_version": 1, "references": [
        {**entry, "global_batch": 32, "epochs": [6, 6, 7, 7, 8]}]}))
    out = tmp_path / "out"
    assert rpt.main([str(seed_sweep(tmp_path)), "--out", str(out), "--references",
                     str(refs)]) == 0
    r = json.loads((out / "report.json").read_text())
    md = (out / "report.md").read_text()
    one, two = (row["reference"] for row in r["seeds"])
    # N=1: olympic mean of 3, 3, 4, 4, 5 epochs = 3.67 < min 6 - 1: faster; per run, 5 epochs
    # is not below 6 - 1, so that one is within
    assert one["verdict"] == "faster" and one["judged"] == "olympic mean"
    assert one["epochs_judged"] == pytest.approx(11 / 3)
    assert one["runs"] == {"faster": 4, "within": 1}
    assert ("| 1 | 32 | 3.667 (olympic mean) | 6, 6, 7, 7, 8 (5 seeds) | 6–8 | faster | "
            "faster 4, within 1 |") in md
    assert two["verdict"] == "no reference" and "global batch 64" in two["message"]
    assert "Reference global batch 32: 2026-12-01 on m by `python launch/sweep.py --seeds 5`" in md
