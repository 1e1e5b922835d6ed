import math

import pytest

from ai500.workloads.schedule import LinearScalingSchedule


def test_warmup_then_cosine_decay():
    s = LinearScalingSchedule(0.1, ranks=4, warmup_steps=10, total_steps=110)
    assert float(s(0)) == pytest.approx(0.1)
    assert float(s(5)) == pytest.approx(0.1 + 0.3 * 0.5)
    assert float(s(10)) == pytest.approx(0.4)           # peak = base x ranks
    assert float(s(60)) == pytest.approx(0.2)           # half-way through the decay
    assert float(s(110)) == pytest.approx(0.0, abs=1e-7)
    assert float(s(500)) == pytest.approx(0.0, abs=1e-7)
    assert "0.1 x 4 ranks = 0.4" in s.describe()


def test_no_warmup_single_rank():
    s = LinearScalingSchedule(0.05, ranks=1, warmup_steps=0, total_steps=100)
    assert float(s(0)) == pytest.approx(0.05)
    assert float(s(25)) == pytest.approx(0.025 * (1 + math.cos(math.pi / 4)))
