"""The short table rank 0 prints of a run summary (a micro benchmark's: ai500/micro/summary.py)."""

from __future__ import annotations

import numpy as np

from ai500.micro import summary as micro_summary
from ai500.summary_common import energy_line, fmt, rank_problem_lines, system_line


def cost_line(c: dict) -> str:
    """One table line for a cost summary: the cost, or n/a with the reason."""
    hours = f"{fmt(c['node_hours_to_quality'])} node-hours"
    if c["cost_to_quality"] is None:
        return (f"  cost           n/a, {hours} to quality: "
                f"{c.get('reason') or 'no price or no time to quality'}")
    return f"  cost           {fmt(c['cost_to_quality'])} {c['currency'] or ''} to quality ({hours})"


def resume_lines(s: dict) -> list[str]:
    """The table's lines for a resumed run: its training time to quality and its segments."""
    lines = [(f"                  {fmt(s['time_to_quality_training_s'], ' s')} training time "
             "(the sum of the segments' time from run_start; initialisation, gaps and work "
             "lost after a checkpoint excluded)")]
    for g in s["segments"]:
        epochs = "-".join(map(str, sorted(set(g["epochs_recorded"])))) or "none"
        origin = ("" if g["resumed_from_epoch"] is None else
                  f", resumed from the checkpoint of epoch {g['resumed_from_epoch']}")
        branch = "" if g["in_lineage"] else " (not in the final model's lineage)"
        lines.append(f"  segment {g['segment']:<6} {g['ranks']} rank(s), epochs {epochs}{origin}, "
                     f"traces {g['status']}{branch}")
    return lines


def accounting_lines(t: dict) -> list[str]:
    """The table's time accounting: one line per window (to quality, whole run) it has."""
    lines = []
    for window, label in (("to_quality", "to quality"), ("run", "whole run")):
        a = t[window]
        if a is not None:
            share = "n/a" if a["other_share"] is None else f"{100 * a['other_share']:.2f} %"
            lines.append(f"  time {label:<10} {fmt(a['total_s'], ' s')} = training "
                         f"{fmt(a['training_s'], ' s')} + evaluation {fmt(a['evaluation_s'], ' s')}"
                         f" + checkpoint {fmt(a['checkpoint_s'], ' s')} + other "
                         f"{fmt(a['other_s'], ' s')} ({share})")
    return lines


def checkpoint_line(c: dict) -> str:
    """One table line for the checkpoints rank 0 wrote."""
    return (f"  checkpoints    {c['written']} written, last {fmt(c['bytes_last'], ' B')}, "
            f"write {fmt(c['write_s_mean'], ' s')} mean, {fmt(c['write_s_max'], ' s')} max")


def memory_line(m: dict | None) -> str:
    """One table line: the ranks by stage (ai500.data.stream) and the largest peak RSS."""
    if m is None:  # a summary written before issue 17
        return "  memory         not recorded"
    stages = ", ".join(f"{mode} on {len(ranks)} rank(s)" for mode, ranks in m["stage"].items()
                       ) if m["stage"] else "stage not recorded"
    peak = (f"peak RSS {fmt(m['peak_rss_bytes_max'], ' B')} (rank {m['peak_rss_rank_max']}, "
            "largest)" if m["peak_rss_bytes_max"] is not None else "peak RSS not recorded")
    reason = f" [rank 0: {m['stage_reason_rank0']}]" if m.get("stage_reason_rank0") else ""
    return f"  memory         {stages}; {peak}{reason}"


def format_summary(s: dict) -> str:
    """A short human table of a run summary, training or micro benchmark."""
    if s.get("kind") == "micro":
        return micro_summary.format_summary(s)
    q = s["quality"]
    tp = s["throughput"]
    per_rank = tp["per_rank_samples_per_s"]
    lines = [
        (f"ai500 {s['benchmark']} ({s['preset']}) on {s['ranks']} rank(s), "
        f"{s['nodes']} node(s): status {s['status']}"),
        system_line(s.get("system")),
        f"  quality        {q['metric']} best {fmt(q['best'])} (target {q['target']}): "
        + ("reached" if q["reached"] else "NOT reached"),
        f"  time to quality {fmt(s['time_to_quality_s'], ' s')}"
        + (f" (epoch {s['time_to_quality_epoch']})" if q["reached"] else "")
        + (" on the MLPerf clock (wall time from the first start, interruptions included: not "
           "a valid MLPerf result)" if s["resumed"] else ""),
        *(resume_lines(s) if s["resumed"] else []),
        *([f"  reference      {s['reference']['verdict']}: {s['reference']['message']}"]
          if s.get("reference") else []),
        (f"  initialisation {fmt(s['init_s'], ' s')}   run {fmt(s['run_s'], ' s')}   "
        f"epochs {s['epochs_completed']}"),
        (f"  throughput     {fmt(tp['samples_per_s'], ' samples/s')} total, "
        f"{fmt(float(np.mean(per_rank)) if per_rank else None, ' samples/s')} per rank (mean)"),
        f"                 ({tp['method']})",
        (f"  model FLOPs    {fmt(s['flops']['per_sample_train'])} per training sample -> "
        f"{fmt(s['flops']['flops_per_s'], ' FLOP/s')} in {s.get('precision', 'fp32')}"
        + (" with XLA" if s.get("xla") else "")),
        (f"  Valid FLOPS    {fmt(s['flops']['valid_flops_per_s'], ' FLOP/s')} "
         f"({s['flops']['valid_flops_definition']})"),
        energy_line(s["energy"]),
        cost_line(s["cost"]),
        (f"  load imbalance {fmt(s['load_imbalance']['median'])} median, "
        f"{fmt(s['load_imbalance']['max'])} max (slowest/fastest rank epoch time)"),
        memory_line(s.get("memory")),
    ]
    lines.extend(accounting_lines(s["time_accounting"]))
    if s.get("checkpoints"):
        lines.append(checkpoint_line(s["checkpoints"]))
    lines.extend(rank_problem_lines(s))
    lines.extend(f"  {why}" for why in s.get("lineage_problems", []))
    return "\n".join(lines)
