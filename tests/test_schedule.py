import math

import pytest

from ai500.config import TrainSettings
from ai500.workloads.schedule import ScaledLearningRate, schedule_for


def rates(s, steps):
    return [float(s(step)) for step in steps]


def test_linear_warmup_then_cosine_decay():
    s = ScaledLearningRate(0.1, global_batch=256, reference_batch=64, rule="linear",
                           decay="cosine", warmup_steps=10, total_steps=110)
    assert float(s(0)) == pytest.approx(0.1)
    assert float(s(5)) == pytest.approx(0.1 + 0.3 * 0.5)
    assert float(s(10)) == pytest.approx(0.4)           # peak = lr x 256 / 64
    assert float(s(60)) == pytest.approx(0.2)           # half-way through the decay
    assert float(s(110)) == pytest.approx(0.0, abs=1e-7)
    assert float(s(500)) == pytest.approx(0.0, abs=1e-7)
    assert s.describe().startswith("linear scaling with global batch / reference batch: "
                                   "peak 0.1 x 256 / 64 = 0.4")
    assert "linear warm-up from 0.1 over 10 steps" in s.describe()


def test_no_warmup_single_rank():
    s = ScaledLearningRate(0.05, 64, 64, "linear", "cosine", warmup_steps=0, total_steps=100)
    assert float(s(0)) == pytest.approx(0.05)
    assert float(s(25)) == pytest.approx(0.025 * (1 + math.cos(math.pi / 4)))


def test_sqrt_rule_warms_up_then_holds():
    s = ScaledLearningRate(2e-4, 128, 32, "sqrt", "constant", warmup_steps=8, total_steps=80)
    assert rates(s, [0, 4, 8, 50, 1000]) == pytest.approx([2e-4, 3e-4, 4e-4, 4e-4, 4e-4])
    assert ("square-root scaling with global batch / reference batch: peak 0.0002 x sqrt(128 / 32) = "
            "0.0004") in s.describe()
    assert s.describe().endswith("then constant")


def test_a_peak_not_above_lr_has_no_ramp():
    # global batch below the reference: the rate starts at the (lower) peak, no ramp down
    s = ScaledLearningRate(0.1, 32, 64, "linear", "constant", warmup_steps=10, total_steps=100)
    assert rates(s, [0, 5, 10]) == pytest.approx([0.05, 0.05, 0.05])
    assert "no warm-up ramp" in s.describe()


def test_unknown_rule_or_decay():
    with pytest.raises(ValueError, match="scaling rule 'cubic'"):
        ScaledLearningRate(0.1, 1, 1, "cubic", "cosine", 0, 10)
    with pytest.raises(ValueError, match="decay 'step'"):
        ScaledLearningRate(0.1, 1, 1, "linear", "step", 0, 10)


TRAIN = TrainSettings(epochs=10, batch_size=64, lr=0.05, warmup_epochs=1, reference_batch=64)


@pytest.mark.parametrize("rule, decay, f", [("linear", "cosine", lambda n: n),
                                            ("sqrt", "constant", math.sqrt)])
@pytest.mark.parametrize("ranks", [1, 2, 4, 8])
def test_weak_scaling_at_the_preset_batch_scales_with_the_rank_count(rule, decay, f, ranks):
    """Per-rank batch = reference: peak lr x N (linear) or lr x sqrt(N), warm-up from lr over one
    epoch, as the schedules by rank count did before the rule moved to the global batch."""
    s = schedule_for(TRAIN, ranks, steps_per_epoch=20, rule=rule, decay=decay)
    peak = 0.05 * f(ranks)
    assert (s.peak, s.start, s.warmup_steps, s.total_steps) == pytest.approx((peak, 0.05, 20, 200))
    warm = [0.05 + (peak - 0.05) * k / 20 for k in (0, 10)]
    after = ([peak, 0.5 * peak * (1 + math.cos(math.pi * 90 / 180))] if decay == "cosine"
             else [peak, peak])
    assert rates(s, [0, 10, 20, 110]) == pytest.approx(warm + after)


@pytest.mark.parametrize("rule, decay", [("linear", "cosine"), ("sqrt", "constant")])
def test_strong_scaling_runs_one_schedule_at_every_rank_count(rule, decay):
    """Global batch 256 split over N ranks (per-rank 256 / N, steps per epoch fixed): the same
    rates at every step, whatever N."""
    curves = []
    for ranks in (1, 2, 4, 8):
        train = TrainSettings(epochs=10, batch_size=256 // ranks, lr=0.05, warmup_epochs=1,
                              reference_batch=64)
        s = schedule_for(train, ranks, steps_per_epoch=20, rule=rule, decay=decay)
        assert (s.global_batch, s.start, s.warmup_steps) == (256, 0.05, 20)
        assert s.peak == pytest.approx(0.05 * (4 if rule == "linear" else 2))
        curves.append(rates(s, [0, 7, 20, 33, 199]))
    assert all(c == curves[0] for c in curves)


def test_a_config_without_reference_batch_scales_by_ranks():
    """config.json of a run made before reference_batch existed (resumed): the rank count rule."""
    old = TrainSettings(epochs=10, batch_size=32, lr=0.1, warmup_epochs=0)
    assert schedule_for(old, 4, 10, "linear", "cosine").peak == pytest.approx(0.4)


def test_train_decay_replaces_the_workloads_own():
    """train.decay (a config knob) wins over the decay the workload asks for; unset keeps it."""
    own = schedule_for(TRAIN, 1, 10, "sqrt", "constant")
    assert own.decay == "constant" and own.describe().endswith("then constant")
    cosine = TrainSettings(epochs=10, batch_size=64, lr=0.05, warmup_epochs=1, reference_batch=64,
                           decay="cosine")
    s = schedule_for(cosine, 1, 10, "sqrt", "constant")
    assert s.decay == "cosine"
    assert rates(s, [10, 55, 100]) == pytest.approx([0.05, 0.025, 0.0], rel=1e-6, abs=1e-7)


def test_train_decay_is_checked_when_the_config_is_resolved(tmp_path):
    from ai500 import config
    from ai500.errors import ConfigError

    override = tmp_path / "decay.yaml"
    override.write_text("train: {decay: cosine}\n")
    cfg = config.resolve(["--benchmark", "dcgan", "--preset", "ci", "--config", str(override)])
    assert cfg.train.decay == "cosine"
    assert config.resolve(["--benchmark", "dcgan", "--preset", "ci"]).train.decay is None
    override.write_text("train: {decay: step}\n")
    with pytest.raises(ConfigError, match="section 'train': decay must be one of cosine, "
                                          "constant, got 'step'"):
        config.resolve(["--benchmark", "dcgan", "--preset", "ci", "--config", str(override)])
