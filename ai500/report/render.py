"""Writing a report under its directory: report.md, report.html (self-contained: plots embedded as
data URIs), report.json and the plots as PNG."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

from ai500.report.plots import PLOTS, make_plots, quality_curves
from ai500.report.tables import micro_tables, num, runs_table, seeds_tables, training_tables

CSS = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
       "table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #bbb;"
       "padding:3px 8px;text-align:right}th{background:#eee}td:first-child{text-align:left}"
       "img{max-width:48%;margin:4px}")


def _intro(report: dict) -> list[str]:
    mode = report["mode"]
    lines = [
        (f"Benchmark **{report['benchmark']}**, preset **{report['preset']}**, "
         f"**{mode} scaling**, from {', '.join(f'`{s}`' for s in report['sources'])}."),
        "",
        ("Weak scaling keeps the per-rank batch fixed, so the problem grows with N; the figure of "
         "merit is the weak-scaling efficiency E(N) = X(N) / (N · X(1)), X = throughput."
         if mode == "weak" else
         "Strong scaling keeps the global batch (the problem) fixed and divides it among the ranks; "
         "the speedup is S(N) = T(1) / T(N) and the strong-scaling efficiency is S(N) / N "
         f"(T = {report['scaling'].get('basis')})."),
    ]
    for rule in report["batch_rules"]:
        lines += ["", f"Batch rule: {rule}."]
    over = report["oversubscribed"]
    if over["ranks"]:
        lines += ["", (f"**Oversubscribed:** N = {', '.join(map(str, over['ranks']))} ran more "
                       f"ranks than the node's {', '.join(map(str, over['cores']))} cores (mpirun "
                       "--oversubscribe --bind-to none): those points measure ranks time-sharing "
                       "cores, not scaling.")]
    elif over["known"]:
        lines += ["", (f"No point was oversubscribed (ranks ≤ "
                       f"{', '.join(map(str, over['cores']))} cores per node).")]
    else:
        lines += ["", "Oversubscription unknown (no sweep manifest, or ranks placed by Slurm)."]
    systems = report["systems"]
    lines += ["", (f"System (system.json): {systems[0]}." if len(systems) == 1 else
                   f"**The merged runs come from {len(systems)} different systems** (system.json; "
                   "compare their figures with care): " + " | ".join(systems) + ".")]
    return lines


def _lists(report: dict) -> list[tuple[str, list[str]]]:
    failed = [f"`{f['name']}` (N={f['ranks']}): {f['problem']}" for f in report["failed"]]
    missed = [f"`{f['name']}` (N={f['ranks']}): best {num(f['best'])}, target {f['target']}"
              for f in report["not_reached"]]
    damaged = [("Damaged input files (what they hold is left out)",
                report["damaged"])] if report["damaged"] else []
    return [("Failed runs", failed or ["none"]),
            ("Runs that did not reach the quality target", missed or ["none"]), *damaged]


def render(report: dict, out: Path) -> dict[str, Path]:
    """Write the plots, report.md, report.html and report.json under `out`."""
    out.mkdir(parents=True, exist_ok=True)
    runs = report.pop("_runs")
    title = f"{report['benchmark']} ({report['preset']}) {report['mode']}"
    if report["kind"] == "micro":
        tables = micro_tables(report["points"], report["kernels"])
        files, notes = {}, {p: "not drawn for micro benchmarks (see the GFLOPS table)"
                            for p in PLOTS}
    else:
        metric = report["quality"].get("metric") or "quality"
        tables = training_tables(report["points"], report["scaling"], report["mode"], metric)
        # after the time-to-quality and scaling tables (the command line prints those two)
        tables[2:2] = seeds_tables(report["seeds"])
        files, notes = make_plots(report["points"], report["scaling"], report["mode"], title, out)
        curves, why = quality_curves(runs, metric, report["quality"].get("target"), title, out)
        files.update(curves)
        notes.update(why)
    tables.append(runs_table(runs, len(report["sources"]) > 1))
    report["plots"] = {"files": files, "skipped": notes}
    report["tables"] = [{"title": t.title, "headers": t.headers, "rows": t.rows, "note": t.note}
                        for t in tables]
    defs = [(k, v) for k, v in report["definitions"].items() if v]

    md = [f"# ai500 scaling report: {title}", "", *_intro(report), ""]
    md += [t.markdown() for t in tables[:-1]]
    for heading, items in _lists(report):
        md += [f"### {heading}", "", *[f"- {i}" for i in items], ""]
    md += ["### Plots", ""]
    for name in PLOTS:
        md.append(f"![{name}]({files[name]})" if name in files else
                  f"- {name.replace('_', ' ')}: not drawn ({notes[name]})")
    md += ["", tables[-1].markdown(), "### Definitions", ""]
    md += [f"- **{k.replace('_', ' ')}**: {v}" for k, v in defs]
    (out / "report.md").write_text("\n".join(md) + "\n")

    def para(text: str) -> str:
        escaped = html.escape(text)
        while "**" in escaped:
            escaped = escaped.replace("**", "<b>", 1).replace("**", "</b>", 1)
        return escaped.replace("`", "")

    h = ["<!DOCTYPE html><html><head><meta charset='utf-8'>",
         f"<title>ai500 scaling report: {html.escape(title)}</title><style>",
         CSS,
         "</style></head><body>", f"<h1>ai500 scaling report: {html.escape(title)}</h1>"]
    h += [f"<p>{para(line)}</p>" for line in _intro(report) if line]
    h += [t.html() for t in tables[:-1]]
    for heading, items in _lists(report):
        h.append(f"<h3>{html.escape(heading)}</h3><ul>"
                 + "".join(f"<li>{para(i)}</li>" for i in items) + "</ul>")
    h.append("<h3>Plots</h3>")
    for name in PLOTS:
        if name in files:
            data = base64.b64encode((out / files[name]).read_bytes()).decode("ascii")
            h.append(f"<img alt='{name}' src='data:image/png;base64,{data}'>")
        else:
            h.append(f"<p>{html.escape(name.replace('_', ' '))}: not drawn "
                     f"({html.escape(notes[name])})</p>")
    h.append(tables[-1].html())
    h.append("<h3>Definitions</h3><ul>" + "".join(
        f"<li><b>{html.escape(k.replace('_', ' '))}</b>: {html.escape(str(v))}</li>"
        for k, v in defs) + "</ul></body></html>")
    (out / "report.html").write_text("\n".join(h) + "\n")
    (out / "report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    return {"md": out / "report.md", "html": out / "report.html", "json": out / "report.json",
            **{k: out / v for k, v in files.items()}}
