"""Micro benchmarks end to end: real `mpirun -np 2` runs of conv, fc, pool and micro at the ci preset, bad
input, and the rank-0 summary on hand-made traces with exact numbers."""

from __future__ import annotations

import json
import math
import os

import h5py
import numpy as np
import pytest
from conftest import load_summary, mpirun, only_run_dir

from ai500 import config
from ai500.dist import Dist
from ai500.errors import ConfigError
from ai500.micro import kernels
from ai500.micro.sizes import PEAK_GEMM_ORDERS, REPEATS, FcSize, sizes_for
from ai500.micro.summary import PEAK_OP, format_summary, merged_arrays, summarise
from ai500.trace import TraceWriter, read_trace

BENCHMARKS = ("conv", "fc", "pool", "micro")
ONE_RANK = Dist(rank=0, size=1, local_rank=0, local_size=1, host="test")


def expected_items(benchmark: str) -> list[tuple[str, str, str, str]]:
    """(op, size, direction, dtype) of every kernel row a ci run writes, in order (after the peak GEMMs)."""
    items = []
    for op in ("conv", "fc", "pool") if benchmark == "micro" else (benchmark,):
        items += [(op, size.name, direction, "float32")
                  for size in sizes_for(op, "ci") for direction in kernels.DIRECTIONS[op]]
    return items


def peak_items(rows) -> list[tuple[str, str, str, str]]:
    """The leading peak-GEMM rows of a trace: a prefix of the ci orders, as the search stopped it."""
    n = sum(op == PEAK_OP for op in rows["op"])
    return [(PEAK_OP, f"gemm_{order}", "forward", "float32") for order in PEAK_GEMM_ORDERS["ci"][:n]]


def error_lines(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("ai500: error:")]


@pytest.fixture(scope="module", params=BENCHMARKS)
def ci_run(request, tmp_path_factory):
    out = tmp_path_factory.mktemp(f"runs-{request.param}")
    result = mpirun(2, ["--benchmark", request.param, "--preset", "ci", "--out", str(out)], timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    return request.param, result, only_run_dir(out)


def test_run_directory_and_rank0_output(ci_run):
    benchmark, result, run_dir = ci_run
    assert run_dir.name.startswith(f"{benchmark}-") and run_dir.name.endswith("-np2")
    assert sorted(p.name for p in run_dir.iterdir()) == [
        "config.json", "mllog.txt", "summary.h5", "summary.json", "system.json",
        "trace-rank00000.h5", "trace-rank00001.h5"]
    cfg = json.loads((run_dir / "config.json").read_text())
    assert cfg["kind"] == "micro" and cfg["flops_per_sample"] is None
    assert cfg["workload"]["kernel_items"] == len(expected_items(benchmark))
    assert cfg["workload"]["libraries"] == ["tensorflow", "numpy"]
    assert "thread" in cfg["workload"]["numpy_threads"]
    assert cfg["config"]["micro"]["repeats"] == REPEATS["ci"].repeats
    # Rank 0 alone prints: one progress line per row, then the summary table. Counted as lines whose
    # second field is a size name: a note may name a kernel too (ABOVE! where the table's peak is
    # too low for this CPU, as on a VM that reports a client model number for a server core).
    rows = [line for line in result.stdout.splitlines()
            if len(line.split()) > 1 and line.split()[1].startswith("tiny_")]
    assert len(rows) == 2 * len(expected_items(benchmark))
    assert f"ai500 {benchmark} (ci, float32) on 2 rank(s)" in result.stdout
    assert "status ok" in result.stdout and "Traceback" not in result.stderr
    # The peaks are labelled: clock and FLOPs/cycle, and the library and order of the practical peak.
    assert "theoretical peak per rank:" in result.stdout and "practical peak per rank:" in result.stdout
    assert " GHz (" in result.stdout and "FLOPs/cycle/core" in result.stdout
    assert "best square GEMM: " in result.stdout


def test_each_rank_traces_every_kernel_row(ci_run):
    benchmark, _, run_dir = ci_run
    theoretical, peak_rows = set(), []
    for rank in (0, 1):
        trace = read_trace(run_dir / f"trace-rank{rank:05d}.h5")
        assert trace.attrs["rank"] == rank and trace.attrs["status"] == "ok"
        rows = trace.groups["kernels"]
        items = peak_items(rows) + expected_items(benchmark)
        peak_rows.append(len(items) - len(expected_items(benchmark)))
        assert list(zip(rows["op"], rows["size"], rows["direction"], rows["dtype"])) == items
        # numpy timed the peak GEMMs and the fc forward shapes, nothing else
        for i, (op, _, direction, _) in enumerate(items):
            numpy_timed = op == PEAK_OP or (op, direction) == ("fc", "forward")
            assert math.isfinite(rows["numpy_gflops"][i]) == numpy_timed
            assert math.isfinite(rows["numpy_median_s"][i]) == numpy_timed
        for i, (op, name, direction, _) in enumerate(items):
            size = FcSize(name, int(name[5:]), int(name[5:]), int(name[5:])) if op == PEAK_OP else next(
                s for s in sizes_for(op, "ci") if s.name == name)
            assert rows["flops"][i] == kernels.kernel_flops("fc" if op == PEAK_OP else op, size, direction)
            assert rows["batch"][i] == size.batch
            assert 0 < rows["min_s"][i] <= rows["median_s"][i] <= rows["max_s"][i]
            assert rows["gflops"][i] == pytest.approx(rows["flops"][i] / rows["median_s"][i] / 1e9)
            assert rows["images_per_s"][i] == pytest.approx(size.batch / rows["median_s"][i])
        assert np.all(rows["t_end"] > rows["t_start"]) and np.all(np.diff(rows["t_start"]) > 0)
        assert rows["repeats"].tolist() == [REPEATS["ci"].repeats] * len(items)
        theoretical |= set(rows["peak_theoretical_gflops"].tolist())
    assert len(theoretical) == 1 and theoretical.pop() > 0
    assert peak_rows[0] == peak_rows[1] >= 2  # every rank stopped the GEMM search at the same order


def test_summary_is_computed_exactly_from_the_traces(ci_run):
    benchmark, _, run_dir = ci_run
    s = load_summary(run_dir)
    t0, t1 = (read_trace(run_dir / f"trace-rank{r:05d}.h5").groups["kernels"] for r in (0, 1))
    assert (s["status"], s["kind"], s["benchmark"], s["ranks"]) == ("ok", "micro", benchmark, 2)
    assert s["missing_or_failed_ranks"] == {} and s["kernels_completed"] == len(expected_items(benchmark))
    assert "slowest rank's median" in s["definition"]["aggregate_gflops"]

    def aggregate(i: int, median: str = "median_s") -> float:
        return (t0["flops"][i] + t1["flops"][i]) / max(t0[median][i], t1[median][i]) / 1e9

    theo, prac = s["peak"]["theoretical"], s["peak"]["practical"]
    assert theo["aggregate_gflops"] == t0["peak_theoretical_gflops"][0] + t1["peak_theoretical_gflops"][0]
    assert theo["aggregate_gflops"] == 2 * theo["gflops_per_rank"]
    assert theo["rank0"]["flops_per_cycle"] > 0 and theo["rank0"]["ghz"] > 0 and theo["rank0"]["clock_source"]
    peak_rows = [i for i, op in enumerate(t0["op"]) if op == PEAK_OP]
    best = max((aggregate(i, m), lib) for i in peak_rows
               for m, lib in (("median_s", "tensorflow"), ("numpy_median_s", "numpy")))
    assert (prac["aggregate_gflops"], prac["library"]) == best
    assert prac["aggregate_gflops"] == 2 * prac["gflops_per_rank"]
    assert prac["order"] in PEAK_GEMM_ORDERS["ci"] and "measured" in prac["method"]
    assert "numpy" in prac["method"] and "less than 3% above its best" in prac["method"]
    assert "theoretical" in theo["method"] and "intra-op thread" in theo["method"]

    kernel_rows = [i for i, op in enumerate(t0["op"]) if op != PEAK_OP]
    assert len(s["kernels"]) == len(kernel_rows)
    for entry, i in zip(s["kernels"], kernel_rows):
        assert (entry["op"], entry["size"], entry["direction"]) == (t0["op"][i], t0["size"][i],
                                                                    t0["direction"][i])
        slowest = max(t0["median_s"][i], t1["median_s"][i])
        assert entry["median_s_by_rank"] == [t0["median_s"][i], t1["median_s"][i]]
        assert entry["aggregate_gflops"] == aggregate(i)
        assert entry["aggregate_images_per_s"] == (t0["batch"][i] + t1["batch"][i]) / slowest
        assert entry["gflops_per_rank"] == pytest.approx((t0["gflops"][i] + t1["gflops"][i]) / 2)
        above = bool(aggregate(i) > theo["aggregate_gflops"])
        assert entry["above_theoretical_peak"] is above
        assert entry["percent_of_theoretical_peak"] == (
            None if above else 100 * aggregate(i) / theo["aggregate_gflops"])
        assert entry["percent_of_practical_peak"] == 100 * aggregate(i) / prac["aggregate_gflops"]
        if (entry["op"], entry["direction"]) == ("fc", "forward"):
            assert entry["numpy_aggregate_gflops"] == aggregate(i, "numpy_median_s")
            assert entry["faster"] == ("numpy" if aggregate(i, "numpy_median_s") > aggregate(i)
                                       else "tensorflow")
        else:
            assert entry["numpy_aggregate_gflops"] is None and entry["faster"] is None
        assert entry["spread"]["min_s"] == min(t0["min_s"][i], t1["min_s"][i])
        assert entry["spread"]["max_s"] == max(t0["max_s"][i], t1["max_s"][i])
        assert entry["spread"]["imbalance"] >= 1
    with h5py.File(run_dir / "summary.h5") as f:
        assert f["kernels/median_s"].shape == (2, len(t0["op"]))
        assert [v.decode() for v in f["kernels/op"][()]] == list(t0["op"])


@pytest.mark.parametrize("args, fragment", [
    (["--benchmark", "conv", "--sizes", "tiny_conv_3x3,no_such_size"], "unknown conv size 'no_such_size'"),
    (["--benchmark", "fc", "--epochs", "3"], "--epochs not used by micro benchmark 'fc'"),
])
def test_bad_input_is_one_line_and_no_run_directory(tmp_path, args, fragment):
    out = tmp_path / "runs"
    result = mpirun(2, [*args, "--preset", "ci", "--out", str(out)], timeout=120)
    assert result.returncode != 0
    lines = error_lines(result)
    assert len(lines) == 1 and fragment in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists() or not any(out.iterdir())


# --- the workload without MPI (one rank; nothing here runs a collective) ---

def workload(argv: list[str]):
    from ai500.workloads.micro import Workload

    return Workload(config.resolve(["--preset", "ci", *argv]), ONE_RANK)


def test_micro_sizes_pick_their_operator_and_keep_order():
    w = workload(["--benchmark", "micro", "--sizes", "tiny_pool_2x2_s2,tiny_conv_1x1_s2"])
    items = list(w.items())  # nothing measured: the GEMM search never stops early
    assert [(op, size.name, d) for op, size, d, _ in items][3:] == (
        [("conv", "tiny_conv_1x1_s2", d) for d in kernels.DIRECTIONS["conv"]]
        + [("pool", "tiny_pool_2x2_s2", d) for d in kernels.DIRECTIONS["pool"]])
    assert [size.name for _, size, _, _ in items[:3]] == ["gemm_128", "gemm_256", "gemm_512"]
    assert w.describe()["kernel_items"] == 3 + 4 and w.describe()["peak_gemm_items_max"] == 3
    assert w.flops_per_sample() is None


def _fake_timing(monkeypatch, tf_gflops: dict[int, float], numpy_gflops: dict[int, float]) -> None:
    """Make kernels.measure and kernels.numpy_gemm return the given rates by GEMM order (n×n·n×n)."""
    def result(flops: float, rate: float) -> dict:
        median = flops / rate / 1e9
        return {"flops": flops, "gflops": rate, "images_per_s": 1.0,
                "seconds": {"median": median, "min": median, "max": median, "mad": 0.0}}

    monkeypatch.setattr(kernels, "measure", lambda op, size, direction, dtype, warmup, repeats: result(
        2 * size.batch**3, tf_gflops.get(size.batch, 1.0)))
    monkeypatch.setattr(kernels, "numpy_gemm", lambda m, k, n, dtype, warmup, repeats: result(
        2 * m * k * n, numpy_gflops.get(m, 1.0)))


def test_peak_gemm_search_stops_when_no_library_grows(monkeypatch):
    w = workload(["--benchmark", "fc", "--sizes", "tiny_fc_64x128"])
    # n=256 gains under 3 % in both libraries: 512 is never timed
    _fake_timing(monkeypatch, {128: 50.0, 256: 51.0, 512: 90.0}, {128: 80.0, 256: 81.0, 512: 200.0})
    seen = []
    for item in w.items():
        row = w.measure(item)
        seen.append((row["op"], row["size"], row["direction"]))
    assert seen[:2] == [(PEAK_OP, "gemm_128", "forward"), (PEAK_OP, "gemm_256", "forward")]
    assert [op for op, *_ in seen[2:]] == ["fc"] * 3
    # TensorFlow still growing at 256 (numpy not): the search goes on to 512
    _fake_timing(monkeypatch, {128: 50.0, 256: 80.0, 512: 81.0}, {128: 80.0, 256: 79.0, 512: 80.0})
    assert [row["size"] for row in map(w.measure, w.items()) if row["op"] == PEAK_OP] == [
        "gemm_128", "gemm_256", "gemm_512"]


def test_system_peak_overrides_reach_the_workload(tmp_path):
    system = tmp_path / "s.yaml"
    system.write_text("peak: {flops_per_cycle: 10, clock_ghz: 1.5}\n")
    w = workload(["--benchmark", "fc", "--sizes", "tiny_fc_64x128", "--system", str(system)])
    assert w.theoretical["gflops"] == pytest.approx(w.theoretical["cores"] * 1.5 * 10)
    assert "system.yaml" in w.theoretical["clock_source"]
    assert "system.yaml" in w.theoretical["flops_per_cycle_source"]


@pytest.mark.parametrize("argv, fragment", [
    (["--benchmark", "micro", "--sizes", "tiny_fc_64x128,bogus"], "unknown size 'bogus' in preset 'ci'"),
    (["--benchmark", "pool", "--sizes", "tiny_pool_2x2_s2,tiny_pool_2x2_s2"], "given more than once"),
    (["--benchmark", "fc", "--sizes", ","], "names no size"),
    (["--benchmark", "conv", "--dtype", "float16"], "float16 is not supported on a CPU"),
])
def test_bad_micro_options_raise_config_error(argv, fragment):
    with pytest.raises(ConfigError) as info:
        workload(argv)
    assert fragment in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("text, fragment", [
    ("micro: {repeatz: 3}\n", "unknown key(s) repeatz"),
    ("micro: {repeats: 0}\n", "repeats must be an integer >= 1"),
    ("micro: {warmup: 1.5}\n", "warmup must be an integer >= 0"),
    ("micro: {peak_gemm_orders: []}\n", "peak_gemm_orders must be a non-empty, strictly growing list"),
    ("micro: {peak_gemm_orders: [512, 256]}\n", "peak_gemm_orders must be a non-empty, strictly growing"),
    ("micro: {dtype: int8}\n", "dtype must be one of"),
])
def test_bad_micro_section_raises_config_error(tmp_path, text, fragment):
    override = tmp_path / "o.yaml"
    override.write_text(text)
    with pytest.raises(ConfigError) as info:
        workload(["--benchmark", "fc", "--config", str(override)])
    assert fragment in str(info.value)


def test_measure_row_and_theoretical_peak_use_this_ranks_threads():
    import tensorflow as tf

    w = workload(["--benchmark", "fc", "--sizes", "tiny_fc_64x128"])
    threads = tf.config.threading.get_intra_op_parallelism_threads() or len(os.sched_getaffinity(0))
    assert w.theoretical["cores"] <= threads
    forward, _, backward = w.kernel_items()
    row = w.measure(backward)
    assert (row["op"], row["size"], row["direction"], row["dtype"]) == (
        "fc", "tiny_fc_64x128", "backward_weights", "float32")
    assert row["flops"] == 2 * 16 * 64 * 128 and row["batch"] == 16
    assert row["gflops"] == row["flops"] / row["median_s"] / 1e9
    assert row["peak_theoretical_gflops"] == w.theoretical["gflops"]
    assert all(isinstance(v, str) if k in ("op", "size", "direction", "dtype") else math.isfinite(v)
               for k, v in row.items() if not k.startswith("numpy_"))
    assert math.isnan(row["numpy_gflops"]) and "tiny_fc_64x128" in w.format_row(row)
    row = w.measure(forward)  # the forward GEMM is timed in numpy too
    assert row["numpy_gflops"] == row["flops"] / row["numpy_median_s"] / 1e9
    assert "numpy" in w.format_row(row)


# --- the summary on hand-made traces ---

def _row(op: str, size: str, direction: str, flops: float, batch: float, median: float,
         theoretical: float, numpy_median: float = float("nan")) -> dict:
    return {"op": op, "size": size, "direction": direction, "dtype": "float32", "batch": batch,
            "flops": flops, "warmup": 1, "repeats": 3, "median_s": median, "min_s": median / 2,
            "max_s": median * 2, "mad_s": median / 8, "gflops": flops / median / 1e9,
            "images_per_s": batch / median, "peak_theoretical_gflops": theoretical,
            "numpy_median_s": numpy_median, "numpy_gflops": flops / numpy_median / 1e9,
            "t_start": 1.0, "t_end": 2.0}


def _write_traces(tmp_path, per_rank_rows: dict[int, list[dict]], status: str = "ok") -> dict:
    traces = {}
    for rank, rows in per_rank_rows.items():
        writer = TraceWriter(tmp_path / f"t{rank}.h5", {"run_id": "r", "rank": rank, "size": 2,
                                                        "init_seconds": 1.5 + rank})
        for row in rows:
            writer.add_row("kernels", row)
        writer.close(status)
        traces[rank] = read_trace(tmp_path / f"t{rank}.h5")
    return traces


HAND_CFG = {
    "run_id": "r", "kind": "micro",
    "config": {"benchmark": "fc", "preset": "ci", "micro": {"dtype": "float32"}},
    "dist": {"size": 2, "nodes": 1, "hosts": ["a", "a"]},
    "versions": {"tensorflow": "2.15.1"}, "command": ["python", "-m", "ai500.run"],
    "workload": {"kernel_items": 1, "peak": {
        "theoretical_rank0": {"gflops": 100.0, "cores": 1, "ghz": 2.0, "clock_source": "test clock",
                              "flops_per_cycle": 50, "flops_per_cycle_source": "test table",
                              "dtype": "float32", "unknown": None, "method": "theoretical: test"},
        "practical": {"method": "measured: test", "min_gain": 0.03}}},
}


def _hand_rows(rank: int) -> list[dict]:
    # Rank 1 is twice as slow on the 512 GEMM and on the kernel; FLOPs are the same on both ranks.
    slow = 2.0 if rank else 1.0
    return [
        _row(PEAK_OP, "gemm_256", "forward", 2 * 256**3, 256, 0.002, 100.0),
        _row(PEAK_OP, "gemm_512", "forward", 2 * 512**3, 512, 0.004 * slow, 100.0),
        _row("fc", "k", "forward", 1e9, 64, 0.25 * slow, 100.0),
    ]


def test_summarise_hand_made_traces_exact(tmp_path):
    traces = _write_traces(tmp_path, {0: _hand_rows(0), 1: _hand_rows(1)})
    s = summarise(HAND_CFG, traces, {})
    assert (s["status"], s["kind"], s["ranks"], s["kernels_completed"]) == ("ok", "micro", 2, 1)
    assert s["peak_gemms_completed"] == 2
    assert s["init_s"] == 2.5 and s["run_s"] == 2.0 and s["schema_version"] == 1
    theo, prac = s["peak"]["theoretical"], s["peak"]["practical"]
    assert theo["aggregate_gflops"] == 200.0 and theo["gflops_per_rank"] == 100.0
    # gemm_256: 2 × 2·256³ FLOPs / 0.002 s = 33.554432 GFLOPS; gemm_512: 2 × 2·512³ / 0.008 s (the slower
    # rank) = 67.108864 GFLOPS, the best: the practical peak.
    assert [p["order"] for p in prac["per_order"]] == [256, 512] and prac["order"] == 512
    assert prac["per_order"][0]["aggregate_gflops"] == pytest.approx(33.554432, rel=1e-15)
    assert prac["per_order"][1]["gflops_by_rank"] == pytest.approx([67.108864, 33.554432], rel=1e-15)
    assert prac["per_order"][1]["aggregate_gflops"] == pytest.approx(67.108864, rel=1e-15)
    assert prac["aggregate_gflops"] == pytest.approx(67.108864, rel=1e-15)
    assert prac["gflops_per_rank"] == pytest.approx(33.554432, rel=1e-15)
    assert prac["library"] == "tensorflow" and not prac["stopped_growing"]  # +100 % at 512: still growing
    (k,) = s["kernels"]
    # 2 ranks × 1e9 FLOPs over the slowest median (0.5 s) = 4 GFLOPS; per rank 4 and 2 → median 3.
    assert k["aggregate_gflops"] == 4.0
    assert k["gflops_per_rank"] == 3.0 and k["gflops_by_rank"] == [4.0, 2.0]
    assert k["aggregate_images_per_s"] == 256.0  # (64 + 64) / 0.5
    assert k["percent_of_theoretical_peak"] == 2.0  # 4 / 200
    assert k["percent_of_practical_peak"] == pytest.approx(100 * 4 / 67.108864, rel=1e-15)
    assert k["median_s_by_rank"] == [0.25, 0.5] and k["slowest_median_s"] == 0.5
    assert k["spread"] == {"min_s": 0.125, "max_s": 1.0, "mad_s_per_rank": [0.03125, 0.0625],
                           "imbalance": 2.0}
    assert k["flops_per_rank"] == 10**9 and k["batch"] == 64
    json.dumps(s)  # JSON-ready
    assert k["above_theoretical_peak"] is False and k["above_practical_peak"] is False
    assert k["numpy_aggregate_gflops"] is None and k["faster"] is None
    assert s["peak"]["theoretical"]["exceeded_by"] == [] and s["peak"]["theoretical_status"] == "ok"
    table = format_summary(s)
    assert "status ok" in table and "4.00" in table
    assert any(line.split()[:4] == ["fc", "k", "forward", "500.000"] for line in table.splitlines())
    assert ("theoretical peak per rank: 100.0 GFLOPS = 1 core(s) × clock 2.000 GHz (test clock; turbo and "
            "AVX clocks differ) × 50 float32 FLOPs/cycle/core (test table); aggregate 200.0 GFLOPS") in table
    assert "best square GEMM: tensorflow, n=512" in table and "may be higher" in table
    assert "ABOVE" not in table and "numpy's GEMM beat" not in table

    merged = merged_arrays(traces)
    assert merged["op"].tolist() == [PEAK_OP, PEAK_OP, "fc"]
    assert merged["median_s"].shape == (2, 3) and merged["median_s"][1, 2] == 0.5


def test_kernel_above_the_theoretical_peak_is_flagged_not_a_percentage(tmp_path):
    # The case: a 78.3 GFLOPS "peak" (1 FMA unit assumed) under a 135.8 GFLOPS conv.
    def rows(rank: int) -> list[dict]:
        return [_row(PEAK_OP, "gemm_512", "forward", 2 * 512**3, 512, 2 * 512**3 / 96.7e9, 78.3),
                _row("conv", "c", "forward", 135.8e9, 16, 1.0, 78.3)]

    s = summarise(HAND_CFG, _write_traces(tmp_path, {0: rows(0), 1: rows(1)}), {})
    (k,) = s["kernels"]
    assert k["aggregate_gflops"] == pytest.approx(271.6) and s["peak"]["theoretical"]["aggregate_gflops"] == 156.6
    assert k["above_theoretical_peak"] is True and k["percent_of_theoretical_peak"] is None
    assert k["above_practical_peak"] is True and k["percent_of_practical_peak"] == pytest.approx(140.43, 1e-3)
    exceeded = [e["what"] for e in s["peak"]["theoretical"]["exceeded_by"]]
    assert exceeded == ["practical peak (tensorflow GEMM, n=512)", "conv c forward"]
    assert s["peak"]["theoretical_status"] == "wrong: exceeded by measured rates"
    table = format_summary(s)
    line = next(line for line in table.splitlines() if line.split()[:3] == ["conv", "c", "forward"])
    assert "ABOVE!" in line and "173" not in line and "140.4*" in line  # no 173 % of the theoretical peak
    assert "above the theoretical peak: the peak is wrong" in table
    assert "above the practical peak: this kernel beat every square GEMM measured" in table


def test_numpy_faster_on_an_fc_shape_is_shown(tmp_path):
    # m4096 n128 k4096: numpy 107 GFLOPS against TensorFlow's 41 (the figures, per rank).
    flops = 2 * 128 * 4096 * 4096

    def rows(rank: int) -> list[dict]:
        return [_row(PEAK_OP, "gemm_512", "forward", 2 * 512**3, 512, 2 * 512**3 / 90e9, 300.0,
                     numpy_median=2 * 512**3 / 110e9),
                _row("fc", "deepbench_gemm_m4096_n128_k4096", "forward", flops, 128, flops / 41e9, 300.0,
                     numpy_median=flops / 107e9)]

    s = summarise(HAND_CFG, _write_traces(tmp_path, {0: rows(0), 1: rows(1)}), {})
    prac = s["peak"]["practical"]
    assert (prac["library"], prac["order"]) == ("numpy", 512)  # the practical peak is numpy's GEMM
    assert prac["aggregate_gflops"] == pytest.approx(220.0) and prac["tensorflow_aggregate_gflops"] == (
        pytest.approx(180.0))
    (k,) = s["kernels"]
    assert k["aggregate_gflops"] == pytest.approx(82.0) and k["numpy_aggregate_gflops"] == pytest.approx(214.0)
    assert k["faster"] == "numpy"
    table = format_summary(s)
    line = next(line for line in table.splitlines() if "deepbench_gemm_m4096_n128_k4096" in line)
    assert line.split()[-3:] == ["214.00", "numpy", "×2.61"]
    assert "numpy's GEMM beat TensorFlow's on 1 fc shape(s)" in table
    assert "best square GEMM: numpy, n=512" in table


def test_unknown_theoretical_peak_says_why(tmp_path):
    cfg = {**HAND_CFG, "workload": {**HAND_CFG["workload"], "peak": {
        "theoretical_rank0": {"gflops": None, "unknown": "float32 FLOPs/cycle unknown: CPU 'X' is not in the "
                              "microarchitecture table", "method": "theoretical: unknown — ..."},
        "practical": {"method": "measured: test"}}}}
    rows = {r: [dict(row, peak_theoretical_gflops=float("nan")) for row in _hand_rows(r)] for r in (0, 1)}
    s = summarise(cfg, _write_traces(tmp_path, rows), {})
    assert s["peak"]["theoretical"]["aggregate_gflops"] is None and s["peak"]["theoretical_status"] == "unknown"
    assert s["kernels"][0]["percent_of_theoretical_peak"] is None
    assert ("theoretical peak per rank: unknown — float32 FLOPs/cycle unknown: CPU 'X' is not in the "
            "microarchitecture table") in format_summary(s)


def test_summary_of_a_run_from_before_the_adaptive_search(tmp_path):
    old = {**HAND_CFG, "workload": {k: v for k, v in HAND_CFG["workload"].items() if k != "kernel_items"}}
    old["workload"]["items"] = 3  # then the peak GEMM rows were counted as items
    rows = {r: [{k: v for k, v in row.items() if not k.startswith("numpy_")} for row in _hand_rows(r)]
            for r in (0, 1)}
    s = summarise(old, _write_traces(tmp_path, rows), {})
    assert s["status"] == "ok" and s["kernels_completed"] == 3 == s["kernels_expected"]
    assert s["kernels"][0]["numpy_aggregate_gflops"] is None


def test_summarise_missing_rank_fails_without_aggregates(tmp_path):
    traces = _write_traces(tmp_path, {0: _hand_rows(0)})
    s = summarise(HAND_CFG, traces, {1: "no trace file"})
    assert s["status"] == "failed" and s["missing_or_failed_ranks"] == {"1": "no trace file"}
    (k,) = s["kernels"]
    assert k["aggregate_gflops"] is None and k["percent_of_practical_peak"] is None
    assert s["peak"]["practical"]["aggregate_gflops"] is None
    assert "rank 1: no trace file" in format_summary(s)


def test_summarise_unfinished_rank_keeps_common_rows(tmp_path):
    rows = {0: _hand_rows(0), 1: _hand_rows(1)[:2]}
    traces = _write_traces(tmp_path, rows, status="failed")
    s = summarise(HAND_CFG, traces, {0: "trace status 'failed'", 1: "trace status 'failed'"})
    assert s["status"] == "failed" and s["kernels_completed"] == 0 and s["kernels"] == []
    assert s["peak_gemms_completed"] == 2
    assert s["peak"]["practical"]["aggregate_gflops"] == pytest.approx(67.108864, rel=1e-15)


def test_summarise_run_that_failed_before_any_row(tmp_path):
    traces = _write_traces(tmp_path, {0: [], 1: []}, status="failed")
    s = summarise(HAND_CFG, traces, {0: "trace status 'failed'", 1: "trace status 'failed'"})
    assert s["status"] == "failed" and s["kernels_completed"] == 0 and s["kernels"] == []
    assert s["peak"]["practical"]["aggregate_gflops"] is None and s["run_s"] is None
    assert "status failed" in format_summary(s)
    assert merged_arrays(traces)["op"].tolist() == []


def test_micro_summary_carries_energy_and_gflops_per_watt(tmp_path):
    from conftest import load_summary, mpirun, only_run_dir

    result = mpirun(2, ["--benchmark", "fc", "--preset", "ci", "--out", str(tmp_path)])
    assert result.returncode == 0, result.stderr
    s = load_summary(only_run_dir(tmp_path))
    e = s["energy"]
    assert e["method"] == "estimated" and e["average_power_w"] > 0
    for k in s["kernels"]:
        assert k["gflops_per_watt"] == pytest.approx(k["aggregate_gflops"] / e["average_power_w"])
    assert "[estimated]" in result.stdout
