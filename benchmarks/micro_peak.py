"""make bench (micro part): how close ai500's micro kernels come to the machine's practical peak.

For each fully-connected forward shape of the `small` table: GFLOPS as a percent of the measured
practical peak (best large square GEMM, same run), and the same GEMM through numpy's matmul measured
in the same run (the ratio ai500/numpy); then the best convolution's GFLOPS as a percent of the
practical peak. Targets on a CPU: the largest FC shapes >= 90 % of the practical peak, the best conv
>= 80 %. One process, float32, TensorFlow's default threads (all cores).
"""

from __future__ import annotations

import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

from ai500.micro import kernels, peak, sizes

PRESET = "small"


def numpy_gflops(m: int, k: int, n: int, repeats: int) -> float:
    """Median GFLOPS of numpy's float32 matmul (M×K)·(K×N), after one untimed call."""
    rng = np.random.default_rng(0)
    a = rng.random((m, k), dtype=np.float32)
    b = rng.random((k, n), dtype=np.float32)
    a @ b
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return 2.0 * m * n * k / statistics.median(times) / 1e9


def main() -> None:
    plan = sizes.REPEATS[PRESET]
    practical = peak.practical_peak("float32", PRESET)["gflops"]
    print(f"practical peak (best square GEMM, float32): {practical:.1f} GFLOPS\n")
    print(f"{'fc forward shape':28s} {'M x K x N':>20s} {'ai500 GFLOPS':>13s} {'% of peak':>10s} "
          f"{'numpy GFLOPS':>13s} {'ai500/numpy':>12s}")
    fc_rows = []
    for size in sizes.sizes_for("fc", PRESET):
        got = kernels.measure("fc", size, "forward", "float32", plan.warmup, plan.repeats)["gflops"]
        ref = numpy_gflops(size.batch, size.in_features, size.out_features, plan.repeats)
        flops = 2 * size.batch * size.in_features * size.out_features
        fc_rows.append((flops, got))
        print(f"{size.name:28s} {f'{size.batch}x{size.in_features}x{size.out_features}':>20s} "
              f"{got:13.1f} {100 * got / practical:9.1f}% {ref:13.1f} {got / ref:12.2f}")
    largest = sorted(fc_rows)[-3:]
    best_fc = max(g for _, g in largest)
    conv = [(kernels.measure("conv", s, "forward", "float32", plan.warmup, plan.repeats)["gflops"],
             s.name) for s in sizes.sizes_for("conv", PRESET)]
    best_conv, conv_name = max(conv)
    print(f"\nlargest FC shapes (3 by FLOPs): best {best_fc:.1f} GFLOPS = "
          f"{100 * best_fc / practical:.1f}% of practical peak (target >= 90%)")
    print(f"best conv forward: {conv_name} {best_conv:.1f} GFLOPS = "
          f"{100 * best_conv / practical:.1f}% of practical peak (target >= 80%)")


if __name__ == "__main__":
    main()
