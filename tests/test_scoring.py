"""Derived metrics on hand-computed values (chosen to be exact in binary floating point)."""

from __future__ import annotations

import pytest

from ai500.metrics.scoring import (
    cost_to_quality,
    flops_per_watt,
    node_hours,
    samples_per_joule,
    valid_flops,
)


def test_valid_flops_rewards_beating_the_target() -> None:
    assert valid_flops(2e12, 0.75, 0.5, 5) == 2e12 * 7.59375  # 1.5 ** 5


def test_valid_flops_penalises_missing_the_target() -> None:
    assert valid_flops(1e12, 0.5, 1.0, 5) == 1e12 * 0.03125  # 0.5 ** 5


def test_valid_flops_at_the_target_is_flops() -> None:
    assert valid_flops(3e12, 0.9, 0.9, 5) == 3e12


def test_valid_flops_lower_is_better_inverts_the_ratio() -> None:
    # loss 0.25 against a target of 0.5: twice as good -> (0.5 / 0.25) ** 2 = 4
    assert valid_flops(1e9, 0.25, 0.5, 2, higher_is_better=False) == 4e9
    assert valid_flops(1e9, 1.0, 0.5, 2, higher_is_better=False) == 0.25e9


def test_valid_flops_rejects_impossible_inputs() -> None:
    with pytest.raises(ValueError):
        valid_flops(1e9, 0.0, 0.5, 5)
    with pytest.raises(ValueError):
        valid_flops(1e9, 0.5, 0.0, 5)
    with pytest.raises(ValueError):
        valid_flops(1e9, 0.5, 0.5, -1)


def test_node_hours_and_cost() -> None:
    assert node_hours(4, 5400.0) == 6.0  # 4 nodes x 1.5 h
    assert cost_to_quality(6.0, 2.5) == 15.0  # 6 node-h x 2.5 per node-h
    assert cost_to_quality(None, 2.5) is None
    assert cost_to_quality(6.0, None) is None
    with pytest.raises(ValueError):
        cost_to_quality(6.0, -1.0)
    with pytest.raises(ValueError):
        node_hours(0, 10.0)


def test_samples_per_joule() -> None:
    assert samples_per_joule(1000, 250.0) == 4.0
    assert samples_per_joule(1000, None) is None
    assert samples_per_joule(None, 250.0) is None
    with pytest.raises(ValueError):
        samples_per_joule(1000, 0.0)


def test_flops_per_watt() -> None:
    assert flops_per_watt(2e12, 400.0) == 5e9  # 5 GFLOPS/W
    assert flops_per_watt(None, 400.0) is None
    assert flops_per_watt(2e12, None) is None
    with pytest.raises(ValueError):
        flops_per_watt(2e12, 0.0)
