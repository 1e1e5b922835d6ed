"""Benchmark name → workload module: the one place a new benchmark is added.

Each module named here defines `Workload`, a class built as `Workload(cfg, dist)` that follows
the protocol in `ai500.workloads`. Modules are imported only when asked for, so listing names
(for --help) does not import TensorFlow.

A benchmark in this package is one line of WORKLOADS, its presets ai500/configs/<name>.yaml.
A benchmark outside it (out-of-tree) is named in the environment variable AI500_WORKLOADS as
comma-separated `name=module.path` entries; its module must be importable on every rank (its
directory on PYTHONPATH) and its presets are <name>.yaml beside the module. docs/architecture.md
walks through both.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType

from ai500.errors import ConfigError

WORKLOADS: dict[str, str] = {
    "resnet": "ai500.workloads.resnet",
    "dcgan": "ai500.workloads.dcgan",
    "faster_rcnn": "ai500.workloads.faster_rcnn",
    "conv": "ai500.workloads.micro",
    "fc": "ai500.workloads.micro",
    "pool": "ai500.workloads.micro",
    "micro": "ai500.workloads.micro",
}
ENV_VAR = "AI500_WORKLOADS"


def external(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The out-of-tree benchmarks named in AI500_WORKLOADS ("name=module.path,..."), name → module;
    ConfigError for an entry that is not name=module.path, a name given twice or a built-in name."""
    env = os.environ if environ is None else environ
    found: dict[str, str] = {}
    for entry in env.get(ENV_VAR, "").split(","):
        if not entry.strip():
            continue
        name, sep, module = (part.strip() for part in entry.partition("="))
        if not (sep and name and module and all(p.isidentifier() for p in module.split("."))):
            raise ConfigError(f"{ENV_VAR}: {entry.strip()!r} is not name=module.path")
        if name in WORKLOADS or name in found:
            what = "a built-in benchmark" if name in WORKLOADS else "named twice"
            raise ConfigError(f"{ENV_VAR}: {name!r} is {what}")
        found[name] = module
    return found


def names() -> list[str]:
    """Benchmark names accepted by --benchmark: the built-in ones, then AI500_WORKLOADS'."""
    return [*WORKLOADS, *external()]


def load(name: str) -> ModuleType:
    """The workload module for a benchmark name (imports TensorFlow)."""
    return importlib.import_module({**WORKLOADS, **external()}[name])


def module_dir(name: str) -> Path:
    """The directory of an out-of-tree benchmark's module, found without running the module (so
    without TensorFlow); ConfigError if it cannot be found."""
    module = external()[name]
    try:
        spec = importlib.util.find_spec(module)
    except ImportError:  # a parent package is missing
        spec = None
    if spec is None or spec.origin is None:
        raise ConfigError(f"{ENV_VAR}: {name}={module}: no module {module} "
                          "(is its directory on PYTHONPATH?)")
    return Path(spec.origin).parent
