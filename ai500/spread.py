"""A figure's spread over the runs of one configuration (several seeds, repeats): time to quality
or epochs to target at one rank count, or a reference convergence point's epochs.

The rules, stated once (the report and ai500.references quote RULES):
- A run that completed but did not reach the quality target is not dropped: it enters the median,
  the min–max and the olympic mean as +infinity, slower than every run that reached it. So the
  median is "not reached" when the middle run (for an even count, either middle run) did not
  reach the target, max is "not reached" when any run missed it, and the olympic mean is "not
  reached" when two or more runs missed it (one missing run is the slowest, and dropped).
- Runs that failed (crashed, a rank lost) are no measurement of convergence: they are left out of
  these figures, and counted and listed apart by the caller.
- Coefficient of variation: sample standard deviation (n - 1 in the denominator) / mean, over the
  runs that reached the target only (labelled so), from 2 such runs.
- Olympic mean (MLPerf HPC's score): of 5 runs drop the fastest and the slowest and average the
  other 3. With more than 5 runs the same one fastest and one slowest are dropped (the mean of the
  middle n - 2; not MLPerf's figure, which takes exactly 5); with fewer than 5 there is none.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

NOT_REACHED = math.inf  # how a run that did not reach the target enters the order statistics
OLYMPIC_RUNS = 5  # MLPerf HPC: five runs per result

RULES = ("a run that did not reach the target counts as +infinity (slower than every run that "
         "reached it) in the median, min–max and olympic mean, so these read 'not reached' where "
         "such runs decide them; failed runs are left out and listed apart; CV = sample standard "
         "deviation / mean over the runs that reached the target only; olympic mean = mean after "
         "dropping the fastest and the slowest run, from 5 runs (MLPerf HPC takes exactly 5; "
         "with more, still one of each is dropped)")


def olympic_mean(values: list[float]) -> float:
    """MLPerf-style olympic mean: drop the best and the worst result (one each), average the rest
    (+infinity if a value left in is +infinity)."""
    if len(values) < 3:
        raise ValueError(f"an olympic mean needs at least 3 values, got {len(values)}")
    ordered = sorted(values)
    return statistics.fmean(ordered[1:-1])


def cv(values: list[float]) -> float | None:
    """Coefficient of variation: sample standard deviation (n - 1) / mean; None below 2 values
    or for a mean of 0."""
    if len(values) < 2:
        return None
    mean = statistics.fmean(values)
    return statistics.stdev(values) / mean if mean else None


def finite_or_none(value: float) -> float | None:
    """+infinity (not reached) as None, for JSON; other values unchanged."""
    return None if math.isinf(value) else value


def spread(values: list[float | None]) -> dict[str, Any] | None:
    """The spread of one figure over the runs that completed: `values` holds one entry per run,
    None for a run that did not reach the target (see the module's rules). Returns runs (m),
    reached (k), median, min, max and olympic_mean (None in JSON where "not reached", with
    *_reached saying which), cv over the reached runs, and the values; None for no runs."""
    if not values:
        return None
    reached = [float(v) for v in values if v is not None]
    ordered = sorted(NOT_REACHED if v is None else float(v) for v in values)
    median = statistics.median(ordered) if len(ordered) % 2 else (
        # the mean of the two middle runs, and not reached if either is (inf + x is inf)
        (ordered[len(ordered) // 2 - 1] + ordered[len(ordered) // 2]) / 2)
    olympic = olympic_mean(ordered) if len(ordered) >= OLYMPIC_RUNS else None
    figures = {"median": median, "min": ordered[0], "max": ordered[-1], "olympic_mean": olympic}
    out: dict[str, Any] = {"runs": len(values), "reached": len(reached)}
    for key, value in figures.items():
        out[key] = None if value is None else finite_or_none(value)
        out[f"{key}_reached"] = None if value is None else not math.isinf(value)
    out.update(cv_reached=cv(reached), values=[None if v is None else float(v) for v in values])
    return out
