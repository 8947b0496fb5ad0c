"""The comparison's charts: test metrics per model (``comparison.png``) and validation curves."""

import contextlib

from recbole_bbq.compare.store import is_ok
from recbole_bbq.data.io import atomic_path

PLOT_METRICS = ("ndcg@10", "recall@10")
PLOT_DPI = 120


def plot_metrics(metrics):
    """The metrics of the chart: NDCG@10 and Recall@10, or the first NDCG/Recall cut-offs."""
    chosen = [m for m in PLOT_METRICS if m in metrics]
    for family in ("ndcg@", "recall@"):
        if not any(m.startswith(family) for m in chosen):
            chosen += [m for m in metrics if m.startswith(family)][:1]
    return chosen or metrics[:2]


@contextlib.contextmanager
def figure_axes(path, figsize):
    """Yield the axes of a one-panel figure (Agg, no pyplot); save it to ``path`` atomically as PNG.

    Args:
        path (str): The PNG file.
        figsize (tuple[float, float]): Width and height in inches.

    Yields:
        matplotlib.axes.Axes: The panel to draw on; the figure is laid out and saved on exit.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=figsize)
    FigureCanvasAgg(figure)
    yield figure.add_subplot(1, 1, 1)
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=PLOT_DPI)


def _no_data(axes, text):
    """Write ``text`` in the middle of an empty panel."""
    axes.text(0.5, 0.5, text, ha="center", va="center", transform=axes.transAxes)


def write_plot(path, rows, metrics, dataset):
    """Grouped bar chart: per metric one bar per model, std as error bars."""
    shown = plot_metrics(metrics)
    models = [row for row in rows if row["n_seeds"] > 0]
    width_in = max(5.0, 1.2 + 0.6 * len(models) * max(len(shown), 1))
    with figure_axes(path, (width_in, 4.0)) as axes:
        if not models or not shown:
            _no_data(axes, "no successful runs")
        width = 0.8 / max(len(models), 1)
        for i, row in enumerate(models):
            x = [j + (i - (len(models) - 1) / 2) * width for j in range(len(shown))]
            means = [row["mean"].get(m, float("nan")) for m in shown]
            errors = [row["std"].get(m) or 0.0 for m in shown]
            axes.bar(x, means, width, yerr=errors, capsize=3, label=f"{row['model']} (n={row['n_seeds']})")
        axes.set_xticks(range(len(shown)))
        axes.set_xticklabels([m.replace("ndcg", "NDCG").replace("recall", "Recall") for m in shown])
        axes.set_ylabel("test score (mean ± std over seeds)")
        axes.set_title(f"{dataset}: test metrics")
        if models:
            axes.legend(fontsize="small")


def write_curves(path, models, seeds, records, valid_metric, dataset):
    """Valid score against epoch for every model (one colour) and seed (one line each)."""
    with figure_axes(path, (7.0, 4.5)) as axes:
        for index, model in enumerate(models):
            for seed in seeds:
                record = records.get((model, seed)) or {}
                curve = record.get("valid_curve") if is_ok(record) else None
                if curve:
                    epochs, scores = [p["epoch"] for p in curve], [p["valid_score"] for p in curve]
                    axes.plot(epochs, scores, color=f"C{index % 10}", marker=".", lw=1.2, label=model)
        labelled = dict(zip(*reversed(axes.get_legend_handles_labels())))  # one legend entry per model
        if labelled:
            axes.legend(labelled.values(), labelled.keys(), fontsize="small")
        else:
            _no_data(axes, "no recorded curves")
        axes.set_xlabel("epoch")
        axes.set_ylabel(f"valid {valid_metric}")
        axes.set_title(f"{dataset}: validation curves (one line per seed)")
