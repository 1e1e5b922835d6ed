"""Run configuration: presets as data (ai500/configs/<benchmark>.yaml, or beside an out-of-tree
benchmark's module), CLI overrides, validation.

Nothing here imports TensorFlow, so `--help` and bad options answer at once.
A preset has sections that map straight onto factory arguments: `train` (the loop, below),
`model` (the model's config dataclass), `data` (the dataset's), `quality` (metric and target),
`micro` (kernel selection and repeats, micro benchmarks only). Training benchmarks must have
`train` and `quality`; micro benchmarks have neither.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import math
from collections.abc import Hashable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ai500 import registry
from ai500.errors import ConfigError
from ai500.micro.peak import check_overrides as check_peak_overrides
from ai500.precision import DTYPES, PRECISIONS, from_dtype

PRESETS = ("ci", "small", "full")
STAGES = ("memory", "stream", "auto")  # --stage (ai500.data.stream; not imported: no numpy here)
DECAYS = ("cosine", "constant")  # train.decay (ai500.workloads.schedule; not imported: no TF here)
CONFIG_DIR = Path(__file__).parent / "configs"


@dataclass(frozen=True)
class TrainSettings:
    """The training loop's knobs. Batch size is per rank (samples). lr is the rate of a global
    batch of `reference_batch` samples (by default the preset's per-rank batch, so lr is the preset's
    one-rank rate): each workload scales it with global batch / reference batch by its own rule
    (ai500.workloads.schedule). A --batch-size or --config batch_size leaves the reference alone;
    set train.reference_batch with the batch a new lr was tuned for. `decay` is what follows the
    warm-up ("cosine" to zero at the last configured epoch, or "constant"); None keeps the
    workload's own (cosine for the SGD workloads, constant for dcgan)."""

    epochs: int
    batch_size: int
    lr: float
    warmup_epochs: float = 0.0
    stop_at_target: bool = True
    reference_batch: int | None = None
    decay: str | None = None


@dataclass(frozen=True)
class QualitySettings:
    """Which globally-reduced evaluation metric is the quality target, and its Valid-FLOPS exponent."""

    metric: str
    target: float
    higher_is_better: bool = True
    vflops_exponent: float = 5.0


@dataclass(frozen=True)
class RunConfig:
    """Everything one run needs, fully resolved; written to config.json."""

    benchmark: str
    preset: str
    train: TrainSettings | None
    quality: QualitySettings | None
    model: dict[str, Any]
    data: dict[str, Any]
    micro: dict[str, Any]
    system: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    data_path: str | None = None
    out: str = "runs"
    run_name: str | None = None
    intra_threads: int | None = None
    inter_threads: int | None = None
    stall_timeout_s: float = 300.0
    # ai500.watchdog's initialisation phase (MPI start-up, data staging, model build), seconds
    init_timeout_s: float = 1800.0
    checkpoint_every: int | None = None
    resume: str | None = None
    argv: list[str] = field(default_factory=list)
    # None until the run driver resolves it for the device (ai500.precision.default_precision);
    # config.json always holds the resolved value.
    precision: str | None = None
    xla: bool = False
    # How each rank holds its data shard (ai500.data.stream): memory, stream or auto; from
    # --stage, else the preset's or --config's data.stage, else auto.
    stage: str = "auto"

    @property
    def first_epoch_timeout_s(self) -> float:
        """The watchdog's timeout for a training run's first epoch (seconds): --init-timeout, or
        the stall timeout where that is longer (tracing and compiling is never watched tighter)."""
        return max(self.init_timeout_s, self.stall_timeout_s)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> RunConfig:
        """The inverse of to_dict (a run's config.json `config`); ConfigError if it does not fit."""
        values = dict(values)
        values.setdefault("precision", "fp32")  # written before --precision: an fp32 run
        train, quality = values.get("train"), values.get("quality")
        values["train"] = settings_from(TrainSettings, train, "train") if train else None
        values["quality"] = settings_from(QualitySettings, quality, "quality") if quality else None
        return settings_from(cls, values, "config")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def _nonnegative_int(text: str) -> int:
    value = int(text) if text.lstrip("-").isdigit() else -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}")
    return value


class OneLineArgumentParser(argparse.ArgumentParser):
    """argparse that raises `error_class` (printed as one line by the caller's exit path) instead
    of printing the usage; a command line tool subclasses it to choose its error class."""

    error_class: type[Exception] = ConfigError

    def error(self, message: str) -> None:  # type: ignore[override]
        raise self.error_class(message)


def build_parser() -> argparse.ArgumentParser:
    p = OneLineArgumentParser(
        prog="python -m ai500.run",
        description="Run one HPC AI500 benchmark on every rank of an MPI job "
        "(mpirun -np N python -m ai500.run ...).",
    )
    p.add_argument("--benchmark", choices=registry.names(),
                   help="which benchmark to run (required unless --resume)")
    p.add_argument("--preset", default="small", choices=PRESETS,
                   help="problem size: ci (seconds, proves the machinery), small (minutes on a "
                   "2-core CPU, reaches its quality target), full (paper scale) [default: small]")
    p.add_argument("--out", default="runs",
                   help="parent directory of run directories [default: runs]")
    p.add_argument("--run-name", default=None,
                   help="name of the run directory under --out [default: "
                   "<benchmark>-<UTC timestamp>-np<N>]; an existing directory is never reused")
    p.add_argument("--epochs", type=_positive_int, help="maximum number of epochs")
    p.add_argument("--batch-size", type=_positive_int,
                   help="samples per rank per step (the global batch is this times the rank count)")
    p.add_argument("--lr", type=_positive_float,
                   help="learning rate of the reference batch (train.reference_batch, by default "
                   "the preset's per-rank batch on one rank); each workload scales it with global "
                   "batch / reference batch (resnet, faster_rcnn linearly, dcgan by the square root)")
    p.add_argument("--target", type=float,
                   help="quality target for the preset's quality metric (e.g. validation AUC)")
    p.add_argument("--no-stop-at-target", action="store_true",
                   help="keep training for all --epochs after the target is reached")
    p.add_argument("--seed", type=_nonnegative_int, default=0,
                   help="random seed for data, initial weights and shuffling [default: 0]")
    p.add_argument("--data", default=None,
                   help="dataset directory in the benchmark's real file layout (train*.h5, "
                   "val*.h5 for resnet); default: generate the synthetic set in memory")
    p.add_argument("--config", default=None,
                   help="YAML file whose sections (train, model, data, quality) override the "
                   "preset's, key by key")
    p.add_argument("--system", default=None,
                   help="YAML file overriding ai500/configs/system.yaml (energy meters, watts per "
                   "core for the estimate, price per node-hour)")
    p.add_argument("--no-energy", action="store_true",
                   help="do not sample energy meters (for measuring the sampler's overhead)")
    p.add_argument("--precision", default=None, choices=PRECISIONS,
                   help="fp32, or mixed precision with bf16 or fp16 arithmetic (Keras policies; "
                   "fp16 with dynamic loss scaling) [default: fp32 on a CPU; on a GPU bf16 from "
                   "compute capability 8.0, fp16 on 7.x]; for micro benchmarks the same as "
                   "--dtype float32|bfloat16|float16")
    p.add_argument("--xla", action="store_true",
                   help="training benchmarks: XLA-compile the training step's forward and "
                   "backward pass (tf.function jit_compile)")
    p.add_argument("--stage", default=None, choices=STAGES,
                   help="training benchmarks reading --data: hold each rank's shard in memory, "
                   "stream it from the files batch by batch (bounded memory, the same batches), "
                   "or auto: stream when the shard exceeds half the node's MemAvailable divided "
                   "by the ranks on the node [default: the preset's data.stage, else auto]")
    p.add_argument("--dtype", default=None, choices=("float32", "float16", "bfloat16"),
                   help="micro benchmarks: element type of the kernels [default: preset's]")
    p.add_argument("--sizes", default=None,
                   help="micro benchmarks: comma-separated size names from the preset's table "
                   "[default: all]")
    p.add_argument("--checkpoint-every", type=_positive_int, default=None, metavar="K",
                   help="write a checkpoint every K epochs and after the last one (into the run "
                   "directory), so that --resume can continue the run [default: none]")
    p.add_argument("--resume", default=None, metavar="RUN_DIR",
                   help="continue a stopped run from its last checkpoint, on any number of "
                   "ranks, appending to RUN_DIR; its config.json decides everything but "
                   + ", ".join(RESUME_OPTIONS[1:]))
    p.add_argument("--stall-timeout", type=_positive_float, default=300.0, metavar="SECONDS",
                   help="end the whole job if a rank makes no progress (no finished step, "
                   "evaluation or kernel) for this long: a rank died or hangs [default: 300]")
    p.add_argument("--init-timeout", type=_positive_float, default=1800.0, metavar="SECONDS",
                   help="end the whole job if a rank's initialisation (MPI start-up, data "
                   "staging, model build: everything before the first epoch) or its first "
                   "epoch (graph tracing, XLA compilation, up to the first evaluation's end) "
                   "makes no progress for this long [default: 1800]")
    p.add_argument("--intra-threads", type=_positive_int, default=None,
                   help="TensorFlow intra-op threads per rank [default: cores / ranks on the node]")
    p.add_argument("--inter-threads", type=_positive_int, default=None,
                   help="TensorFlow inter-op threads per rank [default: 2]")
    return p


class _StrictLoader(yaml.SafeLoader):
    """yaml.safe_load, except that a mapping naming one key twice is an error (PyYAML would
    keep the last value without a word)."""


def _mapping_once(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen = set()
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor` may repeat keys: it is
            continue  # there to be overridden
        key = loader.construct_object(key_node, deep=deep)
        if isinstance(key, Hashable) and key in seen:
            raise yaml.constructor.ConstructorError("while constructing a mapping",
                                                    node.start_mark, f"duplicate key {key!r}",
                                                    key_node.start_mark)
        if isinstance(key, Hashable):  # an unhashable key: construct_mapping says so
            seen.add(key)
    return loader.construct_mapping(node, deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_once)


def read_yaml(path: Path, what: str) -> Any:
    """A YAML file's content; ConfigError starting with `what` if it is missing, unreadable
    (a directory, not UTF-8) or not YAML (the problem and its line)."""
    try:
        return yaml.load(Path(path).read_text(encoding="utf-8"), Loader=_StrictLoader)
    except FileNotFoundError:
        raise ConfigError(f"{what}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{what}: cannot read ({getattr(exc, 'strerror', None) or exc})") from None
    except yaml.MarkedYAMLError as exc:
        where = f", line {exc.problem_mark.line + 1}" if exc.problem_mark else ""
        raise ConfigError(f"{what}: not valid YAML ({exc.problem}{where})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{what}: not valid YAML ({str(exc).splitlines()[0]})") from None


def preset_file(benchmark: str) -> Path:
    """Where a benchmark's presets are: ai500/configs/<benchmark>.yaml, or <benchmark>.yaml beside
    the module of an out-of-tree benchmark (one named in AI500_WORKLOADS, ai500.registry)."""
    if benchmark in registry.external():
        return registry.module_dir(benchmark) / f"{benchmark}.yaml"
    return CONFIG_DIR / f"{benchmark}.yaml"


def load_preset(benchmark: str, preset: str) -> dict[str, dict[str, Any]]:
    """The preset's sections, as written in the benchmark's preset file (preset_file)."""
    path = preset_file(benchmark)
    presets = read_yaml(path, str(path))
    if preset not in presets:
        raise ConfigError(f"benchmark {benchmark!r} has no preset {preset!r} "
                          f"(known: {', '.join(presets)})")
    return presets[preset]


# An override must be of the kind of the value it replaces (the sections train, quality and
# micro are checked against their dataclasses' field types instead).
_KINDS: dict[type, tuple[tuple[type, ...], str]] = {
    bool: ((bool,), "true or false"), int: ((int,), "a whole number"),
    float: ((int, float), "a number"), str: ((str,), "text"), list: ((list,), "a list"),
    dict: ((dict,), "a mapping")}


def _numbers(value: Any) -> Iterator[float]:
    """Every float in a value, its lists and mappings included."""
    if isinstance(value, float):
        yield value
    elif isinstance(value, (list, dict)):
        for item in value.values() if isinstance(value, dict) else value:
            yield from _numbers(item)


def _check_override(value: Any, like: Any, where: str) -> None:
    """ConfigError unless `value` holds only finite numbers and, where the preset has a value
    `like` (not None), is of its kind."""
    kinds, name = _KINDS.get(type(like), (None, ""))
    if kinds is not None and type(value) not in kinds:
        raise ConfigError(f"{where} must be {name} (like the preset's {like!r}), got {value!r}")
    if not all(math.isfinite(v) for v in _numbers(value)):
        raise ConfigError(f"{where} must be finite, got {value!r}")


def _merge_override(sections: dict[str, dict[str, Any]], path: str, flag: str = "--config") -> None:
    override = read_yaml(Path(path), f"{flag} {path}")
    if not isinstance(override, dict):
        raise ConfigError(f"{flag} {path}: expected a mapping of sections")
    for name, values in override.items():
        if name not in sections:
            raise ConfigError(f"{flag} {path}: unknown section {name!r} "
                              f"(known: {', '.join(sections)})")
        if not isinstance(values, dict):
            raise ConfigError(f"{flag} {path}: section {name!r} must be a mapping of keys, "
                              f"got {values!r}")
        unknown = sorted(set(values) - set(sections[name])) if flag == "--system" else []
        if unknown:
            raise ConfigError(f"{flag} {path}: unknown key(s) {', '.join(unknown)} in {name!r}")
        # train, quality and micro are checked field by field by their own dataclasses
        typed = flag == "--config" and name in ("train", "quality", "micro")
        for key, value in values.items():
            _check_override(value, None if typed else sections[name].get(key),
                            f"{flag} {path}: {name}.{key}")
        sections[name].update(values)


def settings_from(cls: type, values: dict[str, Any], section: str) -> Any:
    """A config section's values as the dataclass `cls`; ConfigError naming the section for
    unknown keys and for values the dataclass rejects (TypeError or ValueError)."""
    known = {f.name: f.type for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"section {section!r}: unknown key(s) {', '.join(unknown)}")
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"section {section!r}: {exc}") from None


def _check_types(obj: Any, section: str) -> None:
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        kind = {"int": int, "float": (int, float), "bool": bool, "str": str}.get(str(f.type))
        if kind is not None and (not isinstance(value, kind) or
                                 (kind is int and isinstance(value, bool))):
            raise ConfigError(f"section {section!r}: {f.name} must be {f.type}, got {value!r}")


def energy_settings(system: dict[str, Any]):
    """The system config's energy section as a validated `EnergyConfig`; ConfigError if impossible."""
    from ai500.metrics.energy import EnergyConfig

    e = system["energy"]
    try:
        return EnergyConfig(powercap_root=Path(e["powercap_root"]), use_nvml=bool(e["use_nvml"]),
                            watts_per_core=e["watts_per_core"], idle_watts=e["idle_watts"],
                            interval_s=e["interval_s"])
    except TypeError as exc:
        raise ConfigError(f"system config, section 'energy': {exc}") from None


def resolve(argv: list[str]) -> RunConfig:
    """Parse the command line, apply preset → --config → flags, validate; raises ConfigError."""
    args = build_parser().parse_args(argv)
    if args.resume is not None:
        return resolve_resume(argv)
    if args.benchmark is None:
        raise ConfigError("the following arguments are required: --benchmark "
                          "(or --resume RUN_DIR to continue a run)")
    preset = load_preset(args.benchmark, args.preset)
    names = ("train", "quality", "model", "data", "micro")
    sections = {name: dict(preset[name]) for name in names if name in preset}
    if args.config:
        _merge_override(sections, args.config)
    training = "train" in sections
    flags = {"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr}
    given = [f"--{k.replace('_', '-')}" for k, v in flags.items() if v is not None]
    if args.target is not None:
        given.append("--target")
    if args.no_stop_at_target:
        given.append("--no-stop-at-target")
    if args.checkpoint_every is not None:
        given.append("--checkpoint-every")
    if args.xla:
        given.append("--xla")
    if args.stage is not None:
        given.append("--stage")
    if not training and given:
        raise ConfigError(f"{', '.join(given)} not used by micro benchmark {args.benchmark!r}")
    micro_flags = {"dtype": args.dtype, "sizes": args.sizes}
    if training and any(v is not None for v in micro_flags.values()):
        raise ConfigError(f"--dtype/--sizes apply to micro benchmarks, not {args.benchmark!r} "
                          "(training benchmarks take --precision fp32|bf16|fp16)")
    if not training and args.precision is not None:
        if args.dtype is not None and args.dtype != DTYPES[args.precision]:
            raise ConfigError(f"--precision {args.precision} and --dtype {args.dtype} disagree "
                              f"(--precision {args.precision} is --dtype {DTYPES[args.precision]})")
        micro_flags["dtype"] = DTYPES[args.precision]

    train = quality = None
    if training:
        # The reference batch of lr is the preset's batch, whatever batch this run uses.
        sections["train"].setdefault("reference_batch", preset["train"].get("batch_size"))
        sections["train"].update({k: v for k, v in flags.items() if v is not None})
        if args.no_stop_at_target:
            sections["train"]["stop_at_target"] = False
        if args.target is not None:
            sections["quality"]["target"] = args.target
        train = settings_from(TrainSettings, sections["train"], "train")
        quality = settings_from(QualitySettings, sections["quality"], "quality")
        _check_types(train, "train")
        _check_types(quality, "quality")
        if train.epochs <= 0 or train.batch_size <= 0:
            raise ConfigError(f"epochs and batch size must be > 0 (got epochs={train.epochs}, "
                              f"batch size={train.batch_size})")
        if type(train.reference_batch) is not int or train.reference_batch <= 0:
            raise ConfigError(f"section 'train': reference_batch must be a whole number > 0, "
                              f"got {train.reference_batch!r}")
        if not (math.isfinite(train.lr) and train.lr > 0):
            raise ConfigError(f"learning rate must be a finite number > 0, got {train.lr}")
        if not math.isfinite(quality.target):
            raise ConfigError(f"quality target must be finite, got {quality.target}")
        if train.decay is not None and train.decay not in DECAYS:
            raise ConfigError(f"section 'train': decay must be one of {', '.join(DECAYS)}, "
                              f"got {train.decay!r}")
        if not (math.isfinite(train.warmup_epochs) and train.warmup_epochs >= 0):
            raise ConfigError(f"warm-up epochs must be a finite number >= 0, "
                              f"got {train.warmup_epochs}")
        if not (math.isfinite(quality.vflops_exponent) and quality.vflops_exponent >= 0):
            raise ConfigError(f"Valid FLOPS exponent must be a finite number >= 0, "
                              f"got {quality.vflops_exponent}")
    # data.stage is the driver's, not the dataset's: taken out of the workload's data section
    preset_stage = sections.get("data", {}).pop("stage", "auto")
    stage = args.stage or preset_stage
    if stage not in STAGES:
        raise ConfigError(f"data.stage must be one of {', '.join(STAGES)}, got {stage!r}")
    micro = sections.get("micro", {})
    micro.update({k: v for k, v in micro_flags.items() if v is not None})
    precision = args.precision
    if not training:  # a micro benchmark's precision is its element type
        precision = from_dtype(micro["dtype"]) if micro.get("dtype") in DTYPES.values() else None
    if args.data is not None and not Path(args.data).exists():
        raise ConfigError(f"--data {args.data}: no such file or directory")
    if args.data is not None and not Path(args.data).is_dir():
        raise ConfigError(f"--data {args.data}: not a directory (the dataset's directory, "
                          "holding its train* and val* files)")
    system = read_yaml(CONFIG_DIR / "system.yaml", str(CONFIG_DIR / "system.yaml"))
    if args.system:
        _merge_override(system, args.system, flag="--system")
        price = system["cost"]["price_per_node_hour"]
        if price is not None and (type(price) not in (int, float) or price < 0):
            raise ConfigError(f"--system {args.system}: cost.price_per_node_hour must be >= 0 "
                              f"(a number, or null for no price), got {price!r}")
    if args.no_energy:
        system["energy"]["enabled"] = False
    energy_settings(system)  # reject impossible values here, on every rank, before MPI starts
    check_peak_overrides(system.get("peak"),
                         f"--system {args.system}" if args.system else "system config")

    return RunConfig(
        benchmark=args.benchmark, preset=args.preset, train=train, quality=quality,
        model=sections.get("model", {}), data=sections.get("data", {}), micro=micro, system=system,
        seed=args.seed, data_path=args.data, out=args.out, run_name=args.run_name,
        intra_threads=args.intra_threads, inter_threads=args.inter_threads,
        stall_timeout_s=args.stall_timeout, init_timeout_s=args.init_timeout,
        checkpoint_every=args.checkpoint_every,
        argv=list(argv), precision=precision, xla=args.xla, stage=stage,
    )


# What a resumed run may change: where the data lives (the same dataset, moved; ai500 cannot
# check that it is the same), how it is run and watched (--stage: the same batches either way),
# and how often it checkpoints. Everything that decides what is trained comes from config.json.
# --epochs is not among them: the resnet schedule's cosine decay spans the configured epochs, so
# changing them mid-run would make a learning-rate curve no uninterrupted run has.
RESUME_OPTIONS = ("--resume", "--data", "--checkpoint-every", "--stall-timeout", "--init-timeout",
                  "--intra-threads", "--inter-threads", "--no-energy", "--stage")


def resolve_resume(argv: list[str]) -> RunConfig:
    """The config of the run in --resume RUN_DIR (its config.json) with the options a resume may
    change; ConfigError for any other option, or a directory that is not a training run."""
    from ai500 import rundir

    parser = build_parser()
    dests = vars(parser.parse_args(["--resume", "-"]))
    unset = object()  # a default no option can produce (argparse would parse a string default)
    parser.set_defaults(**dict.fromkeys(dests, unset))
    given = {key: value for key, value in vars(parser.parse_args(argv)).items() if value is not unset}
    allowed = {flag.lstrip("-").replace("-", "_") for flag in RESUME_OPTIONS}
    refused = sorted(f"--{key.replace('_', '-')}" for key in set(given) - allowed)
    if refused:
        raise ConfigError(f"{', '.join(refused)} cannot be changed by --resume, which continues "
                          f"the run as its config.json describes (allowed with --resume: "
                          f"{', '.join(RESUME_OPTIONS[1:])})")
    run_dir = Path(given["resume"])
    record = rundir.read_record(run_dir)
    if record.get("kind") != "training":
        raise ConfigError(f"--resume {run_dir}: a {record.get('kind')} benchmark run; only "
                          "training runs have checkpoints")
    cfg = RunConfig.from_dict(record["config"])
    system = copy.deepcopy(cfg.system)
    if given.get("no_energy"):
        system["energy"]["enabled"] = False
    data_path = given.get("data", cfg.data_path)
    if data_path is not None and not Path(data_path).exists():
        raise ConfigError(f"data {data_path}: no such file or directory (with --resume, --data "
                          "gives the run's dataset at its new place)")
    return dataclasses.replace(
        cfg, system=system, data_path=data_path, out=str(run_dir.resolve().parent),
        run_name=run_dir.resolve().name, resume=str(run_dir.resolve()),
        stall_timeout_s=given.get("stall_timeout", cfg.stall_timeout_s),
        init_timeout_s=given.get("init_timeout", cfg.init_timeout_s),
        intra_threads=given.get("intra_threads", cfg.intra_threads),
        inter_threads=given.get("inter_threads", cfg.inter_threads),
        checkpoint_every=given.get("checkpoint_every", cfg.checkpoint_every), argv=list(argv),
        stage=given.get("stage", cfg.stage))
