"""Spread over seeds (ai500.spread) and reference convergence points (ai500.references): every
statistic and the not-reached rule on hand-made values, the verdicts, the references file's
checks, `python -m ai500.references add` on hand-made seed sweeps, and the summary's reference
section from a real (golden) run re-aggregated against a temporary references file."""

from __future__ import annotations

import json
import shutil
import statistics

import pytest
import yaml
from conftest import ROOT

from ai500 import references as refs
from ai500.errors import ConfigError
from ai500.spread import spread

# --- ai500.spread --------------------------------------------------------------------------


def test_spread_of_reached_runs():
    s = spread([10.0, 12.0, 11.0, 30.0, 9.0])
    assert (s["runs"], s["reached"], s["median"], s["min"], s["max"]) == (5, 5, 11.0, 9.0, 30.0)
    assert s["olympic_mean"] == 11.0  # mean of 10, 11, 12: the fastest and slowest dropped
    assert s["cv_reached"] == pytest.approx(statistics.stdev([10, 12, 11, 30, 9]) / 14.4)
    assert all(s[f"{k}_reached"] for k in ("median", "min", "max", "olympic_mean"))


def test_a_run_that_missed_the_target_counts_as_slowest_not_dropped():
    s = spread([10.0, 12.0, None, 11.0, 9.0])
    assert (s["runs"], s["reached"]) == (5, 4)
    assert s["median"] == 11.0  # of 9, 10, 11, 12, inf (dropped, it would be 10.5)
    assert (s["max"], s["max_reached"]) == (None, False)
    assert s["olympic_mean"] == 11.0  # the missing run is the slowest, dropped: 10, 11, 12
    assert s["cv_reached"] == pytest.approx(statistics.stdev([10, 12, 11, 9]) / 10.5)
    assert s["values"] == [10.0, 12.0, None, 11.0, 9.0]


def test_two_misses_make_the_olympic_mean_and_three_the_median_not_reached():
    two = spread([10.0, None, 11.0, None, 9.0])
    assert (two["median"], two["median_reached"]) == (11.0, True)
    assert (two["olympic_mean"], two["olympic_mean_reached"]) == (None, False)
    three = spread([10.0, None, None, None, 9.0])
    assert (three["median"], three["median_reached"]) == (None, False)
    assert (three["min"], three["min_reached"]) == (9.0, True)
    none = spread([None, None])
    assert none["reached"] == 0 and none["min_reached"] is False and none["cv_reached"] is None


def test_even_counts_take_the_middle_two():
    assert spread([1.0, 2.0, 3.0, None])["median"] == 2.5
    assert spread([1.0, None])["median_reached"] is False  # half missed: the middle pair has one


def test_olympic_mean_needs_5_runs_and_drops_one_each_side_beyond():
    four = spread([1.0, 2.0, 3.0, 4.0])
    assert four["olympic_mean"] is None and four["olympic_mean_reached"] is None
    six = spread([1.0, 2.0, 3.0, 4.0, 5.0, 100.0])
    assert six["olympic_mean"] == 3.5  # mean of 2, 3, 4, 5


def test_cv_is_the_sample_cv_from_two_reached_runs():
    assert spread([2.0, 4.0])["cv_reached"] == pytest.approx(2 ** 0.5 / 3)  # stdev 1.414, mean 3
    assert spread([5.0, None])["cv_reached"] is None
    assert spread([]) is None


# --- verdicts --------------------------------------------------------------------------------

def reference(epochs=(4, 5, 4, 6, 5), batch=64, target=0.9, **over) -> dict:
    entry = {"benchmark": "resnet", "preset": "small", "global_batch": batch,
             "metric": "val_auc", "target": target, "higher_is_better": True,
             "epochs": list(epochs), "seeds": list(range(len(epochs))), "ranks": [2],
             "command": "python launch/sweep.py --benchmark resnet --seeds 5",
             "date": "2026-12-01", "machine": "test machine", "added": "2026-12-02",
             "sweeps": ["/runs/x"]}
    return {**entry, **over}


def write_refs(tmp_path, *entries) -> str:
    path = tmp_path / "refs.yaml"
    path.write_text(yaml.safe_dump({"schema_version": 1, "references": list(entries)}))
    return str(path)


@pytest.mark.parametrize("epochs, completed, verdict", [
    (2, None, "faster"),     # 2 < min 4 - 1
    (3, None, "within"),     # one epoch below the fastest seed is allowed
    (4, None, "within"), (6, None, "within"),
    (7, None, "slower"),     # > max 6
    (None, 7, "slower"),     # not reached after more epochs than the slowest seed needed
    (None, 6, "not reached"),  # stopped before that: not judged
])
def test_judge(epochs, completed, verdict):
    ref = refs._entry(reference(), "test")
    assert refs.judge(epochs, ref, completed) == verdict


def run_summary(epoch=None, batch=64, target=0.9, completed=10) -> dict:
    return {"benchmark": "resnet", "preset": "small", "global_batch_size": batch,
            "quality": {"metric": "val_auc", "target": target, "higher_is_better": True,
                        "reached": epoch is not None},
            "time_to_quality_epoch": epoch, "epochs_completed": completed}


def test_compare_run_verdicts_and_numbers(tmp_path):
    path = write_refs(tmp_path, reference())
    fast = refs.compare_run(run_summary(epoch=1), path)  # epochs are numbered from 0
    assert fast["verdict"] == "faster" and fast["epochs_to_target"] == 2
    assert "faster than the reference allows (2 epochs < 4 - 1" in fast["message"]
    assert fast["reference"]["epochs"] == [4, 5, 4, 6, 5]
    assert (fast["reference"]["min"], fast["reference"]["max"], fast["reference"]["mean"]) == (
        4, 6, 4.8)
    assert refs.compare_run(run_summary(epoch=4), path)["verdict"] == "within"
    slow = refs.compare_run(run_summary(epoch=6), path)
    assert slow["verdict"] == "slower" and "7 epochs > 6" in slow["message"]
    assert refs.compare_run(run_summary(completed=12), path)["verdict"] == "slower"


def test_no_reference_for_another_batch_or_target_and_unknown_for_a_bad_file(tmp_path):
    path = write_refs(tmp_path, reference())
    other = refs.compare_run(run_summary(epoch=3, batch=128), path)
    assert other["verdict"] == "no reference" and other["reference"] is None
    assert other["message"].startswith("no reference for resnet small at global batch 128")
    target = refs.compare_run(run_summary(epoch=3, target=0.8), path)
    assert target["verdict"] == "no reference" and "measured to val_auc >= 0.9" in target["message"]
    (tmp_path / "bad.yaml").write_text("references: [")
    bad = refs.compare_run(run_summary(epoch=3), tmp_path / "bad.yaml")
    assert bad["verdict"] == "unknown" and "not valid YAML" in bad["message"]


def test_the_environment_names_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("AI500_REFERENCES", write_refs(tmp_path, reference()))
    assert refs.compare_run(run_summary(epoch=4))["verdict"] == "within"
    monkeypatch.delenv("AI500_REFERENCES")
    assert refs.references_path() == refs.DEFAULT_FILE


def test_the_shipped_file_loads():
    assert all(isinstance(r, refs.Reference) for r in refs.load(refs.DEFAULT_FILE))


@pytest.mark.parametrize("entry, message", [
    (reference(epochs=[4, 0]), "epochs must be a non-empty list of whole numbers >= 1"),
    (reference(seeds=[0]), "seeds must be whole numbers, one per entry of epochs"),
    ({k: v for k, v in reference().items() if k != "command"}, "command is None, expected str"),
    (reference(extra=1), "unknown field(s) extra"),
    (reference(global_batch="64"), "global_batch is '64', expected int"),
])
def test_malformed_entries_are_one_line_errors(tmp_path, entry, message):
    with pytest.raises(ConfigError, match="entry 1") as info:
        refs.load(write_refs(tmp_path, entry))
    assert message in str(info.value) and "\n" not in str(info.value)


def test_one_entry_per_benchmark_preset_and_batch(tmp_path):
    with pytest.raises(ConfigError, match="more than one entry for resnet small global batch 64"):
        refs.load(write_refs(tmp_path, reference(), reference(epochs=[1, 2, 3, 4, 5])))


# --- python -m ai500.references add ----------------------------------------------------------

def seed_sweep(root, name, epochs_by_seed, batch=64, ranks=2, missed=()):
    """A finished sweep directory: one point per seed, reached at epochs_by_seed[seed]."""
    sweep = root / name
    points = []
    for seed, epochs in epochs_by_seed.items():
        run = f"np{ranks:04d}-s{seed:02d}-r01"
        (sweep / run).mkdir(parents=True)
        reached = seed not in missed
        (sweep / run / "summary.json").write_text(json.dumps({
            "status": "ok", "benchmark": "resnet", "preset": "small", "ranks": ranks,
            "global_batch_size": batch, "seed": seed, "epochs_completed": epochs,
            "quality": {"metric": "val_auc", "target": 0.94, "higher_is_better": True,
                        "reached": reached},
            "time_to_quality_epoch": epochs - 1 if reached else None}))
        points.append({"name": run, "run_dir": run, "ranks": ranks, "repeat": 1, "seed": seed,
                       "status": "ok", "started_utc": f"2026-12-0{1 + seed % 2}T10:00:00Z"})
    (sweep / "manifest.json").write_text(json.dumps({
        "kind": "ai500-sweep", "points": points,
        "command": ["python", "launch/sweep.py", "--benchmark", "resnet", "--seeds", "5"]}))
    return sweep


def test_add_records_epochs_command_date_and_machine_and_replaces(tmp_path, capsys):
    path = tmp_path / "refs.yaml"
    shutil.copy(refs.DEFAULT_FILE, path)  # the shipped entries, kept; resnet small 64 replaced
    kept = [r for r in refs.load(path) if (r.benchmark, r.preset, r.global_batch)
            != ("resnet", "small", 64)]
    refs.write(kept, path)
    before = len(kept)
    sweep = seed_sweep(tmp_path, "a", {3: 5, 0: 4, 1: 6, 2: 4, 4: 5})
    assert refs.main(["add", str(sweep), "--file", str(path)]) == 0
    assert "epochs to val_auc 0.94 [4, 6, 4, 5, 5] over seeds [0, 1, 2, 3, 4]" in capsys.readouterr(
    ).out
    loaded = refs.load(path)
    assert len(loaded) == before + 1
    ref = refs.find(loaded, "resnet", "small", 64)
    assert ref.epochs == [4, 6, 4, 5, 5] and ref.seeds == [0, 1, 2, 3, 4] and ref.ranks == [2]
    assert ref.command == "python launch/sweep.py --benchmark resnet --seeds 5"
    assert ref.date == "2026-12-01 to 2026-12-02"
    assert ref.machine == "unknown (no system.json)"
    assert ref.sweeps == [str(sweep.resolve())]
    assert path.read_text().startswith("# Reference convergence points")
    again = seed_sweep(tmp_path, "b", {s: 7 for s in range(5)})  # same key: replaced
    assert refs.main(["add", str(again), "--file", str(path)]) == 0
    assert refs.find(refs.load(path), "resnet", "small", 64).epochs == [7] * 5
    assert len(refs.load(path)) == before + 1


@pytest.mark.parametrize("epochs, missed, message", [
    ({0: 4, 1: 5, 2: 4, 3: 6}, (), "4 distinct seed(s) ([0, 1, 2, 3]); a reference needs >= 5"),
    ({s: 4 for s in range(5)}, (2,), "1 of 5 run(s) did not reach the target"),
])
def test_add_refuses_too_few_seeds_or_a_missed_target(tmp_path, capsys, epochs, missed, message):
    path = write_refs(tmp_path)
    sweep = seed_sweep(tmp_path, "a", epochs, missed=missed)
    assert refs.main(["add", str(sweep), "--file", path]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and err.startswith("ai500.references: error:")
    assert refs.load(path) == []


# --- the summary's reference section, from a real run -------------------------------------------

def test_the_summary_judges_a_real_run_against_a_temporary_reference(tmp_path, monkeypatch):
    from ai500 import aggregate

    run = tmp_path / "np0002-r01"
    shutil.copytree(ROOT / "tests" / "golden" / "resnet-weak" / "np0002-r01", run)
    recorded = json.loads((run / "summary.json").read_text())
    assert recorded["reference"]["verdict"] == "no reference"  # no ci reference in the repo
    # the golden run reached val_auc 0.6 at its first evaluation (epoch 0): 1 epoch to target
    monkeypatch.setenv("AI500_REFERENCES", write_refs(tmp_path, reference(
        epochs=[3, 3, 4, 4, 5], preset="ci", target=0.6)))
    s = aggregate.aggregate(run)
    assert s["reference"]["verdict"] == "faster" and s["reference"]["epochs_to_target"] == 1
    assert json.loads((run / "summary.json").read_text())["reference"] == s["reference"]
    assert s["reference"]["file"] == str(tmp_path / "refs.yaml")
