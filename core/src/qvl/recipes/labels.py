"""Recipe: a linear head classifies the last prompt token's hidden state into ``config.task.labels``.

Import the hooks into a plugin module of hook API 4 (see :mod:`qvl.recipes`). A sample's
``"label"`` is a label name or its index in ``labels``; ``question`` in the task's config serves
samples without one. With a frozen backbone (``backbone.finetune = "frozen"``) only the head
trains, and a checkpoint holds only the head.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qvl.markers import hookimpl
from qvl.recipes import majority_of, user_turn
from qvl.report import EvalResult, accuracy


def label_index(sample: dict[str, Any], labels: list[str]) -> int:
    label = sample["label"]
    if isinstance(label, str):
        if label not in labels:
            raise ValueError(f"sample {sample.get('id', '?')!r}: label {label!r} is not one of {labels}")
        return labels.index(label)
    if not 0 <= int(label) < len(labels):
        raise ValueError(f"sample {sample.get('id', '?')!r}: label index {label} outside 0..{len(labels) - 1}")
    return int(label)


@hookimpl
def build_collator(config: Any, backbone: Any, stage: str) -> Any:
    import torch

    from qvl import chat

    def collate(samples: list[dict[str, Any]]) -> dict[str, Any]:
        batch = chat.prompt_batch(backbone.processor, [[user_turn(s, config.task)] for s in samples])  # left-padded
        if stage != "predict" or all("label" in s for s in samples):
            batch["labels"] = torch.tensor([label_index(s, config.task.labels) for s in samples])
        return batch

    return collate


@hookimpl
def build_head(config: Any, backbone: Any) -> Any:
    import torch

    return torch.nn.Linear(backbone.hidden_size, len(config.task.labels))


def logits(backbone: Any, head: Any, batch: dict[str, Any]) -> Any:
    inputs = {key: value for key, value in batch.items() if key != "labels"}
    hidden = backbone.model(**inputs, output_hidden_states=True).hidden_states[-1]
    return head(hidden[:, -1].float())  # left padding: the last position is the last real token


@hookimpl
def loss(backbone: Any, head: Any, batch: dict[str, Any]) -> dict[str, Any]:
    import torch.nn.functional as F

    return {"loss": F.cross_entropy(logits(backbone, head, batch), batch["labels"])}


@hookimpl
def decode(config: Any, backbone: Any, head: Any, batch: dict[str, Any]) -> list[dict[str, Any]]:
    labels = config.task.labels
    probabilities = logits(backbone, head, batch).softmax(-1)
    return [{"label": labels[int(p.argmax())], "probabilities": dict(zip(labels, map(float, p)))}
            for p in probabilities]


@hookimpl
def evaluate(config: Any, predictions: list[dict[str, Any]], dataset: Any, out_dir: Path, info: Any) -> EvalResult:
    labels = config.task.labels
    truth = [labels[label_index(sample, labels)] for sample in dataset]
    baselines = {}
    majority = majority_of(info)
    if majority is not None:
        name = majority if isinstance(majority, str) else labels[int(majority)]
        baselines["majority_class"] = {"label": name, "accuracy": accuracy(truth, [name] * len(truth))}
    return EvalResult(model={"accuracy": accuracy(truth, [p["label"] for p in predictions])}, baselines=baselines,
                      extra={"samples": len(truth)})
