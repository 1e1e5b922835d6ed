"""Throughput and load imbalance (DESIGN §5), from the merged epochs.

- throughput: global samples / the slowest rank's epoch time, summed over the measured epochs;
  the first epoch (warm-up: graph tracing, allocator growth) is excluded when there are two or
  more epochs, and the summary says which epochs were used; a resumed run traces its graphs
  again in every segment, so the first epoch of every segment is excluded;
- per-rank throughput: that rank's samples / its own epoch time over the same epochs;
- load imbalance: slowest / fastest rank's epoch time, per epoch (median and max reported).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ai500.aggregate.merge import MergedRun


def measured_epochs(run: MergedRun) -> tuple[np.ndarray, str]:
    """Positions of the merged epochs throughput is measured over, and how they were chosen."""
    n = run.n
    firsts = run.first_epochs
    measured = np.array([i for i in range(n) if i not in firsts[:n]], int)
    if not run.resumed:
        note = ("epoch 0 excluded as warm-up (graph tracing)" if n >= 2 else
                "only one epoch: warm-up included, throughput understated")
    else:
        epochs = ", ".join(str(int(run.arrays["epoch"][i])) for i in firsts)
        note = f"the first epoch of each segment ({epochs}) excluded as warm-up (graph tracing)"
    if not len(measured):
        measured = np.arange(n)
        if run.resumed:
            note = "only each segment's first epoch: warm-up included, throughput understated"
    return measured, note


def throughput_section(run: MergedRun) -> dict[str, Any]:
    """Samples per second in total and per rank over the measured epochs (None and [] unless
    every rank delivered a usable trace)."""
    measured, note = measured_epochs(run)
    samples_per_s = None
    per_rank = []
    if len(measured) and run.complete:
        samples_per_s = float(run.global_samples[measured].sum() / run.slowest[measured].sum())
        per_rank = [float(np.nansum(run.arrays["samples"][i, measured])
                          / np.nansum(run.epoch_time[i, measured]))
                    for i in range(len(run.arrays["rank"]))]
    return {
        "samples_per_s": samples_per_s,
        "per_rank_samples_per_s": per_rank,
        "epochs_measured": [int(run.arrays["epoch"][e]) for e in measured],
        "method": "global samples / slowest rank's training time over the measured epochs; "
        + note,
    }


def load_imbalance(run: MergedRun) -> dict[str, Any]:
    """Slowest / fastest rank's training time over the measured epochs: median and max."""
    measured, _ = measured_epochs(run)
    imbalance = run.slowest[measured] / run.fastest[measured] if len(measured) else np.zeros(0)
    return {
        "median": float(np.median(imbalance)) if len(imbalance) else None,
        "max": float(np.max(imbalance)) if len(imbalance) else None,
        "definition": "slowest / fastest rank's training time per measured epoch",
    }
