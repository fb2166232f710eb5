"""``qvl run vqa stats``: what a generated VQA data set holds (the seed's future item).

Counts by split, sample type, strategy, task and data source, and the answers' balance
(preference and similarity: Video 1 vs 2; progress: a 0-100 histogram), printed as a table and
written as ``stats.json`` and ``stats.png``. Only the few small columns are read, batch by batch.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from qvl.data import write_json

COLUMNS = ("sample_type", "data_gen_strategy", "task", "data_source", "answer")


def dataset_statistics(dataset_dir: Path, out_dir: Path, *, echo: bool = True) -> dict[str, Any]:
    """Count a generated DatasetDict; write ``stats.json`` and ``stats.png`` into ``out_dir``.

    :param echo: print the table to stdout.
    :returns: what ``stats.json`` holds.
    """
    import datasets

    from qvl.errors import UserError

    try:
        data = datasets.load_from_disk(str(dataset_dir))
    except FileNotFoundError as exc:
        raise UserError(f"{dataset_dir}: not a generated VQA data set ({exc})") from None
    if not isinstance(data, datasets.DatasetDict):
        raise UserError(f"{dataset_dir}: a single data set, not the train/val/test DatasetDict generation writes")
    counts: Counter[tuple[str, ...]] = Counter()
    for split, dataset in data.items():
        missing = [c for c in COLUMNS if c not in dataset.column_names]
        if missing:
            raise UserError(f"{dataset_dir}/{split}: no column(s) {missing}; not a generated VQA data set")
        for batch in dataset.select_columns(list(COLUMNS)).with_format("arrow").iter(batch_size=65536):
            counts.update(zip([split] * batch.num_rows, *(batch.column(c).to_pylist() for c in COLUMNS)))
    stats = _summarize(counts, list(data))
    stats["dataset"] = str(dataset_dir)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / "stats.json", stats, indent=1)
    _plot(stats, out_dir / "stats.png")
    if echo:
        print(format_table(stats))
    return stats


def _summarize(counts: Counter[tuple[str, ...]], splits: list[str]) -> dict[str, Any]:
    def tally(*keys: int) -> dict[str, Any]:
        nested: dict[str, Any] = {}
        for key, n in counts.items():
            level = nested
            for k in keys[:-1]:
                level = level.setdefault(key[k], {})
            level[key[keys[-1]]] = level.get(key[keys[-1]], 0) + n
        return _sorted(nested)

    # key positions: 0 split, 1 sample type, 2 strategy, 3 task, 4 data source, 5 answer
    answers = tally(1, 5)
    histogram = [0] * 101
    for answer, n in answers.get("progress", {}).items():
        if answer.isdigit() and int(answer) <= 100:
            histogram[int(answer)] += n
    progress_total = sum(histogram)
    return {
        "total": sum(counts.values()),
        "by_split": {split: sum(n for key, n in counts.items() if key[0] == split) for split in splits},
        "by_split_and_type": tally(0, 1),
        "by_type_and_strategy": tally(1, 2),
        "by_task_and_type": tally(3, 1),
        "by_data_source": tally(4),
        "preference_answers": {a: answers.get("preference", {}).get(a, 0) for a in ("1", "2")},
        "similarity_answers": {a: answers.get("similarity", {}).get(a, 0) for a in ("1", "2")},
        "progress_histogram": histogram,
        "progress_mean": (sum(v * n for v, n in enumerate(histogram)) / progress_total) if progress_total else None,
    }


def _sorted(nested: dict[str, Any]) -> dict[str, Any]:
    return {k: _sorted(v) if isinstance(v, dict) else v for k, v in sorted(nested.items())}


def format_table(stats: dict[str, Any]) -> str:
    """The statistics as aligned text blocks."""
    lines = [f"VQA data set: {stats.get('dataset', '')}  ({stats['total']} samples)", ""]

    def block(title: str, rows: list[tuple[str, ...]]) -> None:
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        lines.append(title)
        for row in rows:
            lines.append("  " + "  ".join(cell.rjust(w) if i else cell.ljust(w)
                                          for i, (cell, w) in enumerate(zip(row, widths))))
        lines.append("")

    types = sorted({t for by in stats["by_split_and_type"].values() for t in by})
    block("samples per split and type", [("split", *types, "total")] + [
        (split, *(str(stats["by_split_and_type"].get(split, {}).get(t, 0)) for t in types), str(n))
        for split, n in stats["by_split"].items()])
    block("strategies", [("type", "strategy", "samples", "share")] + [
        (kind, strategy, str(n), f"{n / sum(by.values()):.1%}")
        for kind, by in stats["by_type_and_strategy"].items() for strategy, n in by.items()])
    block("tasks", [("task", *types)] + [
        (task, *(str(by.get(t, 0)) for t in types)) for task, by in stats["by_task_and_type"].items()])
    block("data sources", [("data source", "samples")] + [
        (source, str(n)) for source, n in stats["by_data_source"].items()])
    answers = [(kind, stats[f"{kind}_answers"]) for kind in ("preference", "similarity")]
    block("answers (which video)", [("type", "1", "2", "share of 1")] + [
        (kind, str(by["1"]), str(by["2"]), f"{by['1'] / max(by['1'] + by['2'], 1):.1%}") for kind, by in answers])
    histogram = stats["progress_histogram"]
    if sum(histogram):
        decile = [sum(histogram[k:k + 10]) + (histogram[100] if k == 90 else 0) for k in range(0, 100, 10)]
        block(f"progress answers (mean {stats['progress_mean']:.1f})", [
            ("range", *(f"{k}-{k + 9 if k < 90 else 100}" for k in range(0, 100, 10))),
            ("samples", *(str(n) for n in decile))])
    return "\n".join(lines).rstrip() + "\n"


def _plot(stats: dict[str, Any], path: Path) -> None:
    from qvl.report import pyplot

    plt = pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    splits = list(stats["by_split"])
    types = sorted({t for by in stats["by_split_and_type"].values() for t in by})
    bottom = [0] * len(splits)
    for kind in types:
        heights = [stats["by_split_and_type"].get(s, {}).get(kind, 0) for s in splits]
        axes[0, 0].bar(splits, heights, bottom=bottom, label=kind)
        bottom = [b + h for b, h in zip(bottom, heights)]
    axes[0, 0].set_title("samples per split")
    axes[0, 0].legend()

    labels = [f"{kind}/{strategy}" for kind, by in stats["by_type_and_strategy"].items() for strategy in by]
    values = [n for by in stats["by_type_and_strategy"].values() for n in by.values()]
    axes[0, 1].barh(labels, values)
    axes[0, 1].invert_yaxis()
    axes[0, 1].set_title("samples per strategy")

    kinds = ["preference", "similarity"]
    for offset, answer in ((-0.2, "1"), (0.2, "2")):
        axes[1, 0].bar([i + offset for i in range(len(kinds))], [stats[f"{k}_answers"][answer] for k in kinds],
                       width=0.4, label=f"Video {answer}")
    axes[1, 0].set_xticks(range(len(kinds)), kinds)
    axes[1, 0].set_title("which-video answers")
    axes[1, 0].legend()

    axes[1, 1].bar(range(101), stats["progress_histogram"], width=1.0)
    axes[1, 1].set_xlim(-1, 101)
    axes[1, 1].set_xlabel("answer")
    axes[1, 1].set_title("progress answers")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
