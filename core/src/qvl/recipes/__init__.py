"""Ready hook implementations for the two shapes most tasks have, to import into a plugin module.

pluggy registers every hook implementation a plugin module holds, imported ones included, so a
plugin written for hook API 4 takes a recipe's hooks with one import and writes only what is its
own (the config, the task, ``build_dataset``)::

    QVL_HOOK_API = 4
    from qvl.recipes.answers import build_collator, decode, evaluate, loss  # noqa: F401

* :mod:`qvl.recipes.answers`: the language-model head learns to write a short answer about the
  images (masked-answer SFT), decoded greedily or constrained to ``config.task.answers``.
* :mod:`qvl.recipes.labels`: a linear head classifies the last prompt token's hidden state into
  ``config.task.labels``.

Samples are dicts: ``"image"`` (a PIL image or a path) or ``"images"`` (a list), a ``"question"``
(else ``config.task.question``), and the target (``"answer"``, or ``"label"``: a name or an index).
The majority baseline comes from ``info``: return ``qvl.Samples(items, qvl.recipes.Majority(...))``
from ``build_dataset``. A recipe's hooks answer for any task they are called for, which hook API 4
limits to the importing plugin's own tasks: use recipes only with ``QVL_HOOK_API = 4``. Any hook
can still be written by hand beside the imported ones (a plugin's own ``evaluate``, say).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from qvl.report import majority_class


@attrs.frozen
class Majority:
    """A split's ``info`` for the recipes: the most common training target, the majority baseline."""

    majority: Any

    @classmethod
    def of(cls, train_targets: Iterable[Any]) -> Majority:
        return cls(majority_class(train_targets))


def question_of(sample: Mapping[str, Any], task_config: Any) -> str:
    question = sample.get("question", getattr(task_config, "question", None))
    if not isinstance(question, str):
        raise ValueError(f"sample {sample.get('id', '?')!r}: no 'question', and the task's config has none")
    return question


def user_turn(sample: Mapping[str, Any], task_config: Any) -> dict[str, Any]:
    """The user message: the sample's image(s), then its question."""
    images = sample["images"] if "images" in sample else [sample["image"]] if "image" in sample else []
    content = [{"type": "image", "image": image} for image in images]
    content.append({"type": "text", "text": question_of(sample, task_config)})
    return {"role": "user", "content": content}


def majority_of(info: Any) -> Any:
    return getattr(info, "majority", None)
