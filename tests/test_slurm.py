"""slurm/*.sbatch and slurm/sweep.sh: the launch logic without Slurm (dry runs against fake
`srun`/`mpirun`), then real jobs on a one-node Slurm cluster that this module starts."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, load_summary
from slurm_cluster import SlurmCluster, ensure_packages

SLURM = ROOT / "slurm"
SCRIPTS = {"resnet": "resnet.sbatch", "dcgan": "dcgan.sbatch",
           "faster_rcnn": "faster_rcnn.sbatch", "micro": "micro.sbatch"}


# ---------------------------------------------------------------------------------------------
# Dry runs: the scripts run with bash directly, Slurm's variables faked, AI500_DRY_RUN=1.

def fake_bin(tmp_path: Path, srun_mpi: list[str] | None, mpirun: bool = True) -> Path:
    """A PATH directory with the few tools the scripts use, a fake `srun` whose --mpi=list
    offers `srun_mpi` (None: no srun at all) and optionally a fake `mpirun`."""
    bin_dir = tmp_path / "bin"
    shutil.rmtree(bin_dir, ignore_errors=True)
    bin_dir.mkdir()
    for tool in ("bash", "grep", "sed", "dirname", "cat", "env", "mkdir"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    if srun_mpi is not None:
        listing = "MPI plugin types are...\n" + "".join(f"\t{m}\n" for m in srun_mpi)
        (bin_dir / "srun").write_text(f"#!/bin/bash\nprintf '{listing}' >&2\n")
    if mpirun:  # makes $FAKE_RUN_DIR if set, exits with $FAKE_STATUS
        (bin_dir / "mpirun").write_text('#!/bin/bash\n[[ -z $FAKE_RUN_DIR ]] || '
                                        'mkdir -p "$FAKE_RUN_DIR"\nexit ${FAKE_STATUS:-0}\n')
    for f in bin_dir.iterdir():
        if not f.is_symlink():
            f.chmod(0o755)
    return bin_dir


def dry_run(tmp_path: Path, script: str, args: list[str] = (), srun_mpi=("pmix", "none"),
            mpirun: bool = True, **env: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    """Run SCRIPT under bash as a 4-task job 77 would; returns the result and the command.
    An env value of None removes the variable (AI500_DRY_RUN=None: launch the fake for real)."""
    bin_dir = fake_bin(tmp_path, None if srun_mpi is None else list(srun_mpi), mpirun)
    full_env = {"PATH": str(bin_dir), "HOME": str(tmp_path), "AI500_DRY_RUN": "1",
                "AI500_PYTHON": sys.executable, "SLURM_JOB_ID": "77", "SLURM_NTASKS": "4",
                "SLURM_JOB_NUM_NODES": "2", "SLURM_SUBMIT_DIR": str(tmp_path), **env}
    full_env = {k: v for k, v in full_env.items() if v is not None}
    result = subprocess.run([shutil.which("bash"), str(SLURM / script), *args], check=False,
                            env=full_env, capture_output=True, text=True, timeout=30, cwd=tmp_path)
    command: list[str] = []
    for line in result.stdout.splitlines():
        if line.startswith("ai500: AI500_EXPECTED_SIZE="):
            command = shlex.split(line.split(" ", 2)[2])
    return result, command


def ai500_args(command: list[str]) -> list[str]:
    """What follows `python -m ai500.run` in a launch command."""
    i = command.index("ai500.run")
    assert command[i - 2:i] == [sys.executable, "-m"]
    return command[i + 1:]


def test_auto_picks_srun_with_pmix_and_names_the_run_after_the_job(tmp_path):
    result, cmd = dry_run(tmp_path, "resnet.sbatch", ["--preset", "ci"])
    assert result.returncode == 0, result.stderr
    assert cmd[:4] == ["srun", "--mpi=pmix", "--ntasks=4", "--kill-on-bad-exit=1"]
    assert ai500_args(cmd) == ["--benchmark", "resnet", "--out", str(tmp_path / "runs"),
                               "--run-name", "resnet-job77", "--preset", "ci"]
    assert "AI500_EXPECTED_SIZE=4 " in result.stdout
    assert "4 ranks on 2 node(s) via srun" in result.stdout


@pytest.mark.parametrize("srun_mpi", [("none", "pmi2"), None], ids=["srun-without-pmix", "no-srun"])
def test_auto_falls_back_to_mpirun(tmp_path, srun_mpi):
    result, cmd = dry_run(tmp_path, "resnet.sbatch", srun_mpi=srun_mpi)
    assert result.returncode == 0, result.stderr
    root = ["--allow-run-as-root"] if os.geteuid() == 0 else []
    assert cmd[:cmd.index(sys.executable)] == ["mpirun", "-np", "4", *root,
                                       "-x", "AI500_EXPECTED_SIZE", "-x", "PYTHONPATH"]


def test_launcher_variable_overrides_and_extra_options(tmp_path):
    result, cmd = dry_run(tmp_path, "resnet.sbatch", AI500_LAUNCHER="mpirun",
                          AI500_MPIRUN_ARGS="--bind-to none --oversubscribe",
                          SLURM_CPUS_PER_TASK="8")
    assert result.returncode == 0, result.stderr
    head = cmd[:cmd.index(sys.executable)]
    assert head[:3] == ["mpirun", "-np", "4"]
    assert head[-5:] == ["-x", "PYTHONPATH", "--bind-to", "none", "--oversubscribe"]
    assert ["--map-by", "slot:PE=8"] == head[head.index("--map-by"):head.index("--map-by") + 2]

    result, cmd = dry_run(tmp_path, "resnet.sbatch", srun_mpi=("none",), AI500_LAUNCHER="srun",
                          AI500_SRUN_MPI="pmi2", AI500_SRUN_ARGS="--cpu-bind=none",
                          SLURM_CPUS_PER_TASK="8")
    assert result.returncode == 0, result.stderr
    assert cmd[:cmd.index(sys.executable)] == ["srun", "--mpi=pmi2", "--ntasks=4", "--kill-on-bad-exit=1",
                                       "--cpus-per-task=8", "--cpu-bind=none"]


@pytest.mark.parametrize("env, message", [
    ({"AI500_LAUNCHER": "ssh"}, "AI500_LAUNCHER=ssh: expected srun, mpirun or auto"),
    ({"SLURM_NTASKS": None, "SLURM_JOB_NUM_NODES": None}, "SLURM_NTASKS is not set"),
    ({"SLURM_JOB_ID": None}, "SLURM_JOB_ID is not set: submit this script with sbatch"),
    ({"AI500_PYTHON": "/nonexistent/python"}, "AI500_PYTHON=/nonexistent/python is not"),
], ids=["launcher", "ntasks", "job-id", "python"])
def test_bad_setup_is_one_clear_line(tmp_path, env, message):
    result, _ = dry_run(tmp_path, "resnet.sbatch", **env)
    assert result.returncode == 1
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_no_launcher_at_all(tmp_path):
    result, _ = dry_run(tmp_path, "resnet.sbatch", srun_mpi=None, mpirun=False)
    assert result.returncode == 1
    assert "no launcher: srun offers no --mpi=pmix and mpirun is not on PATH" in result.stderr


def test_ntasks_from_nodes_times_tasks_per_node(tmp_path):
    result, cmd = dry_run(tmp_path, "resnet.sbatch", SLURM_NTASKS=None,
                          SLURM_JOB_NUM_NODES="3", SLURM_NTASKS_PER_NODE="8")
    assert result.returncode == 0, result.stderr
    assert "--ntasks=24" in cmd


@pytest.mark.parametrize("benchmark", sorted(SCRIPTS))
def test_every_script_passes_its_benchmark_and_the_arguments(tmp_path, benchmark):
    script = SLURM / SCRIPTS[benchmark]
    text = script.read_text()
    for directive in (f"#SBATCH --job-name=ai500-{benchmark}", "#SBATCH --ntasks-per-node=2",
                      "#SBATCH --time=", f"#SBATCH --output=ai500-{benchmark}-%j.out"):
        assert directive in text
    assert subprocess.run(["bash", "-n", str(script)], check=False).returncode == 0
    result, cmd = dry_run(tmp_path, script.name, ["--preset", "full", "--epochs", "3"])
    assert result.returncode == 0, result.stderr
    assert ai500_args(cmd) == ["--benchmark", benchmark, "--out", str(tmp_path / "runs"),
                               "--run-name", f"{benchmark}-job77", "--preset", "full",
                               "--epochs", "3"]


def test_benchmark_out_and_run_name_options_are_resolved_by_the_script(tmp_path):
    result, cmd = dry_run(tmp_path, "micro.sbatch",
                          ["--benchmark=conv", "--preset", "ci", "--out", "elsewhere"],
                          SLURM_RESTART_COUNT="2")
    assert result.returncode == 0, result.stderr
    assert ai500_args(cmd) == ["--benchmark", "conv", "--out", str(tmp_path / "elsewhere"),
                               "--run-name", "conv-job77-restart2", "--preset", "ci"]
    result, cmd = dry_run(tmp_path, "resnet.sbatch", ["--run-name", "mine"], AI500_OUT="/abs/runs")
    assert ai500_args(cmd) == ["--benchmark", "resnet", "--out", "/abs/runs", "--run-name", "mine"]
    result, _ = dry_run(tmp_path, "resnet.sbatch", ["--out"])
    assert result.returncode == 1 and "--out needs a value" in result.stderr


def test_after_the_launch_energy_is_recorded_in_the_new_run_dir_only(tmp_path):
    run_dir = tmp_path / "runs" / "resnet-job77"
    env = {"AI500_DRY_RUN": None, "AI500_LAUNCHER": "mpirun", "FAKE_RUN_DIR": str(run_dir)}
    result, _ = dry_run(tmp_path, "resnet.sbatch", **env)
    assert result.returncode == 0, result.stderr
    energy = json.loads((run_dir / "slurm_energy.json").read_text())
    assert energy["job_id"] == "77" and energy["joules"] is None
    assert energy["reason"] == "sacct failed: sacct is not on PATH"

    # ai500 refuses an existing run directory (exit 1): the earlier run's files stay as they were
    (run_dir / "slurm_energy.json").write_text("earlier")
    result, _ = dry_run(tmp_path, "resnet.sbatch", **{**env, "FAKE_STATUS": "1"})
    assert result.returncode == 1
    assert "ai500: mpirun exited with status 1" in result.stderr
    assert "this job made no run directory" in result.stderr
    assert (run_dir / "slurm_energy.json").read_text() == "earlier"


def test_a_spooled_copy_finds_the_checkout(tmp_path):
    """sbatch runs a copy of the script from its spool directory, away from slurm/common.sh."""
    spool = tmp_path / "spool" / "job00077"
    spool.mkdir(parents=True)
    shutil.copy(SLURM / "resnet.sbatch", spool / "slurm_script")
    for env in ({"SLURM_SUBMIT_DIR": str(ROOT)}, {"AI500_HOME": str(ROOT)}):
        result, _ = dry_run(tmp_path, str(spool / "slurm_script"), **env)
        assert result.returncode == 0, result.stderr
        assert f"; checkout {ROOT}\n" in result.stdout
    result, _ = dry_run(tmp_path, str(spool / "slurm_script"))
    assert result.returncode == 1
    assert result.stderr.strip().endswith("ai500: set AI500_HOME to the checkout")


@pytest.mark.parametrize("env, venvs", [
    ({}, ".venv .venv-cuda"),
    ({"SLURM_GPUS_ON_NODE": "0"}, ".venv .venv-cuda"),
    ({"SLURM_GPUS_ON_NODE": "4"}, ".venv-cuda .venv"),
    ({"SLURM_JOB_GPUS": "0,1"}, ".venv-cuda .venv"),
])
def test_a_job_with_gpus_prefers_the_gpu_stack(env, venvs):
    """GPU pinning is ai500/dist.py's (tests/test_gpu_pinning.py); the script only picks the
    interpreter: the GPU stack's (make install ACCEL=cuda) when Slurm gave the job GPUs."""
    result = subprocess.run(["bash", "-c", f". {SLURM / 'common.sh'}; ai500_venvs"], check=False,
                            env={"PATH": os.environ["PATH"], **env}, capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == venvs


NO_VAL64 = "18446744073709551614"  # Slurm's "no value" marker (2**64 - 2)


@pytest.mark.parametrize("rows, joules, steps", [
    # energy plugin on, but nothing gathered: the marker everywhere, not 1.8e19 J
    (f"77|{NO_VAL64}\\n77.batch|{NO_VAL64}\\n77.extern|0\\n", None,
     {"77": None, "77.batch": None, "77.extern": None}),
    # the job line still unset while it runs; the finished srun step has its figure
    (f"77|{NO_VAL64}\\n77.batch|{NO_VAL64}\\n77.0|4500\\n", 4500.0,
     {"77": None, "77.batch": None, "77.0": 4500.0}),
])
def test_sacct_energy_script_reads_slurm_no_value_markers_as_no_energy(tmp_path, rows, joules,
                                                                        steps):
    """slurm/sacct_energy.py as slurm/common.sh runs it (its own directory, no PYTHONPATH),
    against a fake sacct: the one parser, ai500.metrics.energy's."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sacct").write_text(f'#!/bin/sh\nprintf "{rows}"\n')
    (bin_dir / "sacct").chmod(0o755)
    out = tmp_path / "slurm_energy.json"
    result = subprocess.run([sys.executable, str(SLURM / "sacct_energy.py"), "77", str(out)],
                            check=False, capture_output=True, text=True, timeout=60, cwd=tmp_path,
                            env={"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"})
    assert result.returncode == 0, result.stderr
    record = json.loads(out.read_text())
    assert (record["joules"], record["steps"]) == (joules, steps)
    if joules is None:
        assert "no-value marker" in record["reason"]
        assert "null (sacct reports no energy" in result.stdout
    else:
        assert record["reason"] is None and "4500.0 J" in result.stdout


# ---------------------------------------------------------------------------------------------
# A real cluster.

@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """The cluster, up for this module's tests and stopped (by pid) right after them."""
    if os.geteuid() != 0:
        pytest.skip("no Slurm cluster: the test cluster runs munged, slurmctld and slurmd as "
                    "root (SlurmUser=root), and this is not root")
    reason = ensure_packages()
    if reason:
        pytest.skip(f"no Slurm cluster on this machine: {reason}")
    with SlurmCluster(tmp_path_factory.mktemp("slurm")).running() as c:
        yield c


def job_env(cluster: SlurmCluster, **extra: str) -> dict[str, str]:
    return {**cluster.env, "AI500_PYTHON": sys.executable, "TF_CPP_MIN_LOG_LEVEL": "3", **extra}


def job_output(cwd: Path, job_id: str) -> str:
    outputs = list(cwd.glob(f"*-{job_id}.out"))
    return outputs[0].read_text() if outputs else "(no job output file)"


def sbatch_wait(cluster: SlurmCluster, cwd: Path, args: list[str], timeout: float = 240,
                **env: str) -> tuple[int, str, str]:
    """`sbatch --wait --parsable ARGS` from cwd: the exit status, the job id, the job's output.
    (Here sbatch --wait was seen to poll after 2, 8, then every 32 s: up to 30 s late.)"""
    result = subprocess.run(["sbatch", "--wait", "--parsable", *args], check=False, cwd=cwd,
                            env=job_env(cluster, **env), capture_output=True, text=True,
                            timeout=timeout)
    job_id = result.stdout.strip().split(";")[0]
    assert job_id.isdigit(), (result.stdout, result.stderr)
    return result.returncode, job_id, job_output(cwd, job_id)


TERMINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY",
            "PREEMPTED", "BOOT_FAIL", "DEADLINE"}


def wait_jobs(cluster: SlurmCluster, job_ids: list[str], timeout: float = 240) -> dict[str, int]:
    """Poll scontrol (no accounting here, so not sacct) until the jobs end; their exit statuses
    as a shell reports them (128 + signal when killed)."""
    deadline = time.monotonic() + timeout
    statuses: dict[str, int] = {}
    while len(statuses) < len(job_ids):
        assert time.monotonic() < deadline, f"jobs {job_ids} did not finish in {timeout:.0f} s"
        for job in set(job_ids) - set(statuses):
            line = subprocess.run(["scontrol", "-o", "show", "job", job], check=False,
                                  env=cluster.env,
                                  capture_output=True, text=True).stdout
            fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
            if fields.get("JobState") in TERMINAL:
                code, signal = map(int, fields["ExitCode"].split(":"))
                statuses[job] = 128 + signal if signal else code
        time.sleep(0.5)
    return statuses


def sbatch_then_poll(cluster: SlurmCluster, cwd: Path, args: list[str], timeout: float = 240,
                     **env: str) -> tuple[int, str, str]:
    """As sbatch_wait, polling every half second instead of sbatch's own --wait."""
    result = subprocess.run(["sbatch", "--parsable", *args], check=False, cwd=cwd, timeout=60,
                            env=job_env(cluster, **env), capture_output=True, text=True)
    job_id = result.stdout.strip().split(";")[0]
    assert result.returncode == 0 and job_id.isdigit(), (result.stdout, result.stderr)
    status = wait_jobs(cluster, [job_id], timeout)[job_id]
    return status, job_id, job_output(cwd, job_id)


def check_run(run_dir: Path, ranks: int, job_output: str) -> None:
    assert run_dir.is_dir(), job_output
    summary = load_summary(run_dir)
    assert summary["status"] == "ok" and summary["ranks"] == ranks, job_output
    assert sorted(p.name for p in run_dir.glob("trace-rank*.h5")) == [
        f"trace-rank{r:05d}.h5" for r in range(ranks)]
    energy = json.loads((run_dir / "slurm_energy.json").read_text())
    assert energy["source"] == "sacct ConsumedEnergyRaw"
    # This cluster keeps no accounting: the record says so instead of inventing a number.
    assert energy["joules"] is None
    assert energy["reason"] == "sacct failed: Slurm accounting storage is disabled"


def test_resnet_sbatch_with_srun_pmix(cluster, tmp_path):
    rc, job, out = sbatch_wait(cluster, tmp_path, ["-n", "2", str(SLURM / "resnet.sbatch"),
                                                   "--preset", "ci"])
    assert rc == 0, out
    assert "2 ranks on 1 node(s) via srun" in out and "srun --mpi=pmix" in out
    check_run(tmp_path / "runs" / f"resnet-job{job}", 2, out)


def test_micro_sbatch_with_mpirun_inside_the_allocation(cluster, tmp_path):
    rc, job, out = sbatch_then_poll(cluster, tmp_path,
                                    ["-n", "2", str(SLURM / "micro.sbatch"),
                                     "--benchmark", "conv", "--preset", "ci"],
                                    AI500_LAUNCHER="mpirun", AI500_OUT=str(tmp_path / "results"))
    assert rc == 0, out
    assert "2 ranks on 1 node(s) via mpirun" in out
    check_run(tmp_path / "results" / f"conv-job{job}", 2, out)


def test_srun_without_pmi_fails_fast_instead_of_running_singletons(cluster, tmp_path):
    t0 = time.monotonic()
    rc, job, out = sbatch_then_poll(cluster, tmp_path,
                                    ["-n", "2", str(SLURM / "resnet.sbatch"), "--preset", "ci"],
                                    AI500_LAUNCHER="srun", AI500_SRUN_MPI="none", timeout=120)
    assert rc != 0, out
    # With Debian's Open MPI 4.1, MPI_Init itself refuses a direct launch without PMIx; an MPI
    # that starts singletons instead is stopped by ai500's size check (AI500_EXPECTED_SIZE).
    assert ('direct launched using "srun"' in out
            or "MPI reports 1 process(es) but AI500_EXPECTED_SIZE=2" in out), out
    assert "srun --mpi=none gives MPI no way to join the 2 tasks into one job" in out
    assert not (tmp_path / "runs" / f"resnet-job{job}" / "summary.json").exists()
    assert time.monotonic() - t0 < 60  # seconds: MPI_Init fails, srun kills the other task


def test_a_rank_count_other_than_slurm_ntasks_is_refused_by_ai500(cluster, tmp_path):
    # srun's own --ntasks=1 after the script's: one rank joins where the job has two. PMIx
    # wires it up fine, so it is ai500's size check (AI500_EXPECTED_SIZE) that stops it.
    rc, job, out = sbatch_then_poll(cluster, tmp_path,
                                    ["-n", "2", str(SLURM / "resnet.sbatch"), "--preset", "ci"],
                                    AI500_SRUN_ARGS="--ntasks=1", timeout=120)
    assert rc != 0, out
    assert ("MPI reports 1 process(es) but AI500_EXPECTED_SIZE=2: the ranks did not join one "
            "job") in out
    assert not (tmp_path / "runs" / f"resnet-job{job}" / "summary.json").exists()


def test_sweep_submits_one_job_per_point(cluster, tmp_path):
    result = subprocess.run(
        [str(SLURM / "sweep.sh"), "--benchmark", "fc", "--mode", "weak", "--ranks", "1,2",
         "--preset", "ci", "--out", str(tmp_path / "sweeps"), "--sweep-name", "fc-weak"],
        check=False, cwd=tmp_path, env=job_env(cluster), capture_output=True, text=True,
        timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    sweep = tmp_path / "sweeps" / "fc-weak"
    points = json.loads((sweep / "manifest.json").read_text())["points"]
    jobs = [p["job_id"] for p in points]
    assert [p["status"] for p in points] == ["submitted", "submitted"] and all(jobs), points
    statuses = wait_jobs(cluster, jobs)
    for point, ranks in zip(points, (1, 2)):
        out = job_output(tmp_path, point["job_id"])
        assert statuses[point["job_id"]] == 0, out
        assert point["run_dir"] == f"np{ranks:04d}-r01"
        check_run(sweep / point["run_dir"], ranks, out)
