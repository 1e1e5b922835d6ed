"""Fuzz the file readers with randomly truncated, bit-flipped and zero-filled copies of small valid
files: every reader must either read the file (and then its own validation must hold: right shapes,
finite values) or fail with one clear line (DataError: `ai500: error: <file>: <problem>`, exit 1),
never with a traceback, a hang or a crashed interpreter.

The readers run in a subprocess (this file run as a script) that reports one JSON line per mutated
file; a process that dies or hangs is caught, the file it was on is the culprit, and the files after
it are read again in a fresh process. Mutations come from a fixed seed, so a failure reproduces.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path

import numpy as np
import pytest
from conftest import run_record

SEED = 20240609
MUTATIONS = 50  # per reader
BATCH_TIMEOUT_S = 60.0
IMAGE = 8  # image size of the tiny datasets
EVENTS = 12  # events / maps per tiny dataset file
WEATHER_FIELD, WEATHER_SAMPLES = 16, 3  # the smallest climate fields weather_synthetic writes
READERS = ("trace", "aggregate", "hep", "cosmo", "weather")


# ---------------------------------------------------------------------------------------------
# Valid inputs


def write_run(run_dir: Path) -> None:
    """A finished 2-rank training run: config.json and two traces, as ai500.run leaves them."""
    from ai500.trace import TraceWriter, trace_name

    run_dir.mkdir(parents=True)
    (run_dir / "config.json").write_text(json.dumps(run_record("fuzzrun")))
    for rank in (0, 1):
        w = TraceWriter(run_dir / trace_name(rank), {
            "run_id": "fuzzrun", "benchmark": "resnet", "rank": rank, "size": 2, "local_rank": rank,
            "local_size": 2, "host": "a", "pid": 100 + rank, "config": {"benchmark": "resnet"},
            "wall_start": 1.7e9, "init_seconds": 3.0 + rank})
        if rank == 0:
            w.set_group("energy", {"t": np.array([-1.0, 5.0, 40.0]),
                                   "estimated:node": np.array([0.0, 60.0, 410.0])})
        for epoch in range(3):
            t = 10.0 * epoch
            w.add_epoch({"epoch": epoch, "t_ready": t, "t_start": t, "t_train_end": t + 4.0 + rank, "t_eval_start": t + 4.0 + rank,
                         "t_eval_end": t + 5.5 + rank, "samples": 100, "train_loss": 0.5,
                         "val_auc": 0.6 + 0.1 * epoch})
            for step in range(4):
                w.add_step(t + step, t + step + 0.9, 25)
            w.add_system(t + 5.5, 95.0, 2e8)
        w.close("ok")


def write_datasets(root: Path) -> dict[str, Path]:
    """Tiny valid dataset files of every reader, by reader name."""
    from ai500.data import cosmo, hep, weather_synthetic

    files = {"hep": root / "hep" / "train.h5", "cosmo": root / "cosmo" / "train.npy",
             "weather": root / "weather" / "train.h5"}
    for path in files.values():
        path.parent.mkdir(parents=True)
    hep.write_split(files["hep"], EVENTS, 0, IMAGE)
    cosmo.write_split(files["cosmo"], EVENTS, 0, IMAGE)
    weather_synthetic.write_split(files["weather"], WEATHER_SAMPLES, 0, WEATHER_FIELD,
                                  WEATHER_FIELD)
    return files


# ---------------------------------------------------------------------------------------------
# Mutations


def mutate(data: bytes, rng: np.random.Generator) -> tuple[bytes, str]:
    """One random corruption of `data` and its description: a truncation, bit flips (anywhere or in
    the first 4 KiB, where the headers and metadata live) or a zero-filled range."""
    kind = rng.choice(["truncate", "flip", "flip_head", "zero"], p=[0.25, 0.3, 0.3, 0.15])
    n = len(data)
    if kind == "truncate":
        cut = int(rng.integers(0, n))
        return data[:cut], f"truncated to {cut} of {n} bytes"
    buf = bytearray(data)
    if kind == "zero":
        start = int(rng.integers(0, n))
        length = int(rng.integers(1, 512))
        buf[start:start + length] = bytes(len(buf[start:start + length]))
        return bytes(buf), f"zeroed bytes {start}..{start + length}"
    limit = min(n, 4096) if kind == "flip_head" else n
    offsets = sorted(int(o) for o in rng.integers(0, limit, int(rng.integers(1, 9))))
    for o in offsets:
        buf[o] ^= 1 << int(rng.integers(0, 8))
    return bytes(buf), f"bits flipped at {offsets}"


# ---------------------------------------------------------------------------------------------
# The worker (runs in a subprocess): read each case, report one JSON line per case


def _check(ok: bool, what: str) -> None:
    if not ok:
        raise AssertionError(what)


def read_case(reader: str, case: Path) -> dict:
    """Read one mutated case with `reader`; {"ok": detail} or {"error": message} (a DataError)."""
    from ai500 import aggregate
    from ai500.data import cosmo, hep, weather
    from ai500.trace import read_trace

    if reader == "trace":
        t = read_trace(case)
        for name, columns in t.groups.items():
            _check(len({len(v) for v in columns.values()}) <= 1, f"{name}: ragged columns")
            for key, values in columns.items():
                _check(isinstance(values, np.ndarray) and values.ndim == 1, f"{name}/{key} not 1-D")
        return {"ok": f"{len(t.epochs.get('epoch', []))} epochs"}
    if reader == "aggregate":
        err, out = io.StringIO(), io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            code = aggregate.main([str(case)])
        lines = err.getvalue().splitlines()
        return {"code": code, "stderr": lines,
                "summary": (case / "summary.json").read_text(),
                "original": (case / "summary.ok.json").read_text()}
    if reader == "hep":
        counts = hep.inspect_files([case], image_size=IMAGE)
        n = counts[0]
        d = hep.load_range([case], counts, 0, n)
        _check(d["data"].shape == (n, IMAGE, IMAGE, 3) and d["data"].dtype == np.float32, "shape")
        for key in hep.KEYS:
            _check(bool(np.isfinite(d[key]).all()), f"{key} not finite")
        return {"ok": f"{n} events"}
    if reader == "cosmo":
        maps, total = cosmo.load_shard(case, "train", 0, 1, True, IMAGE)
        _check(maps.shape == (total, IMAGE, IMAGE) and maps.dtype == np.float32, "shape")
        _check(bool(np.isfinite(maps).all()), "maps not finite")
        return {"ok": f"{total} maps"}
    if reader == "weather":
        counts = weather.inspect_files([case])
        n = counts[0]
        d = weather.load_range([case], counts, 0, n)
        size = (WEATHER_FIELD, WEATHER_FIELD)
        _check(d["images"].shape == (n, len(weather.CHANNELS), *size), "images shape")
        _check(d["boxes"].shape == (n, weather.MAX_BOXES, 5), "boxes shape")
        _check(bool(np.isfinite(d["images"]).all()), "images not finite")
        return {"ok": f"{n} samples"}
    raise ValueError(f"unknown reader {reader!r}")


def worker(reader: str, cases: list[str]) -> int:
    """Batch mode: one JSON line per case on stdout. One case: the CLI contract (exit 1 and one
    `ai500: error:` line on a DataError)."""
    from ai500.errors import Ai500Error

    for case in cases:
        try:
            result = read_case(reader, Path(case))
        except Ai500Error as exc:
            if len(cases) == 1:
                print(f"ai500: error: {exc}", file=sys.stderr)
                return 1
            result = {"error": str(exc)}
        except Exception:  # what the fuzz looks for: report it, go on with the next case
            if len(cases) == 1:
                raise
            result = {"uncaught": traceback.format_exc()}
        print(json.dumps({"case": case, **result}), flush=True)
    return 0


# ---------------------------------------------------------------------------------------------
# The test side


def _run_worker(reader: str, cases: list[Path], timeout: float) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "HDF5_USE_FILE_LOCKING": "FALSE"}
    return subprocess.run([sys.executable, __file__, reader, *map(str, cases)], check=False,
                          capture_output=True, text=True, timeout=timeout, env=env)


def read_all(reader: str, cases: list[Path]) -> dict[str, dict]:
    """Outcome per case; a case on which the process died or hung is {"died": what happened}."""
    outcomes: dict[str, dict] = {}
    todo = list(cases)
    while todo:
        try:
            proc = _run_worker(reader, todo, BATCH_TIMEOUT_S)
            stdout, died = proc.stdout, None if proc.returncode == 0 else (
                f"exit status {proc.returncode}: {proc.stderr[-2000:]}")
        except subprocess.TimeoutExpired as exc:
            stdout = exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
            died = f"no answer within {BATCH_TIMEOUT_S:g} s (hang)"
        for line in stdout.splitlines():
            record = json.loads(line)
            outcomes[record.pop("case")] = record
        todo = [c for c in todo if str(c) not in outcomes]
        if died is None:
            assert not todo, f"worker skipped {todo}"
            break
        culprit = todo.pop(0)  # the case it was reading when it died
        outcomes[str(culprit)] = {"died": died}
    return outcomes


def make_cases(reader: str, base: Path, tmp: Path, rng: np.random.Generator) -> dict[Path, str]:
    """MUTATIONS corrupted copies of `base` (a file, or for aggregate a run directory) for `reader`;
    returns what each case is and how it was corrupted."""
    cases = {}
    for i in range(MUTATIONS):
        case = tmp / f"{reader}-{i:03d}"
        if reader == "aggregate":
            shutil.copytree(base, case)
            target = case / str(rng.choice(["trace-rank00000.h5", "trace-rank00001.h5",
                                            "trace-rank00001.h5", "config.json"]))
        elif reader == "cosmo":
            case.mkdir()
            target = case / base.name
        else:
            case = target = tmp / f"{reader}-{i:03d}{base.suffix}"
        data, how = mutate((base / target.name if base.is_dir() else base).read_bytes(), rng)
        target.write_bytes(data)
        cases[case] = f"{target.name} {how}"
    return cases


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    from ai500 import aggregate

    root = tmp_path_factory.mktemp("fuzz")
    run = root / "run"
    write_run(run)
    aggregate.aggregate(run)
    shutil.copy(run / "summary.json", run / "summary.ok.json")
    trace = root / "trace.h5"
    shutil.copy(run / "trace-rank00000.h5", trace)
    return {"trace": trace, "aggregate": run, **write_datasets(root)}


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} in a summary (not JSON)")


def _failures(reader: str, cases: dict[Path, str], outcomes: dict[str, dict]) -> list[str]:
    bad = []
    for case, how in cases.items():
        out = outcomes[str(case)]
        if "died" in out:
            bad.append(f"{case.name} ({how}): {out['died']}")
        elif "uncaught" in out:  # the raising frame and the exception
            bad.append(f"{case.name} ({how}): " + " / ".join(
                line.strip() for line in out["uncaught"].splitlines()[-3:]))
        elif reader == "aggregate":
            errors = [ln for ln in out["stderr"] if ln.startswith("ai500: error:")]
            if out["code"] == 0:  # read: a new summary, in strict JSON (no NaN)
                ok = not out["stderr"] and json.loads(
                    out["summary"], parse_constant=_no_constant)["status"] == "ok"
            else:  # a failure keeps the earlier good summary untouched
                ok = (out["code"] == 1 and len(errors) == 1 == len(out["stderr"])
                      and out["summary"] == out["original"])
            if not ok:
                bad.append(f"{case.name} ({how}): exit {out['code']}, stderr {out['stderr']}, "
                           f"summary kept: {out['summary'] == out['original']}")
        elif "error" in out:
            msg = out["error"]
            if "\n" in msg or case.name not in msg:
                bad.append(f"{case.name} ({how}): message not one line naming the file: {msg!r}")
    return bad


@pytest.mark.parametrize("reader", READERS)
def test_corrupted_files_give_a_clean_error_or_valid_data(reader, inputs, tmp_path):
    rng = np.random.default_rng([SEED, READERS.index(reader)])
    cases = make_cases(reader, inputs[reader], tmp_path, rng)
    start = time.monotonic()
    outcomes = read_all(reader, list(cases))
    elapsed = time.monotonic() - start
    failures = _failures(reader, cases, outcomes)
    # The command-line contract, on two of the cases that failed cleanly: exit status 1, one
    # `ai500: error:` line and no traceback on stderr.
    for case in [c for c in cases if "error" in outcomes[str(c)]][:2]:
        proc = _run_worker(reader, [case], BATCH_TIMEOUT_S)
        said = [ln for ln in proc.stderr.splitlines() if ln.startswith("ai500: error: ")]
        if proc.returncode != 1 or len(said) != 1 or "Traceback" in proc.stderr:
            failures.append(f"{case.name} alone: exit {proc.returncode}, stderr {proc.stderr!r}")
    errors = sum("error" in o or o.get("code") == 1 for o in outcomes.values())
    print(f"{reader}: {len(cases)} mutations, {errors} clean errors, "
          f"{len(cases) - errors - len(failures)} read, {len(failures)} failures, {elapsed:.1f} s")
    assert not failures, "\n".join(failures)


if __name__ == "__main__":
    sys.exit(worker(sys.argv[1], sys.argv[2:]))
