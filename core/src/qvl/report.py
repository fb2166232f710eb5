"""One way to report an evaluation: the model against its baselines, as a table, a file and a chart.

A task's ``evaluate`` may return an :class:`EvalResult` instead of a plain dict. The runner then
writes ``eval.json`` from :meth:`EvalResult.to_dict`, ``comparison.md`` (the table) and
``comparison.png`` (one bar chart per metric) beside it, and prints the table. Every chart goes
through :func:`pyplot`, which selects matplotlib's file-only Agg backend once and one house style.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable, Iterable, Sequence
from pathlib import Path
from typing import Any

import attrs

MODEL = "model"
# the one style of qvl's charts; dpi as every chart had it before there was a shared one
STYLE = {"figure.dpi": 120, "savefig.dpi": 120, "axes.spines.top": False, "axes.spines.right": False}
_pyplot: Any = None


def pyplot() -> Any:
    """``matplotlib.pyplot`` drawing to files only (the Agg backend: no display, safe in workers)."""
    global _pyplot
    if _pyplot is None:
        import matplotlib

        matplotlib.use("Agg")
        matplotlib.rcParams.update(STYLE)
        import matplotlib.pyplot as plt

        _pyplot = plt
    return _pyplot


def majority_class(train_labels: Iterable[Hashable]) -> Hashable:
    """The most frequent training label (the first seen among equals): the majority-class baseline."""
    counts = Counter(train_labels)
    if not counts:
        raise ValueError("majority_class: no training labels")
    return counts.most_common(1)[0][0]


def accuracy(truth: Sequence[Any], predicted: Sequence[Any]) -> float:
    """The fraction of equal pairs (0.0 for no samples)."""
    return sum(t == p for t, p in zip(truth, predicted)) / max(1, len(truth))


Interval = tuple[float, float]


@attrs.define
class EvalResult:
    """What a task's evaluation found: the model's metrics, its baselines', and how sure they are.

    :param model: the model's metrics, name -> number (or a nested dict, kept in ``eval.json``).
    :param baselines: baseline name -> its metrics, scored by the same code as the model. A value
        that is not a dict (e.g. ``"skipped": "why"``) is kept in ``eval.json`` but not tabulated.
    :param intervals: system (``"model"`` or a baseline name) -> metric -> (low, high), e.g. a 95 %
        bootstrap interval; shown in the table as ``0.78 [0.70, 0.85]``.
    :param paired_differences: metric -> what the task reports for model minus each baseline (a field of
        ``eval.json`` when given, even empty).
    :param extra: further fields of ``eval.json`` (settings used, per-class numbers, ...).
    :param columns: (metric key, title) of the table's columns; default: the model's numbers. A key
        ``"progress/mae"`` reads ``metrics["progress"]["mae"]`` when there is no key of that name.
    :param titles: row titles for baselines and variants (default: their names).
    :param variants: the model's metrics read another way (e.g. from its greedy answers where the
        model answers from a distribution): rows after the model's, and each a field of ``eval.json``
        under its own name.
    :param model_key: the field of ``eval.json`` holding the model's metrics; ``None`` puts them at the
        top level (the schema of tasks whose metrics are read as ``val/<metric>``).
    :param intervals_in_json: whether ``eval.json`` gets an ``intervals`` field; ``False`` where the
        metrics carry their intervals already and ``intervals`` only decorates the table.

    A baseline (or variant) with no number in any of the table's columns (e.g. the sizes a set of
    baselines used) stays in ``eval.json`` but is not a row.
    """

    model: dict[str, Any]
    baselines: dict[str, Any] = attrs.field(factory=dict)
    intervals: dict[str, dict[str, Interval]] = attrs.field(factory=dict)
    paired_differences: dict[str, Any] | None = None
    extra: dict[str, Any] = attrs.field(factory=dict)
    columns: list[tuple[str, str]] | None = None
    titles: dict[str, str] = attrs.field(factory=dict)
    variants: dict[str, dict[str, Any]] = attrs.field(factory=dict)
    model_key: str | None = MODEL
    intervals_in_json: bool = True

    def systems(self) -> dict[str, tuple[str, dict[str, Any]]]:
        """Row title -> (system name as ``intervals`` knows it, metrics), in table order."""
        columns = self.table_columns()
        result = {MODEL: (MODEL, self.model)}
        for name, scores in [*self.variants.items(), *self.baselines.items()]:
            if isinstance(scores, dict) and any(_is_number(metric(scores, key)) for key, _ in columns):
                result[self.titles.get(name, name)] = (name, scores)
        return result

    def rows(self) -> dict[str, dict[str, Any]]:
        """Row title -> metrics: the model, its variants, then every tabulated baseline."""
        return {title: scores for title, (_, scores) in self.systems().items()}

    def table_columns(self) -> list[tuple[str, str]]:
        if self.columns is not None:
            return list(self.columns)
        return [(key, key) for key, value in self.model.items() if _is_number(value)]

    def table(self) -> str:
        """The comparison as a Markdown table (``comparison.md``, and what ``eval`` prints)."""
        columns = self.table_columns()
        lines = ["| method | " + " | ".join(title for _, title in columns) + " |",
                 "|---|" + "---|" * len(columns)]
        for title, (name, scores) in self.systems().items():
            spans = self.intervals.get(name, {})
            cells = [_cell(metric(scores, key), spans.get(key)) for key, _ in columns]
            lines.append(f"| {title} | " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n"

    def to_dict(self) -> dict[str, Any]:
        """The JSON of ``eval.json``: ``model`` (or the model's metrics at the top level), its variants,
        ``baselines``, then what is present of the rest."""
        result: dict[str, Any] = dict(self.model) if self.model_key is None else {self.model_key: self.model}
        result.update(self.variants)
        result["baselines"] = self.baselines
        if self.intervals and self.intervals_in_json:
            result["intervals"] = {system: {name: list(span) for name, span in spans.items()}
                                   for system, spans in self.intervals.items()}
        if self.paired_differences is not None:
            result["paired_differences"] = self.paired_differences
        result.update(self.extra)
        return result

    def write(self, out_dir: Path, chart: bool = True) -> None:
        """``comparison.md`` and, when asked, ``comparison.png`` in ``out_dir``."""
        from qvl.data import write_text

        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        write_text(out_dir / "comparison.md", self.table())
        if chart:
            comparison_chart(self.rows(), self.table_columns(), out_dir / "comparison.png")


CHART_COLUMNS = 5  # bar charts side by side in comparison.png before it starts another row


def comparison_chart(rows: dict[str, dict[str, Any]], columns: Sequence[tuple[str, str]], out: Path,
                     title: str = "model vs baselines") -> None:
    """One bar chart per metric (at most ``CHART_COLUMNS`` a row), the model first, in red; missing
    numbers are left out."""
    plt = pyplot()
    columns = [(key, name) for key, name in columns if any(_is_number(metric(r, key)) for r in rows.values())]
    if not columns:
        return
    across = min(len(columns), CHART_COLUMNS)
    down = math.ceil(len(columns) / across)
    figure, axes = plt.subplots(down, across, figsize=(3.2 * across, 3.4 * down), squeeze=False)
    for axis, (key, name) in zip(axes.flat, columns):
        names = [n for n, r in rows.items() if _is_number(metric(r, key))]
        axis.bar(range(len(names)), [metric(rows[n], key) for n in names],
                 color=["#d62728" if n == MODEL else "#7f7f7f" for n in names])
        axis.set_xticks(range(len(names)))
        axis.set_xticklabels(names, rotation=30, ha="right", fontsize=8)
        axis.set_title(name, fontsize=9)
    for axis in list(axes.flat)[len(columns):]:
        axis.set_visible(False)
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(out)
    plt.close(figure)


def confusion_axes(axis: Any, matrix: Sequence[Sequence[int]], title: str, xlabel: str = "predicted",
                   ylabel: str = "true", labels: Sequence[str] | None = None, counts: bool | None = None) -> Any:
    """One confusion matrix (rows: truth, columns: prediction) drawn on ``axis``; returns the image.

    :param labels: the classes' tick labels (default: 0, 1, ...).
    :param counts: write each cell's count in it (default: for matrices of at most 12 classes).
    """
    rows = [list(row) for row in matrix]
    n = len(rows)
    image = axis.imshow(rows, cmap="Blues")
    if counts if counts is not None else n <= 12:
        peak = max((max(row) for row in rows if row), default=0) or 1
        for r in range(n):
            for c in range(len(rows[r])):
                axis.text(c, r, str(rows[r][c]), ha="center", va="center", fontsize=8 if n > 6 else 10,
                          color="white" if rows[r][c] > peak / 2 else "black")
    ticks = range(n)
    axis.set_xticks(ticks)
    axis.set_yticks(ticks)
    if labels is not None:
        axis.set_xticklabels(labels)
        axis.set_yticklabels(labels)
    axis.set_xlabel(xlabel)
    axis.set_ylabel(ylabel)
    axis.set_title(title, fontsize=10)
    return image


def confusion_chart(matrix: Sequence[Sequence[int]], out: Path, title: str, xlabel: str = "predicted",
                    ylabel: str = "true", labels: Sequence[str] | None = None) -> Path:
    """``out``: a PNG of one confusion matrix (rows: truth), each cell's count written in it, with a
    colour bar. Several matrices in one picture: :func:`confusion_axes` on each of your axes."""
    plt = pyplot()
    n = len(matrix)
    figure, axis = plt.subplots(figsize=(1.2 * n + 2, 1.1 * n + 1.5))
    image = confusion_axes(axis, matrix, title, xlabel, ylabel, labels)
    figure.colorbar(image, ax=axis, fraction=0.046)
    figure.tight_layout()
    figure.savefig(out)
    plt.close(figure)
    return Path(out)


def metric(scores: dict[str, Any], key: str) -> Any:
    """``scores[key]``, else for ``"a/b"`` ``scores["a"]["b"]`` (``None`` when absent)."""
    if key in scores:
        return scores[key]
    value: Any = scores
    for part in key.split("/"):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _cell(value: Any, span: Interval | None) -> str:
    if value is None:
        return "-"
    text = f"{value:.3f}" if isinstance(value, float) else str(value)
    if span is not None:
        text += f" [{span[0]:.3f}, {span[1]:.3f}]"
    return text
