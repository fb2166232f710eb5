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
    :param paired_differences: metric -> what the task reports for model minus each baseline.
    :param extra: further fields of ``eval.json`` (settings used, per-class numbers, ...).
    :param columns: (metric key, title) of the table's columns; default: the model's numbers.
    :param titles: row titles for baselines (default: their names).
    """

    model: dict[str, Any]
    baselines: dict[str, Any] = attrs.field(factory=dict)
    intervals: dict[str, dict[str, Interval]] = attrs.field(factory=dict)
    paired_differences: dict[str, Any] = attrs.field(factory=dict)
    extra: dict[str, Any] = attrs.field(factory=dict)
    columns: list[tuple[str, str]] | None = None
    titles: dict[str, str] = attrs.field(factory=dict)

    def rows(self) -> dict[str, dict[str, Any]]:
        """Row title -> metrics: the model, then every tabulated baseline."""
        rows = {MODEL: self.model}
        rows.update({self.titles.get(name, name): scores for name, scores in self.baselines.items()
                     if isinstance(scores, dict)})
        return rows

    def table_columns(self) -> list[tuple[str, str]]:
        if self.columns is not None:
            return list(self.columns)
        return [(key, key) for key, value in self.model.items() if _is_number(value)]

    def table(self) -> str:
        """The comparison as a Markdown table (``comparison.md``, and what ``eval`` prints)."""
        columns = self.table_columns()
        systems = {MODEL: MODEL, **{self.titles.get(name, name): name for name in self.baselines}}
        lines = ["| method | " + " | ".join(title for _, title in columns) + " |",
                 "|---|" + "---|" * len(columns)]
        for title, scores in self.rows().items():
            spans = self.intervals.get(systems.get(title, title), {})
            cells = [_cell(scores.get(key), spans.get(key)) for key, _ in columns]
            lines.append(f"| {title} | " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n"

    def to_dict(self) -> dict[str, Any]:
        """The JSON of ``eval.json``: ``model``, ``baselines``, then what is present of the rest."""
        result: dict[str, Any] = {MODEL: self.model, "baselines": self.baselines}
        if self.intervals:
            result["intervals"] = {system: {metric: list(span) for metric, span in spans.items()}
                                   for system, spans in self.intervals.items()}
        if self.paired_differences:
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


def comparison_chart(rows: dict[str, dict[str, Any]], columns: Sequence[tuple[str, str]], out: Path,
                     title: str = "model vs baselines") -> None:
    """One bar chart per metric, the model first; missing numbers are left out."""
    plt = pyplot()
    columns = [(key, name) for key, name in columns if any(_is_number(r.get(key)) for r in rows.values())]
    if not columns:
        return
    figure, axes = plt.subplots(1, len(columns), figsize=(3.2 * len(columns), 3.4), squeeze=False)
    colours = ["#d62728"] + ["#7f7f7f"] * (len(rows) - 1)
    for axis, (key, name) in zip(axes[0], columns):
        names = [n for n, r in rows.items() if _is_number(r.get(key))]
        axis.bar(range(len(names)), [rows[n][key] for n in names], color=colours[:len(names)])
        axis.set_xticks(range(len(names)))
        axis.set_xticklabels(names, rotation=30, ha="right", fontsize=8)
        axis.set_title(name, fontsize=9)
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(out)
    plt.close(figure)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _cell(value: Any, span: Interval | None) -> str:
    if value is None:
        return "-"
    text = f"{value:.3f}" if isinstance(value, float) else str(value)
    if span is not None:
        text += f" [{span[0]:.3f}, {span[1]:.3f}]"
    return text
