"""``qvl run sft make-data``: a small synthetic example in the three layouts the task reads.

Each image is a coloured circle, square or triangle on a light or a dark noisy grey background. A
third of the conversations ask its colour, a third ask the colour and then, in a second turn, the
background (a multi-turn row), a third ask for both as JSON (per-field scoring). Neither the shape
nor its place is asked: in a default run's few hundred steps the embedded tiny model learnt neither
(shape 0.35-0.40, left/right 0.45 on val), and the example is there to show a run learn. ``train.json`` is written as
LLaMA-Factory's ``mllm_demo.json`` is, ``val.jsonl`` in ShareGPT's layout and ``test.jsonl`` with
OpenAI-style content lists, so that the default run reads all three.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from qvl.builtin.sft.settings import SyntheticConfig
from qvl.data import settings_fingerprint, write_json, write_jsonl

COLORS = {"red": (220, 30, 30), "green": (30, 170, 40), "blue": (30, 60, 220), "yellow": (235, 220, 40),
          "white": (245, 245, 245), "purple": (130, 40, 170)}
SHAPES = ("circle", "square", "triangle")
COLOR_QUESTION = "What colour is the shape? Answer with one word."
BACKGROUND_QUESTION = "Is the background light or dark?"
JSON_QUESTION = "Describe the image as JSON with the keys color and background."
BACKGROUNDS = {"light": (160, 210), "dark": (40, 90)}  # grey levels of each
FILES = {"train": "train.json", "val": "val.jsonl", "test": "test.jsonl"}
VERSION = 3


def summary(settings: SyntheticConfig) -> str:
    """What make-data wrote, in a few words."""
    s = settings
    return (f"{s.train_samples} train (LLaMA-Factory), {s.val_samples} val (ShareGPT), {s.test_samples} test (OpenAI) "
            "conversations about coloured shapes")


def dataset_key(settings: SyntheticConfig, seed: int) -> str:
    """The cache folder's name."""
    s = settings
    return f"sft-synthetic-v{VERSION}-{s.train_samples}-{s.val_samples}-{s.test_samples}-{s.image_size}-s{seed}"


def fingerprint(settings: SyntheticConfig, seed: int) -> dict[str, Any]:
    """Every ``task.synthetic`` setting, the seed and the generator's version."""
    return settings_fingerprint(settings, format="sft-synthetic", seed=seed, version=VERSION)


def render(rng: Any, size: int, color: str, shape: str, background: str) -> Any:
    """A noisy ``background`` (light or dark grey) with one ``shape`` of ``color``, at a random place and size."""
    import numpy as np
    from PIL import Image, ImageDraw

    low, high = BACKGROUNDS[background]
    grey = rng.integers(low, high + 1) + rng.integers(-12, 13, size=3)
    pixels = np.clip(grey + rng.normal(0, 12, size=(size, size, 3)), 0, 255).astype("uint8")
    image = Image.fromarray(pixels, "RGB")
    side = int(rng.integers(size // 2, size * 4 // 5 + 1))
    left, top = (int(v) for v in rng.integers(0, size - side + 1, size=2))
    box = [left, top, left + side - 1, top + side - 1]
    draw = ImageDraw.Draw(image)
    if shape == "circle":
        draw.ellipse(box, fill=COLORS[color])
    elif shape == "square":
        draw.rectangle(box, fill=COLORS[color])
    else:
        draw.polygon([(left + side / 2, top), (left, top + side - 1), (left + side - 1, top + side - 1)],
                     fill=COLORS[color])
    return image


def turns(kind: int, color: str, background: str) -> list[tuple[str, str]]:
    """(question, answer) turns of a conversation of ``kind`` 0 (colour), 1 (colour, then background), 2 (JSON)."""
    if kind == 0:
        return [(COLOR_QUESTION, color)]
    if kind == 1:
        return [(COLOR_QUESTION, color), (BACKGROUND_QUESTION, background)]
    return [(JSON_QUESTION, json.dumps({"color": color, "background": background}))]


def llama_factory_row(image: str, pairs: list[tuple[str, str]]) -> dict[str, Any]:
    messages = []
    for index, (question, answer) in enumerate(pairs):
        messages += [{"content": ("<image>" if index == 0 else "") + question, "role": "user"},
                     {"content": answer, "role": "assistant"}]
    return {"messages": messages, "images": [image]}


def sharegpt_row(image: str, pairs: list[tuple[str, str]]) -> dict[str, Any]:
    conversations = []
    for index, (question, answer) in enumerate(pairs):
        conversations += [{"from": "human", "value": ("<image>\n" if index == 0 else "") + question},
                          {"from": "gpt", "value": answer}]
    return {"conversations": conversations, "images": [image]}


def openai_row(image: str, pairs: list[tuple[str, str]]) -> dict[str, Any]:
    messages: list[dict[str, Any]] = []
    for index, (question, answer) in enumerate(pairs):
        content: list[dict[str, Any]] = [{"type": "image_url", "image_url": {"url": image}}] if index == 0 else []
        content.append({"type": "text", "text": question})
        messages += [{"role": "user", "content": content}, {"role": "assistant", "content": answer}]
    return {"messages": messages}


ROW_WRITERS = {"train": llama_factory_row, "val": sharegpt_row, "test": openai_row}


def write(out: Path, settings: SyntheticConfig, seed: int) -> None:
    """Fill the empty folder ``out``: ``images/`` and the three conversation files."""
    import numpy as np

    (out / "images").mkdir()
    counts = {"train": settings.train_samples, "val": settings.val_samples, "test": settings.test_samples}
    for split_index, (split, count) in enumerate(counts.items()):
        rng = np.random.default_rng([seed, split_index])
        rows = []
        for index in range(count):
            color = list(COLORS)[int(rng.integers(len(COLORS)))]
            shape = SHAPES[int(rng.integers(len(SHAPES)))]
            background = list(BACKGROUNDS)[int(rng.integers(len(BACKGROUNDS)))]
            image = f"images/{split}-{index:05d}.png"
            render(rng, settings.image_size, color, shape, background).save(out / image)
            rows.append(ROW_WRITERS[split](image, turns(index % 3, color, background)))
        if split == "train":
            write_json(out / FILES[split], rows, indent=2)  # a JSON array, as mllm_demo.json
        else:
            write_jsonl(out / FILES[split], rows)
