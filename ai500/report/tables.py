"""The report's tables: the Table type (Markdown and HTML), its cells (median [min–max] over
repeats), the per-N tables of training and micro benchmark reports, and the table of every run."""

from __future__ import annotations

import html
from dataclasses import dataclass

from ai500.report.inputs import Run, lookup, per_rank_batch
from ai500.report.points import ACCOUNTED


def num(value: float | None, digits: int = 4) -> str:
    """A number for a table cell: n/a for missing, else about `digits` significant figures."""
    if value is None:
        return "n/a"
    if value != 0 and (abs(value) >= 1e6 or abs(value) < 1e-3):
        return f"{value:.{digits - 1}e}"
    if abs(value) >= 10 ** digits:
        return f"{value:.0f}"
    return f"{value:.{digits}g}"


def cell(s: dict | None, scale: float = 1.0) -> str:
    """median [min–max] over repeats (just the value for one), plus the olympic mean from 5."""
    if s is None:
        return "n/a"
    text = num(s["median"] / scale)
    if s["n"] > 1:
        text += f" [{num(s['min'] / scale)}–{num(s['max'] / scale)}]"
    if s.get("olympic_mean") is not None:
        text += f" o.m. {num(s['olympic_mean'] / scale)}"
    return text


@dataclass
class Table:
    """One table of the report: written as Markdown or HTML, and into report.json as is."""

    title: str
    headers: list[str]
    rows: list[list[str]]
    note: str = ""

    def markdown(self) -> str:
        lines = [f"### {self.title}", ""]
        if self.note:
            lines += [self.note, ""]
        lines.append("| " + " | ".join(self.headers) + " |")
        lines.append("|" + "|".join("---" for _ in self.headers) + "|")
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in self.rows]
        return "\n".join(lines) + "\n"

    def html(self) -> str:
        head = "".join(f"<th>{html.escape(h)}</th>" for h in self.headers)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
                       for row in self.rows)
        note = f"<p>{html.escape(self.note)}</p>" if self.note else ""
        return (f"<h3>{html.escape(self.title)}</h3>{note}<table><thead><tr>{head}</tr></thead>"
                f"<tbody>{body}</tbody></table>")


def _over(row: dict) -> str:
    if row.get("oversubscribed") is None:
        return "unknown"
    return f"yes (> {row['cores']} cores)" if row["oversubscribed"] else "no"


def training_tables(rows: list[dict], info: dict, mode: str, metric: str) -> list[Table]:
    """A training report's per-N tables: time to quality, the mode's scaling, where the time to
    quality went, FLOPS, energy, cost and load imbalance."""
    n0 = info["baseline_ranks"]
    one = "1" if n0 in (None, 1) else f"N0={n0}"
    tables = [Table(
        "Time to quality",
        ["N", "runs ok/total", "reached target", "time to quality s", f"best {metric}",
         "initialisation s", "oversubscribed"],
        [[str(r["ranks"]), f"{r['ok']}/{r['runs']}", f"{r['reached']}/{r['ok']}",
          cell(r["time_to_quality_s"]), cell(r["best_quality"]), cell(r["init_s"]), _over(r)]
         for r in rows],
        "Time to quality is over the runs that reached the target only; a cell reads n/a where none did.")]
    if mode == "weak":
        tables.append(Table(
            "Throughput and weak scaling",
            ["N", "global batch", "throughput samples/s", "per rank samples/s",
             f"ideal N·X({one}) samples/s", f"X(N)/X({one})", "weak-scaling efficiency E(N)"],
            [[str(r["ranks"]), ", ".join(map(str, r["global_batch_size"])) or "n/a",
              cell(r["throughput"]), cell(r["throughput_per_rank"]), num(r["ideal_throughput"]),
              num(r["throughput_ratio"], 3), num(r["efficiency"], 3)] for r in rows],
            f"E(N) = X(N) / (N · X({one})), X = median throughput over repeats. "
            f"X(N)/X({one}) is the scaled throughput ratio, not a speedup."))
    else:
        key = "time_to_quality_s" if info["basis"] == "time to quality" else "time_per_epoch_s"
        tables.append(Table(
            "Speedup and strong scaling",
            ["N", "per-rank batch", f"T(N) = {info['basis']} s", f"speedup S(N) = T({one})/T(N)",
             "strong-scaling efficiency S(N)/N", "throughput samples/s",
             f"ideal N·X({one}) samples/s"],
            [[str(r["ranks"]), ", ".join(per_rank_batch(g, r["ranks"]) for g in
                                          r["global_batch_size"]) or "n/a",
              cell(r[key]), num(r["speedup"], 3), num(r["efficiency"], 3), cell(r["throughput"]),
              num(r["ideal_throughput"])] for r in rows],
            f"T = {info['basis']} (median over repeats)"
            + ("" if info["basis"] == "time to quality" else
               ", because not every N reached the quality target: the mean of the slowest "
               "rank's training time per measured epoch") + "."))
    tables.append(Table(
        "Where the time to quality went",
        ["N", "time to quality s", "training s", "evaluation s", "checkpoint s", "other s",
         "other %"],
        [[str(r["ranks"]), *(cell(r[f"ttq_{key}"]) for key in ACCOUNTED[:-1]),
          cell(r["ttq_other_share"], 0.01)] for r in rows],
        "From run_start to the end of the evaluation that reached the target, on the job's "
        "timeline: training (all ranks' steps), evaluation, checkpoints written before it, and "
        "other: everything else (trace flushes, waits at the barriers between epochs, on a "
        "resumed run the interruptions), which should be near 0. Runs that reached the target."))
    tables.append(Table(
        "FLOPS", ["N", "FLOPS (GFLOP/s)", "Valid FLOPS (GFLOP/s)", "precision"],
        [[str(r["ranks"]), cell(r["flops_per_s"], 1e9), cell(r["valid_flops_per_s"], 1e9),
          ", ".join(r["precision"]) or "n/a"] for r in rows],
        "FLOPS = training FLOPs per sample × throughput, in the runs' precision (fp32, or mixed "
        "precision bf16/fp16; XLA: an XLA-compiled training step). Valid FLOPS (HPC AI500 v2) = "
        "FLOPS × (achieved / target quality)^n, as recorded by the run (n/a where the run has "
        "none)."))
    tables.append(Table(
        "Energy", ["N", "energy J", "method", "energy to quality J",
                   "Slurm sacct J (cross-check)", "covers"],
        [[str(r["ranks"]), cell(r["energy_j"]), ", ".join(r["energy_methods"]) or "n/a",
          cell(r["energy_to_quality_j"]), cell(r["slurm_energy_j"]),
          ", ".join(r["energy_coverage"]) or "n/a"] for r in rows],
        "From each run summary's energy section: `cpu` is RAPL (packages and DRAM), `gpu` NVML "
        "(the job's GPUs), `cpu+gpu` their sum; `estimated` is a model (CPU time × watts per "
        "core), not a measurement. n/a: the runs recorded no energy."))
    tables.append(Table(
        "Cost", ["N", "node-hours to quality", "cost to quality", "why n/a"],
        [[str(r["ranks"]), cell(r["node_hours_to_quality"]),
          cell(r["cost_to_quality"]) + "".join(f" {c}" for c in r["cost_currency"]),
          "; ".join(r["cost_reasons"])] for r in rows],
        "Nodes × time to quality (hours) × price per node-hour (the runs' system config), over "
        "the runs that reached the target. There is no price unless a site sets one (--system)."))
    tables.append(Table(
        "Load imbalance", ["N", "median (slowest/fastest rank)", "max"],
        [[str(r["ranks"]), cell(r["load_imbalance_median"]), num(r["load_imbalance_max"])]
         for r in rows],
        "Slowest / fastest rank's training time per measured epoch (1.0 = perfectly balanced)."))
    return tables


def _figure(s: dict | None, key: str, digits: int = 4) -> str:
    """One figure of an ai500.spread result: the number, 'not reached', or n/a."""
    if s is None or s.get(f"{key}_reached") is None:
        return "n/a"
    return num(s[key], digits) if s[f"{key}_reached"] else "not reached"


def _range(s: dict | None) -> str:
    return "n/a" if s is None else f"{_figure(s, 'min')}–{_figure(s, 'max')}"


def _cv(s: dict | None) -> str:
    return "n/a" if s is None or s["cv_reached"] is None else f"{100 * s['cv_reached']:.1f} %"


def seeds_tables(rows: list[dict]) -> list[Table]:
    """Time to quality and epochs to target over the seeds at each N, and the verdict against
    the reference convergence points (ai500.report.seeds rows)."""
    spread_rows = []
    for r in rows:
        t, e = r["time_to_quality_s"], r["epochs_to_target"]
        spread_rows.append([
            str(r["ranks"]), ", ".join(map(str, r["global_batch_size"])) or "n/a",
            ", ".join(map(str, r["seeds"])) or "n/a",
            f"{e['reached']} of {e['runs']}" if e else "0 of 0",
            _figure(t, "median"), _range(t), _cv(t), _figure(t, "olympic_mean"),
            _figure(e, "median"), _range(e), _cv(e), _figure(e, "olympic_mean")])
    ref_rows, notes = [], []
    for r in rows:
        ref = r["reference"] or {}
        x = ref.get("reference")
        counts = ", ".join(f"{k} {v}" for k, v in (ref.get("runs") or {}).items())
        ref_rows.append([
            str(r["ranks"]), ", ".join(map(str, r["global_batch_size"])) or "n/a",
            (f"{num(ref['epochs_judged'])} ({ref['judged']})" if ref.get("epochs_judged")
             is not None else f"not reached ({ref['judged']})") if x else "-",
            f"{', '.join(map(str, x['epochs']))} ({x['n']} seeds)" if x else "-",
            f"{x['min']}–{x['max']}" if x else "-", ref.get("verdict") or "n/a",
            counts or "-", ref.get("message") or "no completed run"])
        if x:
            notes.append(f"global batch {x['global_batch']}: {x['date']} on {x['machine']} by "
                         f"`{x['command']}`")
    files = sorted({(r["reference"] or {}).get("file") for r in rows if r["reference"]} - {None})
    return [
        Table("Time to quality over seeds",
              ["N", "global batch", "seeds", "reached", "time to quality s median",
               "min–max", "CV (reached runs)", "olympic mean", "epochs to target median",
               "min–max", "CV (reached runs)", "olympic mean"],
              spread_rows,
              "Over every completed run at N (seeds and repeats); epochs to target = epochs "
              "trained up to the first evaluation that reached the target. A run that did not "
              "reach it counts as slower than every run that did (rules: Definitions, seeds). "
              "n/a: no figure (olympic mean: fewer than 5 runs; CV: fewer than 2 reached)."),
        Table("Against the reference convergence points",
              ["N", "global batch", "epochs judged", "reference epochs", "reference min–max",
               "verdict", "runs by verdict", "why"],
              ref_rows,
              f"References from {', '.join(files) or 'n/a'} as it is now (rule: Definitions, "
              "reference)."
              + "".join(f" Reference {n}." for n in notes)),
    ]


def runs_table(runs: list[Run], several_sources: bool) -> Table:
    """Every run, failed ones included, by N and repeat (with its source if there are several)."""
    headers = ["run", "N", "nodes", "seed", "repeat", "status", "reached", "time to quality s",
               "samples/s", "problem"] + (["source"] if several_sources else [])
    rows = []
    def seed(r: Run) -> int:
        return (r.summary or {}).get("seed") or 0

    for r in sorted(runs, key=lambda r: (r.ranks or 0, seed(r), r.repeat or 0, r.name)):
        s = r.summary or {}
        ttq = num(s.get("time_to_quality_s")) if r.reached else "-"
        if r.reached and s.get("resumed"):  # the MLPerf clock ran through the interruption
            ttq += (f" (resumed: wall clock, not a valid MLPerf result; training time "
                    f"{num(s.get('time_to_quality_training_s'))})")
        row = [r.name, str(r.ranks or "?"), str(r.nodes or "?"),
               "-" if s.get("seed") is None else str(s["seed"]),
               str(r.repeat or "-"), r.status,
               ("yes" if r.reached else "no") if r.ok and r.kind != "micro" else "-", ttq,
               num(lookup(s, "throughput", "samples_per_s")) if r.ok else "-", r.problem or ""]
        rows.append(row + ([r.source] if several_sources else []))
    return Table("Every run", headers, rows)


def micro_tables(rows: list[dict], kernels: list[dict]) -> list[Table]:
    """A micro benchmark report's tables: the runs and peaks per N, and each kernel's GFLOPS."""
    ns = [r["ranks"] for r in rows]
    tables = [Table(
        "Micro benchmark runs",
        ["N", "runs ok/total", "kernels", "practical peak GFLOPS (aggregate)",
         "theoretical peak GFLOPS (aggregate)"],
        [[str(r["ranks"]), f"{r['ok']}/{r['runs']}", cell(r["kernels"]),
          cell(r["practical_peak_gflops"]), cell(r["theoretical_peak_gflops"])] for r in rows],
        "Micro benchmarks time kernels, not training: no time to quality, energy to quality or "
        "speedup. Every rank times the same kernels at once (weak scaling by construction).")]
    tables.append(Table(
        "Aggregate GFLOPS by kernel vs N",
        ["op", "size", "direction", *[f"N={n}" for n in ns], "efficiency at largest N"],
        [[str(k["op"]), str(k["size"]), str(k["direction"]),
          *[cell(k["aggregate_gflops"].get(n)) for n in ns],
          num((k.get("efficiency_at_max") or {}).get("value"), 3)] for k in kernels],
        "Aggregate GFLOPS: the sum of FLOPs over ranks / the slowest rank's median time (run "
        "summary). Efficiency = G(Nmax)·N0 / (Nmax·G(N0))."))
    return tables
