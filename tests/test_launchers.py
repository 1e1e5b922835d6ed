"""Launchers: the exact argv each way of starting ranks builds (no MPI or Slurm needed)."""

from __future__ import annotations

import sys

import pytest
from conftest import ROOT

sys.path.insert(0, str(ROOT))
from launch import launchers

ARGS = ["-m", "ai500.run", "--benchmark", "resnet"]


def test_registered_by_name():
    assert set(launchers.names()) == {"mpirun", "srun", "local", "slurm"}
    assert isinstance(launchers.get("mpirun", python="py", cores=4, as_root=False),
                      launchers.Mpirun)
    with pytest.raises(ValueError, match="unknown launcher 'aprun'"):
        launchers.get("aprun")


def test_mpirun_within_cores():
    m = launchers.Mpirun(python="py", cores=4, as_root=False)
    assert m.command(4, ARGS) == ["mpirun", "-np", "4", "py", *ARGS]
    assert m.oversubscribed(4) is False


def test_mpirun_oversubscribed_and_root():
    m = launchers.Mpirun(python="py", cores=2, as_root=True)
    assert m.command(1, ARGS) == ["mpirun", "--allow-run-as-root", "-np", "1", "py", *ARGS]
    assert m.command(3, ARGS) == ["mpirun", "--allow-run-as-root", "--oversubscribe",
                                  "--bind-to", "none", "-np", "3", "py", *ARGS]
    assert m.oversubscribed(3) is True
    assert m.describe()["cores"] == 2


def test_mpirun_defaults_from_this_machine():
    m = launchers.Mpirun()
    assert m.python == sys.executable and m.cores >= 1 and m.cores == launchers.local_cores()


def test_srun():
    assert launchers.Srun(python="py").command(8, ARGS) == [
        "srun", "--mpi=pmix", "-n", "8", "py", *ARGS]
    assert launchers.Srun().oversubscribed(8) is None  # Slurm places the ranks


def test_local_is_one_process():
    assert launchers.Local(python="py").command(1, ARGS) == ["py", *ARGS]
    with pytest.raises(ValueError, match="one process, not 2"):
        launchers.Local(python="py").command(2, ARGS)


def test_sbatch_hands_run_arguments_to_the_script():
    s = launchers.Sbatch(script="slurm/resnet.sbatch")
    assert not s.starts_python
    assert s.command(4, ["--preset", "ci", "--run-name", "np0004-r01"]) == [
        "sbatch", "--parsable", "-n", "4", "slurm/resnet.sbatch",
        "--preset", "ci", "--run-name", "np0004-r01"]


@pytest.mark.parametrize("ranks", [0, -1, 1.5, True])
def test_bad_rank_counts(ranks):
    with pytest.raises(ValueError, match="rank count"):
        launchers.Mpirun(python="py", cores=2, as_root=False).command(ranks, ARGS)
