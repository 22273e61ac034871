"""PNG plots for benchmark records (matplotlib, Agg backend; optional).

``want_plots(flag)`` decides: an explicit ``--plots``/``--no-plots`` wins,
else the ``STREAMLIB_BENCH_PLOTS`` environment variable (``0``/``1``, set by
``python -m benchmarks``), else "yes if matplotlib is installed".
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence


def matplotlib_available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def want_plots(flag: bool | None) -> bool:
    """Whether to render plots; raises RuntimeError for ``--plots`` without matplotlib."""
    if flag is None:
        env = os.environ.get("STREAMLIB_BENCH_PLOTS")
        flag = None if env is None else env == "1"
    if flag is None:
        return matplotlib_available()
    if flag and not matplotlib_available():
        raise RuntimeError("--plots needs matplotlib (pip install matplotlib)")
    return flag


def add_plot_flag(parser: Any) -> None:
    """``--plots`` / ``--no-plots`` (default: automatic, see ``want_plots``)."""
    import argparse

    parser.add_argument("--plots", action=argparse.BooleanOptionalAction, default=None,
                        help="render PNG plots (default: when matplotlib is installed)")


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # no display needed; must precede the pyplot import
    import matplotlib.pyplot as plt

    return plt


def histogram(path: Path, series: Mapping[str, Sequence[float]], *, title: str, xlabel: str,
              bins: int = 60, marks: dict[str, float] | None = None, log_y: bool = False) -> Path:
    """Overlaid histograms of ``series`` (label -> values); vertical ``marks``."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    everything = [v for values in series.values() for v in values]
    lo, hi = (min(everything), max(everything)) if everything else (0.0, 1.0)
    edges = [lo + (hi - lo) * i / bins for i in range(bins + 1)] if hi > lo else bins
    for label, values in series.items():
        if len(values):
            ax.hist(values, bins=edges, alpha=0.6, label=label)  # shared bins: comparable
    for label, x in (marks or {}).items():
        ax.axvline(x, linestyle="--", linewidth=1, color="black")
        ax.annotate(label, (x, 1), xycoords=("data", "axes fraction"), rotation=90,
                    va="top", ha="right", fontsize=8)
    if log_y:
        ax.set_yscale("log")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("count")
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def lines(path: Path, series: Mapping[str, tuple[Sequence[float], Sequence[float]]], *,
          title: str, xlabel: str, ylabel: str, hlines: dict[str, float] | None = None,
          style: str = "-") -> Path:
    """Line plots of ``series`` (label -> (xs, ys)) with labelled horizontal ``hlines``."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    for label, (xs, ys) in series.items():
        ax.plot(xs, ys, style, label=label, linewidth=1, markersize=2)
    for label, y in (hlines or {}).items():
        ax.axhline(y, linestyle="--", linewidth=1, color="grey")
        ax.annotate(label, (0, y), xycoords=("axes fraction", "data"), va="bottom", fontsize=8)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def bars(path: Path, groups: Mapping[str, Mapping[str, float]], *, title: str, ylabel: str,
         log_y: bool = False) -> Path:
    """Grouped bars: ``groups`` maps a case to {method: value}."""
    plt = _pyplot()
    cases = list(groups)
    methods: list[str] = []
    for values in groups.values():
        methods += [m for m in values if m not in methods]
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    width = 0.8 / max(1, len(methods))
    for i, method in enumerate(methods):
        xs = [c + i * width for c in range(len(cases))]
        ys = [groups[case].get(method, 0.0) for case in cases]
        ax.bar(xs, ys, width=width, label=method)
        for x, y in zip(xs, ys):
            if y:
                ax.annotate(f"{y:.3g}", (x, y), ha="center", va="bottom", fontsize=7)
    ax.set_xticks([c + width * (len(methods) - 1) / 2 for c in range(len(cases))])
    ax.set_xticklabels(cases)
    if log_y:
        ax.set_yscale("log")
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
