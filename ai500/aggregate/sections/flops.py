"""FLOPS and Valid FLOPS of a training run (DESIGN §5).

- FLOPS: training FLOPs per sample (TensorFlow profiler, training = 3 × forward) × throughput;
- Valid FLOPS (HPC AI500 v2): FLOPS × (best quality / target)^n, n per benchmark (config);
- both labelled with the run's precision (DESIGN §5): the same model FLOPs at any precision.
"""

from __future__ import annotations

from typing import Any

from ai500.aggregate.merge import MergedRun
from ai500.metrics import scoring
from ai500.summary_common import run_precision


def flops_section(run: MergedRun, samples_per_s: float | None, best: float | None,
                  average_power_w: float | None) -> dict[str, Any]:
    """FLOP/s from the throughput (samples/s), Valid FLOP/s from the best quality, and Valid
    FLOP/s per watt of average power (W)."""
    q = run.cfg["config"]["quality"]
    flops_cfg = run.cfg.get("flops_per_sample") or {}
    flops_per_s = (flops_cfg["train"] * samples_per_s
                   if samples_per_s is not None and flops_cfg.get("train") else None)
    valid = (scoring.valid_flops(flops_per_s, best, q["target"], q["vflops_exponent"],
                                 q["higher_is_better"])
             if flops_per_s is not None and best is not None and best > 0 else None)
    return {
        "precision": run_precision(run.cfg)["precision"],
        "per_sample_train": flops_cfg.get("train"),
        "per_sample_forward": flops_cfg.get("forward"),
        "flops_per_s": flops_per_s,
        "method": (flops_cfg.get("method", "unavailable") +
                   "; FLOPS = training FLOPs per sample x throughput"),
        "valid_flops_per_s": valid,
        "valid_flops_definition": f"FLOPS x (best {q['metric']} / target)^n, "
        f"n = {q['vflops_exponent']:g} (HPC AI500 v2)",
        "valid_flops_per_watt": scoring.flops_per_watt(valid, average_power_w),
    }
