"""Scaling sweeps: dry-run command lists for weak and strong scaling, the errors raised before
anything runs, and one real 1- and 2-rank weak sweep at the ci preset, reported on."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import ROOT

sys.path.insert(0, str(ROOT))
from ai500 import report as reportlib
from launch import launchers, sweep

PY = sys.executable


def run_args(n: int, batch: int, out: str = "runs/s", extra=(), repeat=1) -> list[str]:
    args = ["-m", "ai500.run", "--benchmark", "resnet", "--preset", "ci", "--out", out,
            "--run-name", f"np{n:04d}-r{repeat:02d}", "--batch-size", str(batch)]
    return [*args, *extra]


def dry(capsys, *argv: str) -> tuple[int, list[str], str]:
    code = sweep.main(["--benchmark", "resnet", "--preset", "ci", "--out", "runs",
                       "--sweep-name", "s", "--dry-run", *argv])
    captured = capsys.readouterr()
    return code, captured.out.splitlines(), captured.err


def expected(n: int, args: list[str]) -> str:
    import shlex

    return shlex.join(launchers.Mpirun().command(n, args))


def test_weak_dry_run_keeps_the_per_rank_batch(capsys):
    code, lines, _ = dry(capsys, "--mode", "weak", "--ranks", "1,2,4", "--", "--epochs", "2")
    assert code == 0
    assert lines == [expected(n, run_args(n, 32, extra=["--epochs", "2"])) for n in (1, 2, 4)]


def test_weak_dry_run_with_batch_size_and_repeats(capsys):
    code, lines, _ = dry(capsys, "--mode", "weak", "--ranks", "2,1", "--batch-size", "16",
                         "--repeats", "2")
    assert code == 0
    # Repeats are interleaved: every N once, then again.
    assert lines == [expected(n, run_args(n, 16, repeat=r)) for r in (1, 2) for n in (1, 2)]


def test_strong_dry_run_divides_the_global_batch_and_changes_nothing_else(capsys):
    code, lines, _ = dry(capsys, "--mode", "strong", "--ranks", "1,2,4", "--global-batch", "64")
    assert code == 0
    # only the per-rank batch differs: no --lr (each run scales lr by global / reference batch)
    assert lines == [expected(1, run_args(1, 64)), expected(2, run_args(2, 32)),
                     expected(4, run_args(4, 16))]


def test_strong_default_global_batch_is_preset_batch_times_largest_n(capsys):
    code, lines, _ = dry(capsys, "--mode", "strong", "--ranks", "1,2", "--", "--lr", "0.1",
                         "--epochs", "3")
    assert code == 0
    # an --lr after `--` goes unchanged to every point, like any other option
    extra = ["--lr", "0.1", "--epochs", "3"]
    assert lines == [expected(1, run_args(1, 64, extra=extra)),
                     expected(2, run_args(2, 32, extra=extra))]


# Each workload's rule and decay, as its Workload passes them to schedule_for.
LR_RULES = {"resnet": ("linear", "cosine"), "dcgan": ("sqrt", "constant"),
            "faster_rcnn": ("linear", "cosine")}


def resolved_schedules(argv: list[str]) -> list:
    """(point, schedule) for every point of a dry-run sweep, the schedule computed from the
    point's command as ai500.run resolves it and as the workload builds it (schedule_for over
    rank 0's training shard of the synthetic set)."""
    from ai500 import config
    from ai500.data import common
    from ai500.workloads import steps_per_epoch
    from ai500.workloads.schedule import schedule_for

    plan, _ = sweep.make_plan(["--out", "runs", "--sweep-name", "s", "--dry-run", *argv])
    out = []
    for point in plan.points:
        cfg = config.resolve(point.command[point.command.index("ai500.run") + 1:])
        start, stop = common.shard_range(cfg.data["n_train"], 0, point.ranks, equal=True)
        steps = steps_per_epoch(stop - start, cfg.train.batch_size, "samples")
        out.append((point, cfg, schedule_for(cfg.train, point.ranks, steps,
                                             *LR_RULES[cfg.benchmark])))
    return out


@pytest.mark.parametrize("benchmark, lr, peak", [("resnet", 0.05, 0.05 * 4),
                                                 ("dcgan", 0.0002, 0.0002 * 2)])
def test_strong_points_resolve_to_one_learning_rate_schedule(benchmark, lr, peak):
    """Every point of a strong sweep runs the same recipe: same peak, same warm-up start, same
    warm-up and total steps, so only the number of ranks changes (small preset: warm-up 1 epoch;
    global batch = preset batch x 4, so the peak is lr x 4 linear, lr x sqrt(4) for dcgan)."""
    points = resolved_schedules(["--benchmark", benchmark, "--preset", "small",
                                 "--mode", "strong", "--ranks", "1,2,4"])
    assert [p.ranks for p, _, _ in points] == [1, 2, 4]
    for point, cfg, _ in points:
        assert "--lr" not in point.command and cfg.train.lr == lr
    recipe = {(s.global_batch, s.reference_batch, s.peak, s.start, s.warmup_steps, s.total_steps)
              for _, _, s in points}
    assert len(recipe) == 1, recipe
    (_, _, got_peak, start, warmup, total), = recipe
    assert got_peak == pytest.approx(peak) and start == lr and warmup > 0 and total > warmup
    steps = [0, warmup / 2, warmup, (warmup + total) / 2, total]
    curves = {tuple(float(s(k)) for k in steps) for _, _, s in points}
    assert len(curves) == 1


def test_weak_points_scale_the_peak_with_n_from_the_same_start():
    points = resolved_schedules(["--benchmark", "dcgan", "--preset", "small", "--mode", "weak",
                                 "--ranks", "1,2,4"])
    assert [s.peak for _, _, s in points] == pytest.approx([0.0002 * n ** 0.5 for n in (1, 2, 4)])
    assert [s.start for _, _, s in points] == [0.0002] * 3
    points = resolved_schedules(["--benchmark", "resnet", "--preset", "small", "--mode", "weak",
                                 "--ranks", "1,2,4"])
    assert [s.peak for _, _, s in points] == pytest.approx([0.05 * n for n in (1, 2, 4)])


def test_strong_non_divisible_is_one_line_error_before_anything_runs(capsys, tmp_path):
    code = sweep.main(["--benchmark", "resnet", "--preset", "ci", "--mode", "strong",
                       "--ranks", "1,2,3", "--global-batch", "64", "--out", str(tmp_path)])
    captured = capsys.readouterr()
    assert code == 2 and captured.out == ""
    assert captured.err.count("\n") == 1
    assert "global batch 64 does not divide evenly among 3 rank(s)" in captured.err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("argv, message", [
    (["--mode", "weak", "--global-batch", "64"], "weak mode takes --batch-size"),
    (["--mode", "weak", "--", "--run-name", "x"], "--run-name after `--` is set by the sweep"),
    (["--mode", "weak", "--", "--batch-size=8"], "use the sweep's --batch-size"),
    (["--mode", "weak", "--ranks", "0,1"], "rank counts must be >= 1"),
    (["--mode", "weak", "--ranks", "a"], "expected comma-separated whole numbers"),
    (["--mode", "weak", "--launcher", "local", "--ranks", "1,2"], "local launcher runs one rank"),
])
def test_planning_errors(capsys, argv, message):
    code, lines, err = dry(capsys, *argv)
    assert code == 2 and lines == []
    assert message in err and err.startswith("sweep: error: ")


def test_unknown_benchmark(capsys):
    code = sweep.main(["--benchmark", "nope", "--mode", "weak", "--dry-run"])
    assert code == 2 and "unknown benchmark 'nope'" in capsys.readouterr().err


def test_slurm_dry_run_prints_one_sbatch_per_point(capsys, tmp_path):
    code = sweep.main(["--benchmark", "resnet", "--preset", "ci", "--mode", "weak",
                       "--ranks", "1,4", "--launcher", "slurm", "--out", str(tmp_path),
                       "--sweep-name", "s", "--dry-run", "--", "--epochs", "2"])
    lines = capsys.readouterr().out.splitlines()
    out = str((tmp_path / "s").resolve())
    assert code == 0
    assert lines == [" ".join(["sbatch", "--parsable", "-n", str(n), "slurm/resnet.sbatch",
                               "--benchmark", "resnet", "--preset", "ci", "--out", out,
                               "--run-name", f"np{n:04d}-r01", "--batch-size", "32",
                               "--epochs", "2"]) for n in (1, 4)]
    assert list(tmp_path.iterdir()) == []


def seeded_args(n: int, batch: int, seed: int, repeat: int = 1) -> list[str]:
    args = run_args(n, batch, repeat=repeat)
    args[args.index("--run-name") + 1] = f"np{n:04d}-s{seed:02d}-r{repeat:02d}"
    return [*args, "--seed", str(seed)]


def test_seeds_dry_run_interleaves_repeat_then_seed_then_n(capsys):
    code, lines, _ = dry(capsys, "--mode", "weak", "--ranks", "1,2", "--seeds", "3",
                         "--repeats", "2")
    assert code == 0
    assert lines == [expected(n, seeded_args(n, 32, s, r))
                     for r in (1, 2) for s in (0, 1, 2) for n in (1, 2)]


@pytest.mark.parametrize("text, seeds", [("2", [0, 1]), ("3,7", [3, 7]), ("7,", [7]),
                                         ("5, 0", [5, 0])])
def test_seeds_count_or_list(text, seeds):
    argv = ["--benchmark", "resnet", "--preset", "ci", "--mode", "strong", "--ranks", "1,2",
            "--seeds", text, "--sweep-name", "s", "--dry-run"]
    plan, _ = sweep.make_plan(argv)
    assert plan.seeds == seeds
    assert [(p.seed, p.ranks) for p in plan.points] == [(s, n) for s in seeds for n in (1, 2)]
    m = sweep.manifest(plan, "planned")
    assert m["seeds"] == seeds and m["repeats"] == 1
    assert m["command"] == ["python", "launch/sweep.py", *argv]
    for point in m["points"]:
        assert point["name"] == f"np{point['ranks']:04d}-s{point['seed']:02d}-r01"
        assert point["run_dir"] == point["name"]
        cmd = point["command"]
        assert cmd[cmd.index("--seed") + 1] == str(point["seed"])


def test_without_seeds_the_runs_own_seed_is_recorded_and_names_unchanged():
    argv = ["--benchmark", "resnet", "--preset", "ci", "--mode", "weak", "--ranks", "1,2",
            "--sweep-name", "s", "--dry-run"]
    plan, _ = sweep.make_plan(argv)
    m = sweep.manifest(plan, "planned")
    assert m["seeds"] is None
    assert [(p["name"], p["seed"]) for p in m["points"]] == [("np0001-r01", 0), ("np0002-r01", 0)]
    plan, _ = sweep.make_plan([*argv, "--", "--seed", "5"])
    assert [p.seed for p in plan.points] == [5, 5]


@pytest.mark.parametrize("argv, message", [
    (["--seeds", "0"], "the count of seeds must be >= 1"),
    (["--seeds", "a"], "expected a count K >= 1"),
    (["--seeds", "1,-2"], "expected a count K >= 1"),
    (["--seeds", "1,1"], "a seed is listed twice"),
    (["--seeds", "2", "--", "--seed", "3"], "conflicts with the sweep's --seeds"),
])
def test_seeds_errors(capsys, argv, message):
    code, lines, err = dry(capsys, "--mode", "weak", *argv)
    assert code == 2 and lines == []
    assert message in err and err.startswith("sweep: error: ") and err.count("\n") == 1


# --- a real sweep: mpirun with 1 and 2 ranks, then the report on it -------------------------

@pytest.fixture(scope="module")
def real_sweep(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweeps")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run(
        [PY, "launch/sweep.py", "--benchmark", "resnet", "--preset", "ci", "--mode", "weak",
         "--ranks", "1,2", "--out", str(out), "--sweep-name", "weak", "--timeout", "240",
         "--report", "--", "--epochs", "2"],
        check=False, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    sweep_dir = out / "weak"
    rep = subprocess.run([PY, "-m", "ai500.report", str(sweep_dir), "--out", str(out / "report")],
                         check=False, cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=120)
    assert rep.returncode == 0, rep.stdout + rep.stderr
    return sweep_dir, out / "report", rep.stdout


def test_real_sweep_manifest_and_run_directories(real_sweep):
    sweep_dir, _, _ = real_sweep
    m = json.loads((sweep_dir / "manifest.json").read_text())
    assert (m["benchmark"], m["preset"], m["mode"], m["ranks"], m["repeats"]) == (
        "resnet", "ci", "weak", [1, 2], 1)
    assert m["status"] == "complete" and "per-rank batch fixed at 32" in m["batch_rule"]["rule"]
    assert m["batch_rule"]["global_batch"] == {"1": 32, "2": 64}
    cores = launchers.local_cores()
    assert m["cores"] == cores
    for p, n in zip(m["points"], (1, 2)):
        assert p["name"] == f"np{n:04d}-r01" and p["status"] == "ok" and p["exit_status"] == 0
        assert p["oversubscribed"] == (n > cores)
        assert p["command"] == launchers.Mpirun().command(
            n, run_args(n, 32, out=str(sweep_dir), extra=["--epochs", "2"]))
        s = json.loads((sweep_dir / p["run_dir"] / "summary.json").read_text())
        assert s["status"] == "ok" and s["ranks"] == n and s["global_batch_size"] == 32 * n
        assert (sweep_dir / p["log"]).read_text().startswith("$ mpirun")
    # --report wrote the same report the command line does
    assert (sweep_dir / "report" / "report.json").exists()


def test_real_sweep_report_matches_the_summaries(real_sweep):
    sweep_dir, rep_dir, stdout = real_sweep
    for name in ("report.md", "report.html", "report.json", "throughput.png", "efficiency.png"):
        assert (rep_dir / name).stat().st_size > 0, name
    r = json.loads((rep_dir / "report.json").read_text())
    x = {n: json.loads((sweep_dir / f"np{n:04d}-r01" / "summary.json").read_text())
         for n in (1, 2)}
    assert r["mode"] == "weak" and [p["ranks"] for p in r["points"]] == [1, 2]
    p1, p2 = r["points"]
    x1, x2 = (x[n]["throughput"]["samples_per_s"] for n in (1, 2))
    assert p1["throughput"]["median"] == x1 and p2["throughput"]["median"] == x2
    assert p1["efficiency"] == 1.0
    assert p2["efficiency"] == x2 / (2 * x1)  # E(N) = X(N) / (N X(1)), exactly
    assert p2["ideal_throughput"] == 2 * x1
    assert p2["flops_per_s"]["median"] == x[2]["flops"]["flops_per_s"]
    assert p2["load_imbalance_median"]["median"] == x[2]["load_imbalance"]["median"]
    assert p2["energy_j"]["median"] == x[2]["energy"]["joules"]
    assert p2["energy_methods"] == ["estimated"]  # the model's figure, labelled as such
    md = (rep_dir / "report.md").read_text()
    assert "weak-scaling efficiency E(N)" in md and "speedup" not in md.lower().split(
        "### every run")[0].replace("not a speedup", "")
    row2 = next(line for line in md.splitlines() if line.startswith("| 2 | 64 |"))
    assert reportlib.num(x2) in row2 and reportlib.num(p2["efficiency"], 3) in row2
    # Runs that did not reach the target are listed, not dropped.
    for n in (1, 2):
        if not x[n]["quality"]["reached"]:
            assert f"`np{n:04d}-r01` (N={n}): best" in md
        else:
            assert x[n]["time_to_quality_s"] == r["points"][n - 1]["time_to_quality_s"]["median"]
    if not any(x[n]["quality"]["reached"] for n in (1, 2)):
        assert "time to quality: not drawn (no run reached the quality target)" in md
    page = (rep_dir / "report.html").read_text()
    assert page.count("src='data:image/png;base64,") == len(r["plots"]["files"]) >= 2
    assert "http" not in page and "<link" not in page and "<script" not in page
    assert "| 2 | 64 |" in stdout


def test_real_run_mllog_parses_with_mlperf_logging(real_sweep):
    from mlperf_logging.compliance_checker import mlp_parser

    from ai500.mllog import write_mllog

    run_dir = real_sweep[0] / "np0002-r01"
    path = write_mllog(run_dir)
    lines, errors = mlp_parser.parse_file(str(path), ruleset="4.1.0")
    assert errors == []
    keys = [ll.key for ll in lines]
    assert keys[0] == "init_start" and keys[-1] == "run_stop"
    assert keys.index("init_stop") < keys.index("run_start") < keys.index("epoch_start")
    assert keys.count("eval_accuracy") == keys.count("epoch_start") >= 1
    stamps = [ll.timestamp for ll in lines]
    assert stamps == sorted(stamps)


# --- a real seed sweep: 1 rank, seeds 0 and 1 (pytest -k seeds) ------------------------------

@pytest.fixture(scope="module")
def real_seed_sweep(tmp_path_factory):
    out = tmp_path_factory.mktemp("seed_sweeps")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("AI500_REFERENCES", None)
    result = subprocess.run(
        [PY, "launch/sweep.py", "--benchmark", "resnet", "--preset", "ci", "--mode", "weak",
         "--ranks", "1", "--seeds", "2", "--out", str(out), "--sweep-name", "seeds",
         "--timeout", "240", "--report", "--", "--epochs", "2"],
        check=False, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    return out / "seeds"


def test_real_seeds_sweep_passes_records_and_reports_each_seed(real_seed_sweep, tmp_path):
    from ai500 import references

    m = json.loads((real_seed_sweep / "manifest.json").read_text())
    assert m["seeds"] == [0, 1] and m["command"][:2] == ["python", "launch/sweep.py"]
    assert [(p["name"], p["seed"], p["status"]) for p in m["points"]] == [
        ("np0001-s00-r01", 0, "ok"), ("np0001-s01-r01", 1, "ok")]
    summaries = {}
    for p in m["points"]:
        cfg = json.loads((real_seed_sweep / p["run_dir"] / "config.json").read_text())
        s = json.loads((real_seed_sweep / p["run_dir"] / "summary.json").read_text())
        assert cfg["config"]["seed"] == s["seed"] == p["seed"]
        assert s["reference"]["verdict"] == "no reference"  # none for the ci preset
        summaries[p["seed"]] = s
    r = json.loads((real_seed_sweep / "report" / "report.json").read_text())
    (row,) = r["seeds"]
    assert row["seeds"] == [0, 1] and row["epochs_to_target"]["values"] == [
        references.epochs_to_target(summaries[s]) for s in (0, 1)]
    reached = [summaries[s]["time_to_quality_s"] for s in (0, 1)
               if summaries[s]["quality"]["reached"]]
    assert row["time_to_quality_s"]["reached"] == len(reached)
    assert (real_seed_sweep / "report" / "quality_vs_time.png").stat().st_size > 0
    # the two seeds as a reference (2 seeds allowed here; the default asks for 5)
    path = tmp_path / "refs.yaml"
    path.write_text("schema_version: 1\nreferences: []\n")
    code = references.main(["add", str(real_seed_sweep), "--file", str(path), "--min-seeds", "2"])
    if len(reached) == 2:
        assert code == 0
        (ref,) = references.load(path)
        assert ref.epochs == [summaries[s]["time_to_quality_epoch"] + 1 for s in (0, 1)]
        assert ref.command == " ".join(m["command"]) and ref.seeds == [0, 1]
    else:  # a seed that missed the target makes no reference
        assert code == 2 and references.load(path) == []
