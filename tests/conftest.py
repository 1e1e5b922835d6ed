"""Shared test helpers: the repo root, and a launcher for real `mpirun` runs of ai500."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def mpirun(np_: int, args: list[str], timeout: float = 300, env: dict | None = None,
           cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run `mpirun -np N python -m ai500.run ARGS` and return the finished process."""
    cmd = ["mpirun", "--allow-run-as-root", "--oversubscribe", "--bind-to", "none",
           "-np", str(np_), sys.executable, "-m", "ai500.run", *args]
    full_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})}
    return subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=timeout, env=full_env,
                          cwd=cwd or ROOT)


def wait_for_lock_holder_to_exit(run: Path, timeout: float = 60) -> None:
    """mpirun can return while a killed run's rank 0 is still exiting; a resume must wait for it
    (its lock is still held until then)."""
    from ai500 import rundir

    deadline = time.monotonic() + timeout
    while (lock := rundir.read_lock(run)) is not None and lock.alive():
        assert time.monotonic() < deadline, "the interrupted run's rank 0 never exited"
        time.sleep(0.5)


def checkpoint_state(run: Path) -> dict:
    """Every variable of a run's latest checkpoint (weights, optimizer slots, loss scale), by key."""
    import tensorflow as tf

    from ai500 import checkpoint

    manifest = json.loads((run / checkpoint.MANIFEST_NAME).read_text())
    reader = tf.train.load_checkpoint(str(run / manifest["path"] / checkpoint.STATE_PREFIX))
    return {key: reader.get_tensor(key) for key in reader.get_variable_to_shape_map()
            if key != "_CHECKPOINTABLE_OBJECT_GRAPH"}


def python_module(module: str, args: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
    """Run `python -m MODULE ARGS` (one process, no mpirun)."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, "-m", module, *args], check=False, capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=ROOT)


def run_record(run_id: str = "run1", price_per_node_hour: float = 2.0) -> dict:
    """A hand-made config.json of a finished 2-rank resnet ci run on one node ("a"), for tests
    that write traces themselves instead of training."""
    return {
        "run_id": run_id, "kind": "training",
        "config": {"benchmark": "resnet", "preset": "ci", "seed": 0, "train": {"batch_size": 10},
                   "quality": {"metric": "val_auc", "target": 0.8, "higher_is_better": True,
                               "vflops_exponent": 5.0},
                   "system": {"energy": {"enabled": True},
                              "cost": {"price_per_node_hour": price_per_node_hour,
                                       "currency": "EUR"}}},
        "dist": {"size": 2, "hosts": ["a", "a"], "nodes": 1},
        "flops_per_sample": {"forward": 100.0, "train": 300.0, "method": "test"},
    }


def only_run_dir(out: Path) -> Path:
    dirs = [p for p in out.iterdir() if p.is_dir()]
    assert len(dirs) == 1, dirs
    return dirs[0]


def load_summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


@pytest.fixture(scope="session")
def hep_ci_data(tmp_path_factory) -> Path:
    """A small HEP dataset in the real layout, generated once per test session."""
    out = tmp_path_factory.mktemp("hep") / "ci"
    result = python_module("ai500.data", ["generate", "hep", "--preset", "ci", "--out", str(out)])
    assert result.returncode == 0, result.stderr
    return out
