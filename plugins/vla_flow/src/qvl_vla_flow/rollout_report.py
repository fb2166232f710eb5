"""What a rollout reports: each policy's success rate with its 95 % Wilson interval (exact enough
at 50 episodes, unlike the normal approximation near 0 or 1), episode lengths, the printed table
(``qvl.report.EvalResult``'s) and the plots (success bars, a strip of frames per policy).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from qvl.report import EvalResult, pyplot

if TYPE_CHECKING:
    from qvl_vla_flow.play import EpisodeResult


def wilson_interval(successes: int, episodes: int, z: float = 1.96) -> tuple[float, float]:
    """The 95 % Wilson score interval of a success rate."""
    if episodes == 0:
        return (0.0, 1.0)
    p = successes / episodes
    denominator = 1 + z * z / episodes
    centre = (p + z * z / (2 * episodes)) / denominator
    half = z * math.sqrt(p * (1 - p) / episodes + z * z / (4 * episodes * episodes)) / denominator
    return (max(0.0, centre - half), min(1.0, centre + half))


def summarise(results: Sequence[EpisodeResult], fps: float) -> dict[str, Any]:
    """Success rate (with its interval), episode length and time to success of one policy."""
    wins = [r for r in results if r.success]
    low, high = wilson_interval(len(wins), len(results))
    summary: dict[str, Any] = {
        "episodes": len(results), "successes": len(wins),
        "success_rate": len(wins) / len(results) if results else 0.0, "ci95": [round(low, 4), round(high, 4)],
        "mean_steps": float(np.mean([r.steps for r in results])) if results else 0.0,
        "steps_to_success": float(np.mean([r.steps for r in wins])) if wins else None,
        "seconds_to_success": float(np.mean([r.steps for r in wins])) / fps if wins else None,
        "wall_seconds_per_step": float(sum(r.seconds for r in results) / max(1, sum(r.steps for r in results))),
    }
    return summary


def plot_success(summary: dict[str, Any], path: Path) -> Path:
    """Bars of success rate per policy with their 95 % intervals."""
    plt = pyplot()
    policies = summary["policies"]
    names = list(policies)
    rates = [policies[n]["success_rate"] for n in names]
    errors = [[r - policies[n]["ci95"][0] for n, r in zip(names, rates)],
              [policies[n]["ci95"][1] - r for n, r in zip(names, rates)]]
    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    ax.bar(names, rates, yerr=errors, capsize=6, color=["tab:blue", "tab:gray", "tab:green"][: len(names)])
    for i, (rate, name) in enumerate(zip(rates, names)):
        ax.text(i, policies[name]["ci95"][1] + 0.02, f"{rate:.0%}", ha="center", va="bottom")
    ax.set_ylim(0, 1.1)
    ax.set_ylabel("success rate (95 % CI)")
    episodes = policies[names[0]]["episodes"]
    ax.set_title(f"{summary['env']}: {episodes} unseen seeds", fontsize=9)
    return _save(fig, path, dpi=110)


def plot_frames(results: dict[str, list[EpisodeResult]], path: Path, count: int = 8) -> Path | None:
    """A strip of ``count`` frames of the first kept episode of each policy (model's first)."""
    plt = pyplot()
    rows = [(name, next((r for r in played if r.frames), None)) for name, played in results.items()]
    rows = [(name, r) for name, r in rows if r is not None]
    if not rows:
        return None
    fig, axes = plt.subplots(len(rows), count, figsize=(1.6 * count, 1.75 * len(rows)), squeeze=False)
    for row, (name, result) in enumerate(rows):
        picks = np.linspace(0, len(result.frames) - 1, count).round().astype(int)
        for col, index in enumerate(picks):
            ax = axes[row][col]
            ax.imshow(result.frames[index])
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"step {index}", fontsize=7)
        axes[row][0].set_ylabel(f"{name}\n{'success' if result.success else 'failure'}", fontsize=8)
    return _save(fig, path, dpi=90)


def _save(fig: Any, path: Path, dpi: int) -> Path:
    plt = pyplot()
    fig.tight_layout()
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp, dpi=dpi)
    plt.close(fig)
    tmp.replace(path)
    return path


# the rollout table's columns: (summary key, title)
ROLLOUT_COLUMNS = [("success_rate", "success rate (95 % CI)"), ("successes", "successes"), ("episodes", "episodes"),
                   ("mean_steps", "mean steps"), ("steps_to_success", "steps to success")]


def comparison(summary: dict[str, Any]) -> EvalResult:
    """The rollout's policies as the model against its baselines (random, expert), each success rate
    with its Wilson interval."""
    policies = dict(summary["policies"])
    return EvalResult(model=policies.pop("model", {}), baselines=policies, columns=ROLLOUT_COLUMNS,
                      intervals={name: {"success_rate": tuple(s["ci95"])} for name, s in summary["policies"].items()})


def format_table(summary: dict[str, Any]) -> str:
    """What the rollout stage prints: :func:`comparison`'s table."""
    return comparison(summary).table().rstrip("\n")
