import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from ai500 import dist
from ai500.errors import ConfigError


@pytest.mark.parametrize("env, expected", [
    ({}, None),
    ({"OMPI_COMM_WORLD_SIZE": "4"}, (4, "OMPI_COMM_WORLD_SIZE")),
    ({"PMIX_SIZE": "8"}, (8, "PMIX_SIZE")),
    ({"SLURM_PROCID": "0", "SLURM_STEP_NUM_TASKS": "16"}, (16, "SLURM_STEP_NUM_TASKS")),
    # The batch script's own shell (no SLURM_PROCID) does not count as a step of N tasks.
    ({"SLURM_STEP_NUM_TASKS": "16"}, None),
    ({"AI500_EXPECTED_SIZE": "2", "OMPI_COMM_WORLD_SIZE": "4"}, (2, "AI500_EXPECTED_SIZE")),
])
def test_expected_size_from_launcher_env(env, expected):
    assert dist.expected_size(env) == expected


def test_singletons_under_srun_without_pmi_are_caught():
    env = {"SLURM_PROCID": "3", "SLURM_STEP_NUM_TASKS": "4"}
    with pytest.raises(ConfigError, match="MPI reports 1 process.*SLURM_STEP_NUM_TASKS=4"):
        dist.check_size(1, env)
    dist.check_size(4, env)


def test_launcher_rank(monkeypatch):
    for var in dist.LAUNCHER_RANK_VARS:
        monkeypatch.delenv(var, raising=False)
    assert dist.launcher_rank() == 0
    monkeypatch.setenv("PMIX_RANK", "5")
    assert dist.launcher_rank() == 5


@pytest.mark.parametrize("env, tty, expected", [
    ({}, True, True),
    ({}, False, False),
    ({"OMPI_COMM_WORLD_SIZE": "2"}, True, False),  # mpirun gives ranks a pty even into a pipe
    ({"SLURM_PROCID": "0"}, True, False),
    ({"OMPI_COMM_WORLD_SIZE": "2", "AI500_PROGRESS": "1"}, False, True),
    ({"AI500_PROGRESS": "0"}, True, False),
])
def test_progress_bar_only_on_an_interactive_terminal(env, tty, expected):
    from ai500.run import progress_bar_wanted

    assert progress_bar_wanted(env, tty) is expected


class FakeJob:
    """`size` ranks as threads, with the collectives agree_over needs: every rank deposits its
    value, all wait, each gets the reduction (or the root's object); calls are counted."""

    def __init__(self, size: int):
        self.size, self.calls = size, []
        self._values: dict[int, object] = {}
        self._barrier = threading.Barrier(size)

    def _collective(self, rank: int, kind: str, value, combine):
        self._values[rank] = value
        self._barrier.wait()
        result = combine([self._values[r] for r in range(self.size)])
        if rank == 0:
            self.calls.append(kind)
        self._barrier.wait()
        return result

    def run(self, messages: dict[int, str]) -> list:
        def one(rank: int):
            return dist.agree_over(
                messages.get(rank), rank,
                lambda v: self._collective(rank, "max", v, lambda vs: np.max(vs, axis=0)),
                lambda v: self._collective(rank, "sum", v, lambda vs: np.sum(vs, axis=0)),
                lambda obj, root: self._collective(rank, "bcast", obj, lambda vs: vs[root]))

        with ThreadPoolExecutor(self.size) as pool:
            return list(pool.map(one, range(self.size)))


@pytest.mark.parametrize("failing, text", [
    ({3: "disk full"}, "disk full (rank 3)"),
    ({4: "bad shard 4", 1: "bad shard 1"}, "bad shard 1 (ranks 1, 4)"),
    ({5: "e5", 0: "e0", 2: "e2"}, "e0 (3 ranks, 0 to 5)"),
])
def test_error_agreement_names_the_failing_ranks_in_fixed_size_collectives(failing, text):
    job = FakeJob(6)
    results = job.run(failing)
    assert {r.describe(6) for r in results} == {text}  # every rank raises the same line
    assert job.calls == ["max", "sum", "bcast"]  # whatever the job's size
    assert dist.Failures(1, 0, 0, "only").describe(1) == "only"  # one rank: no rank list


def test_error_agreement_costs_one_small_reduction_when_all_is_well():
    job = FakeJob(5)
    assert job.run({}) == [None] * 5
    assert job.calls == ["max"]
