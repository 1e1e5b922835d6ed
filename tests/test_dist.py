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
