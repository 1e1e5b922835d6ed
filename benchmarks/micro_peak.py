"""make bench (micro part): how close ai500's micro kernels come to the machine's peaks.

Prints the theoretical peak (cores × clock × FLOPs/cycle, each labelled with where it came from), the
practical peak (best square GEMM over TensorFlow and numpy, orders growing until the rates stop
growing), then for each fully-connected forward shape of the `small` table TensorFlow's and numpy's
GEMM rate and which is faster (where numpy wins, that is a finding about TensorFlow's GEMM on that
shape), and the best convolution. A rate above the theoretical peak is flagged as an error in the peak,
never printed as a percentage over 100. Targets on a CPU: the largest FC shapes >= 90 % of the practical
peak, the best conv >= 80 %. One process, float32, TensorFlow's and numpy's default threads (all cores).
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from ai500.micro import kernels, peak, sizes

PRESET = "small"


def share(rate: float, of: float | None, what: str) -> str:
    """`rate` as a percent of a peak, or the flag where it is above a theoretical peak."""
    if of is None:
        return f"n/a of the {what} peak"
    if what == "theoretical" and rate > of:
        return "ABOVE the theoretical peak: the peak is wrong"
    return f"{100 * rate / of:.1f}% of the {what} peak" + (" (above it: see the note)" if rate > of else "")


def main() -> None:
    plan = sizes.REPEATS[PRESET]
    theo = peak.cpu_theoretical_peak("float32")
    if theo["gflops"] is None:
        print(f"theoretical peak (float32): unknown — {theo['unknown']}")
    else:
        print(f"theoretical peak (float32): {theo['gflops']:.1f} GFLOPS = {theo['cores']} cores × clock "
              f"{theo['ghz']:.3f} GHz [{theo['clock_source']}; {peak.CLOCK_CAVEAT}] × "
              f"{theo['flops_per_cycle']:g} FLOPs/cycle/core [{theo['flops_per_cycle_source']}]")
    numpy_blas = kernels.set_numpy_threads(theo["cores"])[1]  # numpy with the same cores as TensorFlow
    prac = peak.practical_peak("float32", sizes.PEAK_GEMM_ORDERS[PRESET], plan.warmup, plan.repeats)
    for p in prac["per_order"]:
        rates = ", ".join(f"{lib} {g:.1f}" for lib, g in p["gflops"].items())
        print(f"  square GEMM n={p['order']}: {rates} GFLOPS")
    practical = prac["gflops"]
    end = ("stopped growing" if prac["stopped_growing"]
           else f"still growing at n={prac['per_order'][-1]['order']}, the largest tried: may be higher")
    print(f"practical peak (best square GEMM, float32): {practical:.1f} GFLOPS ({prac['library']}, "
          f"n={prac['order']}; {end}; {share(practical, theo['gflops'], 'theoretical')})")
    print(f"numpy: {numpy_blas}\n")
    print(f"{'fc forward shape':34s} {'M x K x N':>16s} {'TF GFLOPS':>10s} {'% prac':>7s} "
          f"{'numpy GFLOPS':>13s} {'faster':>13s}")
    fc_rows, above = [], []
    for size in sizes.sizes_for("fc", PRESET):
        got = kernels.measure("fc", size, "forward", "float32", plan.warmup, plan.repeats)["gflops"]
        ref = kernels.numpy_gemm(size.batch, size.in_features, size.out_features, "float32",
                                 plan.warmup, plan.repeats)["gflops"]
        fc_rows.append((size.batch * size.in_features * size.out_features, got))
        faster = f"numpy ×{ref / got:.2f}" if ref > got else f"TF ×{got / ref:.2f}"
        above += [f"{size.name} {lib} {g:.1f}" for lib, g in (("TF", got), ("numpy", ref))
                  if theo["gflops"] is not None and g > theo["gflops"]]
        print(f"{size.name:34s} {f'{size.batch}x{size.in_features}x{size.out_features}':>16s} "
              f"{got:10.1f} {100 * got / practical:6.1f}% {ref:13.1f} {faster:>13s}")
    best_fc = max(g for _, g in sorted(fc_rows)[-3:])
    conv = [(kernels.measure("conv", s, "forward", "float32", plan.warmup, plan.repeats)["gflops"],
             s.name) for s in sizes.sizes_for("conv", PRESET)]
    best_conv, conv_name = max(conv)
    above += [f"{name} {g:.1f}" for g, name in conv if theo["gflops"] is not None and g > theo["gflops"]]
    print(f"\nlargest FC shapes (3 by FLOPs): best {best_fc:.1f} GFLOPS = "
          f"{share(best_fc, practical, 'practical')} (target >= 90%)")
    print(f"best conv forward: {conv_name} {best_conv:.1f} GFLOPS = "
          f"{share(best_conv, practical, 'practical')} (target >= 80%); "
          f"{share(best_conv, theo['gflops'], 'theoretical')}")
    if above:
        print(f"ABOVE the theoretical peak ({theo['gflops']:.1f} GFLOPS): {'; '.join(above)} — the "
              "theoretical peak is wrong (FMA units, vector width or clock; set them in system.yaml `peak`)")
    if best_conv > practical:
        print("note: a kernel above the practical peak beat every square GEMM measured; the practical peak "
              "is the best GEMM found, a reference, not a ceiling")


if __name__ == "__main__":
    main()
