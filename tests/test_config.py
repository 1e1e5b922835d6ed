import re

import pytest

from ai500 import config
from ai500.errors import ConfigError


def test_preset_resolves_to_dataclasses():
    cfg = config.resolve(["--benchmark", "resnet", "--preset", "ci"])
    assert cfg.preset == "ci"
    assert cfg.train.epochs == 2 and cfg.train.batch_size == 32
    assert cfg.quality.metric == "val_auc"
    assert cfg.model["stage_widths"] == [8, 16]
    assert cfg.data_path is None


def test_flags_override_preset():
    cfg = config.resolve(["--benchmark", "resnet", "--preset", "ci", "--epochs", "5",
                          "--batch-size", "7", "--lr", "0.5", "--target", "0.8", "--seed", "3",
                          "--no-stop-at-target"])
    assert (cfg.train.epochs, cfg.train.batch_size, cfg.train.lr) == (5, 7, 0.5)
    assert cfg.quality.target == 0.8 and cfg.seed == 3 and cfg.train.stop_at_target is False


def test_yaml_override_merges_key_by_key(tmp_path):
    override = tmp_path / "o.yaml"
    override.write_text("model: {stem_width: 4}\ntrain: {epochs: 9}\n")
    cfg = config.resolve(["--benchmark", "resnet", "--preset", "ci", "--config", str(override)])
    assert cfg.model["stem_width"] == 4 and cfg.model["stage_widths"] == [8, 16]
    assert cfg.train.epochs == 9 and cfg.train.batch_size == 32


@pytest.mark.parametrize("argv, fragment", [
    (["--benchmark", "nope"], "invalid choice: 'nope'"),
    (["--benchmark", "resnet", "--preset", "huge"], "invalid choice: 'huge'"),
    (["--benchmark", "resnet", "--batch-size", "0"], "must be > 0"),
    (["--benchmark", "resnet", "--batch-size", "-4"], "must be > 0"),
    (["--benchmark", "resnet", "--batch-size", "many"], "expected a whole number"),
    (["--benchmark", "resnet", "--epochs", "0"], "must be > 0"),
    (["--benchmark", "resnet", "--lr", "nan"], "finite number > 0"),
    (["--benchmark", "resnet", "--target", "inf"], "target must be finite"),
    (["--benchmark", "resnet", "--seed", "-1"], "whole number >= 0"),
    (["--benchmark", "resnet", "--data", "/no/such/dir"], "no such file or directory"),
    (["--benchmark", "resnet", "--config", "/no/such.yaml"], "no such file"),
    ([], "required: --benchmark"),
])
def test_bad_options_raise_one_clear_config_error(argv, fragment):
    with pytest.raises(ConfigError, match=None) as info:
        config.resolve(argv)
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("text, fragment", [
    ("train: {epochz: 3}\n", "unknown key(s) epochz"),
    ("trainer: {epochs: 3}\n", "unknown section 'trainer'"),
    ("train: {epochs: three}\n", "epochs must be int"),
    ("train: {batch_size: true}\n", "batch_size must be int"),
    ("quality: {target: .nan}\n", "target must be finite"),
    ("- just\n- a list\n", "expected a mapping"),
    ("train: {epochs: [\n", "not valid YAML"),
    ("train: {reference_batch: 0}\n", "reference_batch must be a whole number > 0"),
    ("train: {reference_batch: 2.5}\n", "reference_batch must be a whole number > 0"),
])
def test_bad_yaml_overrides(tmp_path, text, fragment):
    override = tmp_path / "bad.yaml"
    override.write_text(text)
    with pytest.raises(ConfigError) as info:
        config.resolve(["--benchmark", "resnet", "--preset", "ci", "--config", str(override)])
    assert fragment in str(info.value)


def test_reference_batch_is_the_presets_batch_whatever_batch_the_run_uses(tmp_path):
    """lr belongs to the preset's per-rank batch: --batch-size (or a --config batch_size) changes
    the run's batch, not the reference the learning-rate rule scales from; config.json has it."""
    cfg = config.resolve(["--benchmark", "resnet", "--preset", "ci", "--batch-size", "8"])
    assert (cfg.train.batch_size, cfg.train.reference_batch) == (8, 32)
    assert cfg.to_dict()["train"]["reference_batch"] == 32
    override = tmp_path / "o.yaml"
    override.write_text("train: {batch_size: 16}\n")
    cfg = config.resolve(["--benchmark", "dcgan", "--preset", "small", "--config", str(override)])
    assert (cfg.train.batch_size, cfg.train.reference_batch) == (16, 32)
    override.write_text("train: {batch_size: 16, reference_batch: 128}\n")
    cfg = config.resolve(["--benchmark", "dcgan", "--preset", "small", "--config", str(override)])
    assert (cfg.train.batch_size, cfg.train.reference_batch) == (16, 128)


def test_every_benchmark_has_every_preset():
    from ai500 import registry

    for name in registry.names():
        micro = registry.WORKLOADS[name] == "ai500.workloads.micro"
        for preset in config.PRESETS:
            sections = config.load_preset(name, preset)
            if micro:  # micro benchmarks time kernels: no training loop, no quality target
                assert set(sections) == {"micro"}, (name, preset)
            else:
                assert {"train", "quality", "model", "data"} <= set(sections), (name, preset)


def test_system_file_overrides_and_rejects_unknown_keys(tmp_path):
    good = tmp_path / "site.yaml"
    good.write_text("energy: {watts_per_core: 10.0}\ncost: {price_per_node_hour: 3.5}\n")
    cfg = config.resolve(["--benchmark", "resnet", "--system", str(good), "--no-energy"])
    assert cfg.system["energy"]["watts_per_core"] == 10.0
    assert cfg.system["energy"]["enabled"] is False
    assert cfg.system["cost"] == {"price_per_node_hour": 3.5, "currency": "USD"}
    # no price unless a site sets one (cost to quality is then n/a, not a made-up figure)
    default = config.resolve(["--benchmark", "resnet"])
    assert default.system["cost"] == {"price_per_node_hour": None, "currency": "USD"}
    bad = tmp_path / "bad.yaml"
    bad.write_text("energy: {watts_per_cpu: 10.0}\n")
    with pytest.raises(ConfigError, match="unknown key.*watts_per_cpu"):
        config.resolve(["--benchmark", "resnet", "--system", str(bad)])


def test_resnet_data_section_rejects_unknown_and_impossible_values(tmp_path):
    from ai500.dist import Dist
    from ai500.workloads import resnet

    dist = Dist(rank=0, size=1, local_rank=0, local_size=1, host="test")
    for text, fragment in (("data: {stem_width: 4}", "unknown key(s) stem_width"),
                           ("data: {n_val: 0}", "must be >= 1")):
        override = tmp_path / "override.yaml"
        override.write_text(text + "\n")
        cfg = config.resolve(["--benchmark", "resnet", "--preset", "ci", "--config", str(override)])
        with pytest.raises(ConfigError, match=re.escape(fragment)):
            resnet.Workload(cfg, dist)


def test_steps_per_epoch_counts_full_batches_and_needs_one():
    from ai500.workloads import steps_per_epoch

    assert steps_per_epoch(100, 32, "events") == 3  # the last 4 events are left out
    assert steps_per_epoch(64, 32, "maps") == 2
    with pytest.raises(ConfigError, match="batch size 64 exceeds the 10 training fields per rank"):
        steps_per_epoch(10, 64, "fields")
