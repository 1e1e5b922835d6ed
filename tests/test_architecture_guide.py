"""docs/architecture.md, followed word for word: its module map names what exists, its worked
example (a toy benchmark outside the package, registered through AI500_WORKLOADS) runs under
`mpirun -np 2` with the page's command, and the registration it describes behaves as it says."""

from __future__ import annotations

import ast
import json
import re
import shlex

import numpy as np
import pytest
from conftest import ROOT, load_summary, mpirun, only_run_dir

from ai500 import config, registry, workloads
from ai500.errors import ConfigError
from ai500.trace import read_trace

PAGE = (ROOT / "docs" / "architecture.md").read_text()


def page_files() -> dict[str, str]:
    """The page's example files: fenced blocks whose first line is `# file: NAME`, by NAME."""
    blocks = re.finditer(r"```\w+\n# file: (\S+)\n(.*?)```", PAGE, re.DOTALL)
    return {name: body for name, body in (m.groups() for m in blocks)}


def page_command() -> tuple[dict[str, str], int, list[str]]:
    """The page's run command: its environment assignments, rank count and ai500.run arguments."""
    (line,) = re.findall(r"```sh\n(.*mpirun.*)\n```", PAGE)
    words = shlex.split(line)
    env = {}
    while re.fullmatch(r"[A-Z_0-9]+=\S*", words[0]):
        key, value = words.pop(0).split("=", 1)
        env[key] = value
    assert words[:2] == ["mpirun", "-np"] and words[3:6] == ["python", "-m", "ai500.run"], words
    return env, int(words[2]), words[6:]


@pytest.fixture
def toy_dir(tmp_path, monkeypatch):
    """The page's example files in a directory, registered as the page says (in this process)."""
    for name, body in page_files().items():
        (tmp_path / name).write_text(body)
    env, _, _ = page_command()
    monkeypatch.setenv(registry.ENV_VAR, env[registry.ENV_VAR])
    monkeypatch.syspath_prepend(str(tmp_path))  # what PYTHONPATH=$PWD does for the ranks
    return tmp_path


def test_module_map_names_what_exists():
    section = PAGE.split("## Who owns what")[1].split("\n## ")[0]
    paths = re.findall(r"^    (\S+)", section, re.MULTILINE)
    assert len(paths) > 20
    missing = [p for p in paths if not (ROOT / p).exists()]
    assert not missing, missing


def test_protocol_table_lists_every_member_of_the_protocol():
    signatures = re.findall(r"^    ([a-z]\S*(?: \S+)*?)(?:  |$)", workloads.__doc__, re.MULTILINE)
    assert "train_step(batch)" in " ".join(signatures) and len(signatures) >= 9, signatures
    table = PAGE.split("| member |")[1].split("\n\n")[0]
    missing = [sig for sig in signatures if f"| `{sig}` |" not in table]
    assert not missing, missing


def test_page_holds_the_example_and_its_command():
    files = page_files()
    assert sorted(files) == ["toy.yaml", "toy_workload.py"]
    env, ranks, args = page_command()
    assert env == {registry.ENV_VAR: "toy=toy_workload", "PYTHONPATH": "$PWD"} and ranks == 2
    assert args[:4] == ["--benchmark", "toy", "--preset", "ci"]


def test_in_tree_registration_is_one_line_of_workloads():
    (line,) = re.findall(r"```python\n(.*)\n\s*```", PAGE)
    entry = ast.literal_eval("{" + line.strip() + "}")
    assert entry == {"toy": "ai500.workloads.toy"}
    for name, module in registry.WORKLOADS.items():  # the built-in lines have that shape
        assert module.startswith("ai500.workloads.")
        assert config.preset_file(name) == ROOT / "ai500" / "configs" / f"{name}.yaml"
        assert config.preset_file(name).is_file()


def test_out_of_tree_benchmark_and_presets_are_found_as_the_page_says(toy_dir):
    assert registry.names()[-1] == "toy" and registry.external() == {"toy": "toy_workload"}
    assert config.preset_file("toy") == toy_dir / "toy.yaml"
    for preset in config.PRESETS:
        sections = config.load_preset("toy", preset)
        assert {"train", "quality", "model", "data"} <= set(sections), preset
    cfg = config.resolve(["--benchmark", "toy", "--preset", "ci"])
    assert cfg.quality.metric == "val_accuracy" and cfg.data["n_val"] == 256


def test_out_of_tree_module_that_cannot_be_found_is_one_line(monkeypatch):
    monkeypatch.setenv(registry.ENV_VAR, "toy=no_such_module_here")
    with pytest.raises(ConfigError, match="toy=no_such_module_here: no module .*PYTHONPATH"):
        config.load_preset("toy", "ci")
    monkeypatch.setenv(registry.ENV_VAR, "toy=no_such_package.toy")
    with pytest.raises(ConfigError, match="no module no_such_package.toy"):
        config.resolve(["--benchmark", "toy"])


def test_registration_entries_are_parsed_and_checked():
    env = {registry.ENV_VAR: " toy = toy_workload , other=pkg.sub.mod,"}
    assert registry.external(env) == {"toy": "toy_workload", "other": "pkg.sub.mod"}
    assert registry.external({}) == {}
    for value, fragment in [("toy", "'toy' is not name=module.path"),
                            ("toy=", "is not name=module.path"),
                            ("=mod", "is not name=module.path"),
                            ("toy=my-module", "is not name=module.path"),
                            ("resnet=mine", "'resnet' is a built-in benchmark"),
                            ("a=x,a=y", "'a' is named twice")]:
        with pytest.raises(ConfigError, match=re.escape(fragment)) as info:
            registry.external({registry.ENV_VAR: value})
        assert str(info.value).startswith(registry.ENV_VAR) and "\n" not in str(info.value)


def test_a_bad_registration_with_help_is_one_line_not_a_traceback(monkeypatch, capsys):
    from ai500 import run

    monkeypatch.setenv(registry.ENV_VAR, "toy")
    assert run.main(["--help"]) == 2
    err = capsys.readouterr().err
    assert err == f"ai500: error: {registry.ENV_VAR}: 'toy' is not name=module.path\n"


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    """The page's example, run with the page's command from the example's directory."""
    work = tmp_path_factory.mktemp("toy")
    for name, body in page_files().items():
        (work / name).write_text(body)
    env, ranks, args = page_command()
    env = {key: value.replace("$PWD", str(work)) for key, value in env.items()}
    result = mpirun(ranks, args, env=env, cwd=work)
    assert result.returncode == 0, result.stdout + result.stderr
    return result, only_run_dir(work / "runs")


def test_toy_run_leaves_the_run_directory_the_page_describes(toy_run):
    _, run_dir = toy_run
    assert run_dir.name.startswith("toy-") and run_dir.name.endswith("-np2")
    names = {p.name for p in run_dir.iterdir()}
    assert {n for n in names if n.startswith("trace-")} == {"trace-rank00000.h5",
                                                             "trace-rank00001.h5"}
    described = PAGE.split("It prints one line per epoch")[1].split("To move it")[0]
    listed = set(re.findall(r"`([\w.-]+\.(?:json|h5|txt))`", described))
    assert {"config.json", "summary.json", "summary.h5", "mllog.txt"} <= listed
    assert listed <= names, listed - names


def test_toy_run_trains_to_its_target_with_global_metrics(toy_run):
    _, run_dir = toy_run
    s = load_summary(run_dir)
    assert s["status"] == "ok" and s["benchmark"] == "toy" and s["ranks"] == 2
    assert s["quality"]["metric"] == "val_accuracy" and s["quality"]["reached"]
    assert s["time_to_quality_s"] > 0 and s["throughput"]["samples_per_s"] > 0
    assert s["global_batch_size"] == 64
    assert s["flops"]["per_sample_train"] == pytest.approx(3 * s["flops"]["per_sample_forward"])
    assert all(e["val_samples"] == 256 for e in s["epochs"])  # the whole set, both shards
    cfg = json.loads((run_dir / "config.json").read_text())
    assert cfg["workload"]["train_samples_per_rank"] == 256
    traces = [read_trace(run_dir / f"trace-rank{rank:05d}.h5") for rank in (0, 1)]
    for rank, trace in enumerate(traces):
        assert trace.attrs["rank"] == rank and trace.attrs["status"] == "ok"
    for key in ("train_loss", "val_accuracy"):
        np.testing.assert_array_equal(traces[0].epochs[key], traces[1].epochs[key])
