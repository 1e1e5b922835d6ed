"""Scaling sweep: one ai500 run per rank count and repeat, under one sweep directory with a manifest.

    python launch/sweep.py --benchmark resnet --mode weak --ranks 1,2,4 [--preset small]
        [--seeds K | --seeds S1,S2,...] [--repeats 3] [--out runs]
        [--launcher mpirun|srun|slurm|local] [--ntasks-per-node K]
        [--dry-run] [--report]
        [--global-batch G | --batch-size B] [--timeout S] [-- extra ai500.run arguments]

Batch rules (recorded in the manifest, so the report never guesses which scaling it shows):
- weak: the per-rank batch is fixed (--batch-size, or the preset's); the global batch grows with N.
- strong: the global batch G is fixed and divided among the ranks: --global-batch G, or by
  default the per-rank batch (--batch-size or the preset's) times the largest rank count, so the
  largest point runs at the preset's per-rank batch. A G that does not divide by every N is an
  error before anything runs. Only --batch-size G/N differs between the points.
- micro benchmarks have no batch: every rank times the same kernels (weak mode only).
The sweep never sets --lr: each run scales its rate with global batch / reference batch (the
preset's per-rank batch) by its workload's rule (ai500.workloads.schedule), so all points of a
strong sweep run one learning-rate schedule, and weak scaling at the preset's batch scales it by N.

Seeds: --seeds K runs every N with seeds 0 .. K-1, --seeds 3,7,11 with those seeds (one seed:
--seeds 7, with the trailing comma); each is passed to ai500.run as --seed S and recorded in the
manifest (point field `seed`). With --repeats R every (N, seed) runs R times. Without --seeds
each point runs the seed of a --seed after `--` (default 0, ai500.run's), also recorded.

Layout: <out>/<benchmark>-<mode>-<UTC timestamp>/ holds manifest.json, one run directory per
point named np<N>-r<repeat> (e.g. np0004-r01), or np<N>-s<seed>-r<repeat> with --seeds (e.g.
np0002-s03-r01), and logs/<name>.log with each point's output. Points are interleaved (every N
once, then again; with seeds: repeat, then seed, then N outermost to innermost) so slow drifts of
the machine spread over all N and seeds. A failed point is recorded and the sweep goes on; the
exit status is non-zero if any failed.
With --launcher slurm each point is one `sbatch` of slurm/<benchmark>.sbatch (submitted, not
waited for); the manifest records the job ids. --ntasks-per-node K places K ranks on each node
(default: the script's #SBATCH --ntasks-per-node), so N ranks span N/K nodes.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

if __package__ in (None, ""):  # run as `python launch/sweep.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ai500 import config
from launch import launchers

MANIFEST_SCHEMA_VERSION = 1
ROOT = Path(__file__).resolve().parents[1]
# Batch scripts by benchmark (slurm/ holds one per component benchmark and one for all micro ones).
SBATCH_SCRIPTS = {"resnet": "resnet.sbatch", "dcgan": "dcgan.sbatch",
                  "faster_rcnn": "faster_rcnn.sbatch", "conv": "micro.sbatch",
                  "fc": "micro.sbatch", "pool": "micro.sbatch", "micro": "micro.sbatch"}
# ai500.run options the sweep sets itself, and the sweep option to use instead.
RESERVED = {"--benchmark": "--benchmark", "--preset": "--preset", "--out": "--out",
            "--run-name": "(set per point)", "--batch-size": "--batch-size or --global-batch"}


class SweepError(Exception):
    """A sweep that cannot be planned; printed as one line before anything runs."""


@dataclass
class Point:
    """One run of the sweep: N ranks, one seed, one repeat."""

    name: str
    ranks: int
    repeat: int
    seed: int
    per_rank_batch: int | None
    global_batch: int | None
    command: list[str]
    oversubscribed: bool | None
    cores: int | None
    run_dir: str
    log: str
    status: str = "pending"  # pending, ok, failed, submitted, interrupted
    exit_status: int | None = None
    wall_s: float | None = None
    job_id: str | None = None
    problem: str | None = None
    started_utc: str | None = None


@dataclass
class Plan:
    """Everything the sweep will do, decided before anything runs."""

    benchmark: str
    preset: str
    mode: str
    ranks: list[int]
    repeats: int
    seeds: list[int] | None  # --seeds; None: one seed, the run's own (see Point.seed)
    batch_rule: dict
    launcher: dict
    extra_args: list[str]
    sweep_dir: Path
    dry_run: bool = False
    report: bool = False
    timeout: float | None = None
    command: list[str] = field(default_factory=list)  # this sweep's command line
    points: list[Point] = field(default_factory=list)


def parse_ranks(text: str) -> list[int]:
    try:
        ranks = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise SweepError(f"--ranks {text!r}: expected comma-separated whole numbers, "
                         "e.g. 1,2,4") from None
    if not ranks or ranks[0] < 1:
        raise SweepError(f"--ranks {text!r}: rank counts must be >= 1")
    return ranks


def parse_seeds(text: str) -> list[int]:
    """--seeds: `K` is seeds 0 .. K-1; a comma-separated list (`3,7` or `7,`) is those seeds, in
    that order; SweepError for anything else."""
    parts = [part.strip() for part in text.split(",")]
    try:
        values = [int(part) for part in parts if part]
    except ValueError:
        values = []
    if not values or any(v < 0 for v in values):
        raise SweepError(f"--seeds {text!r}: expected a count K >= 1 (seeds 0..K-1) or "
                         "comma-separated seeds >= 0, e.g. 0,1,2")
    if "," not in text:
        if values[0] < 1:
            raise SweepError(f"--seeds {text!r}: the count of seeds must be >= 1")
        return list(range(values[0]))
    if len(set(values)) != len(values):
        raise SweepError(f"--seeds {text!r}: a seed is listed twice (use --repeats to rerun one)")
    return values


class _Parser(config.OneLineArgumentParser):
    error_class = SweepError


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="python launch/sweep.py",
        description="Run one ai500 benchmark at several rank counts (weak or strong scaling); "
        "arguments after `--` go to every `python -m ai500.run`.")
    p.add_argument("--benchmark", required=True, help="benchmark name (as for ai500.run)")
    p.add_argument("--mode", required=True, choices=("weak", "strong"),
                   help="weak: per-rank batch fixed; strong: global batch fixed, divided among ranks")
    p.add_argument("--ranks", default="1,2", help="comma-separated rank counts [default: 1,2]")
    p.add_argument("--preset", default="small", help="ai500.run preset [default: small]")
    p.add_argument("--seeds", default=None, metavar="K|S1,S2,...",
                   help="run every N with seeds 0..K-1 (or the listed seeds), each passed as "
                   "ai500.run --seed [default: one seed, ai500.run's]")
    p.add_argument("--repeats", type=int, default=1,
                   help="runs per rank count (per seed with --seeds) [default: 1]")
    p.add_argument("--out", default="runs", help="parent of the sweep directory [default: runs]")
    p.add_argument("--sweep-name", default=None,
                   help="sweep directory name [default: <benchmark>-<mode>-<UTC timestamp>]")
    p.add_argument("--launcher", default="mpirun", choices=launchers.names(),
                   help="how ranks are started [default: mpirun]")
    p.add_argument("--ntasks-per-node", type=int, default=None, metavar="K",
                   help="--launcher slurm: ranks per node (sbatch --ntasks-per-node), so N ranks "
                   "span N/K nodes [default: the batch script's]")
    p.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    p.add_argument("--report", action="store_true",
                   help="after the sweep, write the scaling report to <sweep dir>/report "
                   "(python -m ai500.report)")
    p.add_argument("--timeout", type=float, default=None,
                   help="seconds after which a point is stopped and counted as failed")
    batch = p.add_mutually_exclusive_group()
    batch.add_argument("--global-batch", type=int, default=None,
                       help="strong mode: the fixed global batch [default: per-rank batch x "
                       "largest rank count]")
    batch.add_argument("--batch-size", type=int, default=None,
                       help="per-rank batch (weak mode), or the per-rank batch at the largest "
                       "rank count (strong mode) [default: the preset's]")
    return p


def split_extra(argv: list[str]) -> tuple[list[str], list[str]]:
    """The sweep's own arguments and the ai500.run arguments after `--`."""
    if "--" in argv:
        i = argv.index("--")
        return argv[:i], argv[i + 1:]
    return argv, []


def _option_value(args: list[str], name: str) -> tuple[str | None, list[str]]:
    """The value of `name` in args (`--x V` or `--x=V`, last wins) and args without it."""
    value, rest, i = None, [], 0
    while i < len(args):
        if args[i] == name and i + 1 < len(args):
            value, i = args[i + 1], i + 2
        elif args[i].startswith(name + "="):
            value, i = args[i].split("=", 1)[1], i + 1
        else:
            rest.append(args[i])
            i += 1
    return value, rest


def _load_preset(benchmark: str, preset: str) -> dict:
    from ai500 import registry
    from ai500.errors import Ai500Error

    if benchmark not in registry.names():
        raise SweepError(f"unknown benchmark {benchmark!r} (known: {', '.join(registry.names())})")
    try:
        return config.load_preset(benchmark, preset)
    except (Ai500Error, FileNotFoundError) as exc:
        raise SweepError(str(exc)) from None


def batch_rule(mode: str, ranks: list[int], preset: dict, batch_size: int | None,
               global_batch: int | None) -> dict:
    """Per-rank and global batch for every N, and the rule in words; SweepError if impossible."""
    train = preset.get("train")
    if train is None:  # micro benchmark
        if mode != "weak":
            raise SweepError("micro benchmarks have no global batch to hold fixed: use --mode weak")
        if batch_size is not None or global_batch is not None:
            raise SweepError("micro benchmarks take no --batch-size/--global-batch")
        return {"rule": "micro benchmark: every rank times the same kernel sizes (per-rank work "
                "fixed)", "per_rank_batch": {}, "global_batch": {}}
    for name, value in (("--batch-size", batch_size), ("--global-batch", global_batch)):
        if value is not None and value < 1:
            raise SweepError(f"{name} must be >= 1, got {value}")
    b0 = int(train["batch_size"])
    lr_rule = ("; each run scales its learning rate with global batch / train.reference_batch "
               "(default: the preset's per-rank batch) by its workload's rule")
    if mode == "weak":
        if global_batch is not None:
            raise SweepError("--global-batch fixes the global batch, which is strong scaling; "
                             "weak mode takes --batch-size (per rank)")
        b = batch_size or b0
        return {"rule": f"weak scaling: per-rank batch fixed at {b}"
                + (" (preset)" if batch_size is None else " (--batch-size)")
                + "; global batch = per-rank batch x N" + lr_rule,
                "per_rank_batch": {n: b for n in ranks}, "global_batch": {n: b * n for n in ranks}}
    if global_batch is not None:
        g, source = global_batch, "--global-batch"
    else:
        g = (batch_size or b0) * max(ranks)
        source = (f"{'--batch-size' if batch_size else 'preset per-rank batch'} {batch_size or b0}"
                  f" x largest rank count {max(ranks)}")
    bad = [n for n in ranks if g % n]
    if bad:
        raise SweepError(f"strong scaling: global batch {g} does not divide evenly among "
                         f"{', '.join(map(str, bad))} rank(s); choose a --global-batch that "
                         f"every rank count in --ranks divides")
    return {"rule": f"strong scaling: global batch fixed at {g} ({source}), divided among the "
            f"ranks" + lr_rule + ", so every N runs the same learning-rate schedule",
            "per_rank_batch": {n: g // n for n in ranks}, "global_batch": {n: g for n in ranks}}


def check_run_args(name: str, run_args: list[str], base: Path | None) -> config.RunConfig:
    """The point's RunConfig as ai500.run resolves it; SweepError if ai500.run would refuse the
    arguments (checked here with its own parser, which needs no MPI), so a bad option stops the
    sweep before any point runs. A relative --data is taken from `base` where the jobs run from
    there (sbatch: the checkout)."""
    from ai500.errors import Ai500Error

    data, rest = _option_value(run_args, "--data")
    if data is not None and base is not None and not Path(data).is_absolute():
        run_args = [*rest, "--data", str(base / data)]
    try:
        return config.resolve(run_args)
    except Ai500Error as exc:
        raise SweepError(f"point {name}: ai500.run would refuse its arguments: {exc}") from None


def point_name(ranks: int, repeat: int, seed: int | None = None) -> str:
    """np0004-r01, or with a seed of a --seeds sweep np0004-s03-r01."""
    return f"np{ranks:04d}" + ("" if seed is None else f"-s{seed:02d}") + f"-r{repeat:02d}"


def make_plan(argv: list[str], now: float | None = None) -> tuple[Plan, launchers.Launcher]:
    own, extra = split_extra(argv)
    args = build_parser().parse_args(own)
    ranks = parse_ranks(args.ranks)
    if args.repeats < 1:
        raise SweepError(f"--repeats must be >= 1, got {args.repeats}")
    seeds = None if args.seeds is None else parse_seeds(args.seeds)
    if seeds is not None and any(a == "--seed" or a.startswith("--seed=") for a in extra):
        raise SweepError("--seed after `--` conflicts with the sweep's --seeds; use one of them")
    if args.timeout is not None and not (math.isfinite(args.timeout) and args.timeout > 0):
        raise SweepError(f"--timeout must be a finite number of seconds > 0, got {args.timeout}")
    if args.sweep_name is not None and (Path(args.sweep_name).name != args.sweep_name
                                        or args.sweep_name in ("", ".", "..")):
        raise SweepError(f"--sweep-name {args.sweep_name!r}: a plain directory name, no path "
                         "(--out gives the parent)")
    for option, instead in RESERVED.items():
        if any(a == option or a.startswith(option + "=") for a in extra):
            raise SweepError(f"{option} after `--` is set by the sweep; use the sweep's {instead}")
    preset = _load_preset(args.benchmark, args.preset)
    rule = batch_rule(args.mode, ranks, preset, args.batch_size, args.global_batch)

    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
    sweep_dir = Path(args.out) / (args.sweep_name or f"{args.benchmark}-{args.mode}-{stamp}")
    out_arg = str(sweep_dir)
    if args.launcher == "slurm":
        # sbatch runs from the repository root (where slurm/ is), so paths are absolute.
        script = f"slurm/{SBATCH_SCRIPTS.get(args.benchmark, args.benchmark + '.sbatch')}"
        if not args.dry_run and not (ROOT / script).exists():
            raise SweepError(f"no batch script {ROOT / script} for benchmark {args.benchmark!r}")
        out_arg = str(sweep_dir.resolve())
        launcher = launchers.get("slurm", script=script, ntasks_per_node=args.ntasks_per_node)
    else:
        launcher = launchers.get(args.launcher)
    if args.ntasks_per_node is not None and (args.launcher != "slurm" or args.ntasks_per_node < 1):
        raise SweepError("--ntasks-per-node takes a whole number >= 1 and only --launcher slurm "
                         f"(got {args.ntasks_per_node} with --launcher {args.launcher})")
    if args.launcher == "local" and ranks != [1]:
        raise SweepError("the local launcher runs one rank only: use --ranks 1 or --launcher mpirun")

    plan = Plan(benchmark=args.benchmark, preset=args.preset, mode=args.mode, ranks=ranks,
                repeats=args.repeats, seeds=seeds, batch_rule=rule, launcher=launcher.describe(),
                extra_args=list(extra), sweep_dir=sweep_dir, dry_run=args.dry_run,
                report=args.report, timeout=args.timeout,
                command=["python", "launch/sweep.py", *argv])
    # Repeat, then seed, then N (outermost first): every N once per seed, so drifts spread.
    for repeat, seed, n in ((r, s, n) for r in range(1, args.repeats + 1)
                            for s in (seeds or [None]) for n in ranks):
        name = point_name(n, repeat, seed)
        run_args = ["--benchmark", args.benchmark, "--preset", args.preset,
                    "--out", out_arg, "--run-name", name]
        if n in rule["per_rank_batch"]:
            run_args += ["--batch-size", str(rule["per_rank_batch"][n])]
        if seed is not None:
            run_args += ["--seed", str(seed)]
        run_args += extra
        cfg = check_run_args(name, run_args, ROOT if args.launcher == "slurm" else None)
        prefix = ["-m", "ai500.run"] if launcher.starts_python else []
        plan.points.append(Point(
            name=name, ranks=n, repeat=repeat, seed=cfg.seed,
            per_rank_batch=rule["per_rank_batch"].get(n),
            global_batch=rule["global_batch"].get(n),
            command=launcher.command(n, prefix + run_args),
            oversubscribed=launcher.oversubscribed(n),
            cores=getattr(launcher, "cores", None),
            run_dir=name, log=f"logs/{name}.log"))
    return plan, launcher


def manifest(plan: Plan, status: str) -> dict:
    """The sweep manifest (manifest.json): what was asked, how, and what each point did."""
    return {
        "schema_version": MANIFEST_SCHEMA_VERSION,
        "kind": "ai500-sweep",
        "status": status,
        "benchmark": plan.benchmark,
        "preset": plan.preset,
        "mode": plan.mode,
        "ranks": plan.ranks,
        "repeats": plan.repeats,
        "seeds": plan.seeds,
        "batch_rule": {"rule": plan.batch_rule["rule"],
                       **{k: {str(n): v for n, v in plan.batch_rule[k].items()}
                          for k in ("per_rank_batch", "global_batch")}},
        "launcher": plan.launcher,
        "extra_args": plan.extra_args,
        "command": plan.command,
        "host": socket.gethostname(),
        "cores": plan.launcher.get("cores"),
        "oversubscribed": any(p.oversubscribed for p in plan.points),
        "points": [asdict(p) for p in plan.points],
    }


def write_manifest(plan: Plan, status: str) -> None:
    path = plan.sweep_dir / "manifest.json"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(manifest(plan, status), indent=2) + "\n")
    os.replace(tmp, path)


def run_point(plan: Plan, point: Point, launcher: launchers.Launcher) -> None:
    """Run (or submit) one point and record what happened in `point`."""
    env = {**os.environ}
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    log_path = plan.sweep_dir / point.log
    point.started_utc = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    t0 = time.perf_counter()
    try:
        with log_path.open("w") as log:
            log.write("$ " + shlex.join(point.command) + "\n")
            log.flush()
            slurm = launcher.name == "slurm"  # sbatch answers with the job id: keep it
            result = subprocess.run(point.command, check=False, text=True, env=env,
                                    stdout=subprocess.PIPE if slurm else log,
                                    stderr=subprocess.STDOUT, timeout=plan.timeout,
                                    cwd=ROOT if slurm else None)
            if result.stdout:
                log.write(result.stdout)
        point.exit_status = result.returncode
    except subprocess.TimeoutExpired:
        point.exit_status, point.problem = None, f"stopped after the {plan.timeout:g} s timeout"
    except OSError as exc:
        point.exit_status, point.problem = None, f"could not start: {exc}"
    point.wall_s = time.perf_counter() - t0
    if launcher.name == "slurm":
        if point.exit_status == 0:
            point.status = "submitted"
            point.job_id = (result.stdout or "").strip().split(";")[0] or None
        else:
            point.status = "failed"
            point.problem = point.problem or f"sbatch exited with status {point.exit_status}"
        return
    summary_path = plan.sweep_dir / point.run_dir / "summary.json"
    run_status = None
    if summary_path.exists():
        try:
            summary = json.loads(summary_path.read_text())
            run_status = summary.get("status") if isinstance(summary, dict) else "unreadable"
        except (OSError, ValueError):
            run_status = "unreadable"
    if point.exit_status == 0 and run_status == "ok":
        point.status = "ok"
        return
    point.status = "failed"
    if point.problem is None:
        point.problem = (f"exit status {point.exit_status}" +
                         ("" if run_status == "ok" else
                          ", no summary.json" if run_status is None else
                          f", summary status {run_status!r}"))


def execute(plan: Plan, launcher: launchers.Launcher) -> int:
    try:
        plan.sweep_dir.mkdir(parents=True, exist_ok=False)
        (plan.sweep_dir / "logs").mkdir()
    except FileExistsError:
        print(f"sweep: error: sweep directory {plan.sweep_dir} already exists; refusing to reuse "
              "it (choose another --sweep-name)", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"sweep: error: cannot create the sweep directory {plan.sweep_dir} "
              f"({exc.strerror or exc})", file=sys.stderr)
        return 2
    write_manifest(plan, "running")
    print(f"sweep {plan.sweep_dir}: {plan.benchmark} ({plan.preset}), {plan.mode} scaling, "
          f"ranks {plan.ranks} x {plan.repeats} repeat(s)"
          + (f" x seeds {plan.seeds}" if plan.seeds else ""), flush=True)
    print(f"  {plan.batch_rule['rule']}", flush=True)
    over = [p.ranks for p in plan.points if p.oversubscribed]
    if over:
        print(f"  note: {sorted(set(over))} rank(s) exceed this node's {plan.launcher.get('cores')} "
              "cores: those points run oversubscribed (--oversubscribe --bind-to none)", flush=True)
    try:
        for point in plan.points:
            run_point(plan, point, launcher)
            write_manifest(plan, "running")
            detail = f" ({point.problem}; see {plan.sweep_dir / point.log})" if point.problem else ""
            print(f"  {point.name}: {point.status} in {point.wall_s:.1f} s{detail}", flush=True)
    except KeyboardInterrupt:
        for point in plan.points:
            if point.status == "pending":
                point.status = "interrupted"
        write_manifest(plan, "interrupted")
        print("sweep: interrupted; manifest written", file=sys.stderr)
        return 130
    failed = [p.name for p in plan.points if p.status == "failed"]
    write_manifest(plan, "failed" if failed else "complete")
    if failed:
        print(f"sweep: {len(failed)} of {len(plan.points)} point(s) failed: {', '.join(failed)}",
              file=sys.stderr)
    command = f"python -m ai500.report {plan.sweep_dir} --out {plan.sweep_dir / 'report'}"
    if launcher.name == "slurm":
        print(f"submitted; when the jobs finish: {command}")
    elif plan.report:
        from ai500 import report

        if report.main([str(plan.sweep_dir), "--out", str(plan.sweep_dir / "report")]) != 0:
            return 1
    else:
        print(f"report: {command}")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        plan, launcher = make_plan(argv)
        if not plan.dry_run and plan.sweep_dir.exists():
            raise SweepError(f"sweep directory {plan.sweep_dir} already exists; "
                             "refusing to reuse it (choose another --sweep-name)")
    except (SweepError, ValueError) as exc:
        print(f"sweep: error: {exc}", file=sys.stderr)
        return 2
    if plan.dry_run:
        for point in plan.points:
            print(shlex.join(point.command))
        return 0
    return execute(plan, launcher)


if __name__ == "__main__":
    sys.exit(main())
