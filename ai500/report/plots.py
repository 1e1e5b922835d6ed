"""The report's plots (PNG, matplotlib's Agg backend): throughput, efficiency, time to quality and
energy to quality against the number of ranks, and every run's quality against time (one panel
per N, one line per seed)."""

from __future__ import annotations

from pathlib import Path

PLOTS = ("throughput", "efficiency", "time_to_quality", "energy_to_quality", "quality_vs_time")


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.8), dpi=100)
    ax.set_xscale("log", base=2)
    ax.grid(True, which="both", alpha=0.3)
    ax.set_xlabel("ranks N")
    return plt, fig, ax


def _plain_numbers(ax) -> None:
    """Label a log y axis with plain numbers (major and minor ticks), not powers of ten."""
    from matplotlib.ticker import FuncFormatter

    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}"))


def _series(rows: list[dict], key: str, scale: float = 1.0):
    pts = [(r["ranks"], r[key]) for r in rows if r.get(key) is not None]
    xs = [n for n, _ in pts]
    if pts and isinstance(pts[0][1], dict):
        med = [s["median"] / scale for _, s in pts]
        err = [[m - s["min"] / scale for m, (_, s) in zip(med, pts)],
               [s["max"] / scale - m for m, (_, s) in zip(med, pts)]]
        return xs, med, err
    return xs, [v / scale for _, v in pts], None


def _save(plt, fig, ax, out: Path, name: str) -> str:
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = out / f"{name}.png"
    fig.savefig(path)
    plt.close(fig)
    return path.name


def _curve(summary: dict, metric: str) -> tuple[list[float], list[float]]:
    """(seconds since run_start at the end of each evaluation, the quality it measured) from a run
    summary's epoch rows; rows without both numbers are left out."""
    points = [(row.get("t_end_s"), row.get(metric)) for row in summary.get("epochs") or []
              if isinstance(row, dict)]
    points = [(t, q) for t, q in points if isinstance(t, (int, float))
              and isinstance(q, (int, float)) and not isinstance(q, bool)]
    return [t for t, _ in points], [q for _, q in points]


def quality_curves(runs: list, metric: str, target: float | None, title: str, out: Path
                   ) -> tuple[dict, dict]:
    """quality_vs_time.png: every completed run's quality after each evaluation against seconds
    since its run_start, one panel per N, one line per seed (and repeat), the target dashed;
    returns ({plot: file name}, {plot: why skipped}) as make_plots does."""
    (out / "quality_vs_time.png").unlink(missing_ok=True)
    curves: dict[int, list[tuple[str, list[float], list[float]]]] = {}
    for r in sorted(runs, key=lambda r: ((r.summary or {}).get("seed") or 0, r.repeat or 0)):
        if not (r.ok and r.ranks and r.kind != "micro"):
            continue
        xs, ys = _curve(r.summary, metric)
        if xs:
            label = f"seed {r.summary.get('seed', '?')}" + (
                f" r{r.repeat}" if (r.repeat or 1) > 1 else "")
            curves.setdefault(r.ranks, []).append((label, xs, ys))
    if not curves:
        return {}, {"quality_vs_time": f"no completed run has {metric} per evaluation"}
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ns = sorted(curves)
    fig, axes = plt.subplots(1, len(ns), figsize=(4.2 * len(ns) + 1, 3.8), dpi=100, sharey=True,
                             squeeze=False)
    for ax, n in zip(axes[0], ns):
        for label, xs, ys in curves[n]:
            ax.plot(xs, ys, marker=".", label=label)
        if target is not None:
            ax.axhline(target, color="k", ls="--", label=f"target {target:g}")
        ax.set_title(f"N = {n}", fontsize=10)
        ax.set_xlabel("seconds since run_start (end of each evaluation)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel(metric)
    fig.suptitle(f"{title}: {metric} against time, every run", fontsize=10)
    fig.tight_layout()
    fig.savefig(out / "quality_vs_time.png")
    plt.close(fig)
    return {"quality_vs_time": "quality_vs_time.png"}, {}


def make_plots(rows: list[dict], info: dict, mode: str, title: str, out: Path) -> tuple[dict, dict]:
    """PNG plots under `out`; returns ({plot: file name}, {plot: why skipped})."""
    for name in PLOTS:  # a plot from an earlier report into the same directory must not linger
        (out / f"{name}.png").unlink(missing_ok=True)
    from matplotlib.ticker import NullLocator

    files, notes = {}, {}
    ns = [r["ranks"] for r in rows]

    def ticks(ax):
        ax.set_xticks(ns)
        ax.set_xticklabels([str(n) for n in ns])
        ax.xaxis.set_minor_locator(NullLocator())

    xs, ys, err = _series(rows, "throughput")
    if xs:
        plt, fig, ax = _figure()
        ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3, label="measured (median, min–max)")
        ideal = [(r["ranks"], r["ideal_throughput"]) for r in rows if r["ideal_throughput"]]
        ax.plot([n for n, _ in ideal], [v for _, v in ideal], "k--", label="ideal N·X(N0)/N0")
        ax.set_yscale("log")
        _plain_numbers(ax)
        ax.set_ylabel("throughput, samples/s")
        ax.set_title(f"{title}: throughput", fontsize=10)
        ticks(ax)
        files["throughput"] = _save(plt, fig, ax, out, "throughput")
    else:
        notes["throughput"] = "no successful run with a throughput"

    xs, ys, _ = _series(rows, "efficiency")
    if xs:
        plt, fig, ax = _figure()
        label = ("weak: E(N) = X(N)/(N·X(N0)/N0)" if mode == "weak" else
                 f"strong: S(N)·N0/N, T = {info['basis']}")
        ax.plot(xs, ys, marker="o", label=label)
        ax.axhline(1.0, color="k", ls="--", label="ideal")
        ax.set_ylim(0, max(1.1, max(ys) * 1.1))
        ax.set_ylabel("parallel efficiency")
        ax.set_title(f"{title}: {mode}-scaling efficiency", fontsize=10)
        ticks(ax)
        files["efficiency"] = _save(plt, fig, ax, out, "efficiency")
    else:
        notes["efficiency"] = "no efficiency (no successful runs)"

    for key, name, ylabel in (("time_to_quality_s", "time_to_quality", "time to quality, s"),
                              ("energy_to_quality_j", "energy_to_quality", "energy to quality, J")):
        xs, ys, err = _series(rows, key)
        if not xs:
            notes[name] = ("no run reached the quality target" if key == "time_to_quality_s" else
                           "no run recorded energy to quality")
            continue
        plt, fig, ax = _figure()
        ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3, label="reached runs (median, min–max)")
        if mode == "strong" and key == "time_to_quality_s":
            ax.plot(xs, [ys[0] * xs[0] / n for n in xs], "k--", label="ideal T(N0)·N0/N")
        ax.set_ylabel(ylabel)
        ax.set_title(f"{title}: {ylabel.split(',')[0]}", fontsize=10)
        ticks(ax)
        files[name] = _save(plt, fig, ax, out, name)
    return files, notes
