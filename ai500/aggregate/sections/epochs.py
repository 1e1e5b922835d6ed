"""The summary's per-epoch rows: samples, the slowest and fastest rank, throughput, imbalance,
both clocks, the time accounting and the epoch's metrics."""

from __future__ import annotations

from typing import Any

import numpy as np

from ai500.aggregate.merge import MergedRun
from ai500.summary_common import finite


def epoch_rows(run: MergedRun, per_epoch: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    """One JSON-ready row per merged epoch (seconds, samples/s); `per_epoch` is
    accounting.epoch_accounting(run)."""
    merged = run.arrays
    slowest, fastest, samples = run.slowest, run.fastest, run.global_samples
    rows = []
    for e in range(run.n):
        row = {"epoch": int(merged["epoch"][e]), "global_samples": int(samples[e]),
               "slowest_rank_s": float(slowest[e]), "fastest_rank_s": float(fastest[e]),
               "samples_per_s": float(samples[e] / slowest[e]),
               "load_imbalance": float(slowest[e] / fastest[e]),
               "t_end_s": run.eval_end(e),
               "segment": int(merged["segment"][e]),
               "t_end_training_s": run.eval_end(e, "t_eval_end_training"),
               **{key: float(values[e]) for key, values in per_epoch.items()}}
        row.update({k: finite(v[e]) for k, v in merged.items() if k.startswith(("train_", "val_"))})
        rows.append(row)
    return rows
