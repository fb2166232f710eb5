"""The built-in demo task ``colors``: name the colour of a square, by prompt-masked SFT.

It is small enough to train on two CPU cores in a few minutes, yet runs every piece a real task
does: images through the Qwen processor, chat-format SFT, generation, metrics and a baseline.
It is registered exactly like a third-party plugin (see ``qvl.plugins.DEFAULT_PLUGINS``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from qvl.config import positive
from qvl.data import image_folder
from qvl.errors import UserError
from qvl.markers import hookimpl
from qvl.report import accuracy, majority_class, pyplot
from qvl.samples import Samples
from qvl.task import Task

if TYPE_CHECKING:
    from qvl.backbone import Backbone
    from qvl.config import RunConfig

# hook API 4: the core calls these hooks for this plugin's own task only
QVL_HOOK_API = 4
TASK_NAME = "colors"
PALETTE = {
    "red": (220, 30, 30),
    "green": (30, 170, 40),
    "blue": (30, 60, 220),
    "yellow": (235, 220, 40),
    "white": (245, 245, 245),
    "black": (15, 15, 15),
    "purple": (130, 40, 170),
    "orange": (245, 140, 20),
}


def _known_colors(instance: Any, attribute: attrs.Attribute, value: list[str]) -> None:
    unknown = [name for name in value if name not in PALETTE]
    if unknown or len(value) < 2:
        raise ValueError(
            f"'{attribute.name}' must list at least two of {', '.join(PALETTE)}; unknown: {unknown}"
        )


@attrs.define
class ColorsConfig:
    """Demo: name the colour of a square (image -> one word), prompt-masked SFT"""

    colors: list[str] = attrs.field(factory=lambda: list(PALETTE), validator=_known_colors)
    question: str = "What colour is the square? Answer with one word."
    image_size: int = attrs.field(default=64, validator=positive)
    train_samples: int = attrs.field(default=512, validator=positive)
    val_samples: int = attrs.field(default=64, validator=positive)
    test_samples: int = attrs.field(default=64, validator=positive)
    max_new_tokens: int = attrs.field(default=4, validator=positive)


TASK = Task(
    name=TASK_NAME,
    config_class=ColorsConfig,
    defaults={
        "backbone": {"finetune": "full"},
        "train": {"steps": 200, "batch_size": 8, "lr": 3e-3, "warmup_steps": 10, "log_every": 5,
                  "weight_decay": 0.01},
        "eval": {"batch_size": 16},
        "predict": {"batch_size": 16},
    },
)


@hookimpl
def register_tasks(register: Any) -> None:
    register(TASK)


def render_sample(rng: Any, size: int, color: str) -> Any:
    """A noisy grey background with one square of ``color`` at a random place and size."""
    import numpy as np
    from PIL import Image

    background = rng.integers(70, 180, size=3)
    pixels = np.clip(background + rng.normal(0, 12, size=(size, size, 3)), 0, 255)
    side = int(rng.integers(size // 2, size * 4 // 5 + 1))
    top, left = (int(v) for v in rng.integers(0, size - side + 1, size=2))
    pixels[top : top + side, left : left + side] = PALETTE[color]
    return Image.fromarray(pixels.astype("uint8"), "RGB")


def split_colors(config: ColorsConfig, split: str) -> list[str]:
    """The colour of every sample of a split, in order (cycling through ``colors``)."""
    counts = {"train": config.train_samples, "val": config.val_samples, "test": config.test_samples}
    if split not in counts:
        raise UserError(f"task colors has splits train, val, test; got {split!r}")
    return [config.colors[index % len(config.colors)] for index in range(counts[split])]


@attrs.frozen
class ColorsInfo:
    """What scoring needs about a split besides its samples: the training split's majority colour."""

    majority: str


def synthetic_split(config: ColorsConfig, split: str, seed: int) -> Samples[ColorsInfo]:
    import numpy as np

    colors = split_colors(config, split)
    rng = np.random.default_rng([seed, {"train": 0, "val": 1, "test": 2}[split]])
    samples = [{"id": f"{split}-{index:05d}", "image": render_sample(rng, config.image_size, color), "color": color}
               for index, color in enumerate(colors)]
    return Samples(samples, ColorsInfo(majority=majority_class(split_colors(config, "train"))))


@hookimpl
def build_dataset(task: Task, config: RunConfig, split: str) -> list[dict[str, Any]] | None:
    if split == "predict":
        if config.predict.input:
            return image_folder(config.predict.input, what=f"predict.input = {config.predict.input!r}")
        split = config.predict.split
    return synthetic_split(config.task, split, config.seed)


def conversation(config: ColorsConfig, sample: dict[str, Any], with_answer: bool) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": [{"type": "image", "image": sample["image"]},
                                     {"type": "text", "text": config.question}]}
    ]
    if with_answer:
        messages.append({"role": "assistant", "content": sample["color"]})
    return messages


@hookimpl
def build_collator(task: Task, config: RunConfig, backbone: Backbone, stage: str) -> Any:
    from qvl import chat

    training = stage == "train"

    def collate(samples: list[dict[str, Any]]) -> dict[str, Any]:
        conversations = [conversation(config.task, s, with_answer=training) for s in samples]
        if training:
            return chat.sft_batch(backbone.processor, conversations)
        return chat.prompt_batch(backbone.processor, conversations)

    return collate


@hookimpl
def loss(task: Task, backbone: Backbone, batch: dict[str, Any]) -> dict[str, Any] | None:
    from qvl import chat

    return chat.lm_loss(backbone.model, batch)


@hookimpl
def decode(task: Task, config: RunConfig, backbone: Backbone, batch: dict[str, Any]) -> list[dict] | None:
    from qvl import chat

    texts = chat.generate_text(backbone.model, backbone.processor, batch, config.task.max_new_tokens)
    return [{"answer": text.strip().lower(), "raw": text} for text in texts]


def plot_per_color(per_color: dict[str, float], baseline: float, out: Path) -> None:
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(7, 3.5))
    names = list(per_color)
    axis.bar(names, [per_color[n] for n in names], color=[tuple(c / 255 for c in PALETTE[n]) for n in names],
             edgecolor="black", linewidth=0.6)
    axis.axhline(baseline, color="grey", linestyle="--", label=f"majority class ({baseline:.2f})")
    axis.set_ylim(0, 1.05)
    axis.set_ylabel("accuracy")
    axis.set_title("colors: accuracy per colour")
    axis.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(out)
    plt.close(figure)


@hookimpl
def evaluate(task: Task, config: RunConfig, predictions: list[dict], dataset: Any, out_dir: Path,
             info: ColorsInfo) -> dict[str, Any] | None:
    truth = [sample["color"] for sample in dataset]
    answers = [p["answer"] for p in predictions]
    invalid = sum(a not in config.task.colors for a in answers)
    majority = info.majority
    per_color = {
        color: sum(a == t for a, t in zip(answers, truth) if t == color) / max(1, truth.count(color))
        for color in config.task.colors
    }
    baseline = accuracy(truth, [majority] * len(truth))
    plot_per_color(per_color, baseline, Path(out_dir) / "per_color_accuracy.png")
    return {
        "samples": len(truth),
        "accuracy": accuracy(truth, answers),
        "invalid_rate": invalid / max(1, len(truth)),
        "per_color_accuracy": per_color,
        "baselines": {"majority_class": {"answer": majority, "accuracy": baseline}},
    }
