"""Benchmark name → workload module: the one place a new benchmark is added.

Each module named here defines `Workload`, a class built as `Workload(cfg, dist)` that follows
the protocol in `ai500.workloads`. Modules are imported only when asked for, so listing names
(for --help) does not import TensorFlow.
"""

from __future__ import annotations

import importlib
from types import ModuleType

WORKLOADS: dict[str, str] = {
    "resnet": "ai500.workloads.resnet",
    "dcgan": "ai500.workloads.dcgan",
    "faster_rcnn": "ai500.workloads.faster_rcnn",
    "conv": "ai500.workloads.micro",
    "fc": "ai500.workloads.micro",
    "pool": "ai500.workloads.micro",
    "micro": "ai500.workloads.micro",
}


def names() -> list[str]:
    """Benchmark names accepted by --benchmark."""
    return list(WORKLOADS)


def load(name: str) -> ModuleType:
    """The workload module for a benchmark name (imports TensorFlow)."""
    return importlib.import_module(WORKLOADS[name])
