"""The ``sft`` task's splits: which file each one reads, held-out rows, predict inputs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs

from qvl.build import SyntheticGenerator
from qvl.builtin.sft.synthetic import FILES
from qvl.data.conversations import ConversationRow, read_conversations
from qvl.data.images import image_files, is_image_file
from qvl.data.splits import split_items
from qvl.errors import UserError
from qvl.report import majority_class
from qvl.samples import Samples

GENERATOR = SyntheticGenerator("qvl.builtin.sft.synthetic", plugin="sft",
                               description="the synthetic conversation example")
CONVERSATION_SUFFIXES = (".json", ".jsonl")


@attrs.frozen
class SftInfo:
    """What scoring needs besides the samples: the training split's most common last answer, and
    the layouts the split's rows came in."""

    majority: str | None
    layouts: tuple[str, ...] = ()


def _file_setting(config: Any, split: str) -> str:
    return getattr(config.task, f"{split}_file", "") if split in FILES else ""


def split_rows(config: Any, split: str) -> list[ConversationRow]:
    """The conversations of ``split`` (train, val or test).

    Each split reads ``task.<split>_file`` when it is set. Without a ``val_file``, a ``train_file``
    gives ``task.val_fraction`` of its rows to val (by a hash of each row's id, so a row keeps its
    split as the file grows). Without a ``train_file``, every unset split reads the synthetic
    example (``make-data``, or ``task.data_dir``).
    """
    settings = config.task
    if split not in FILES:
        raise UserError(f"task sft has splits train, val, test; got {split!r}")
    if split != "train" and _file_setting(config, split):
        return read_conversations(_file_setting(config, split))
    if settings.train_file:
        if split == "test":
            raise UserError("no test data: set task.test_file (a .json or .jsonl conversation file)")
        rows = read_conversations(settings.train_file)
        if settings.val_file or (settings.val_fraction == 0 and split == "train"):
            return rows
        if settings.val_fraction == 0:
            raise UserError("no validation data: set task.val_file, or task.val_fraction above 0 to hold out "
                            f"rows of task.train_file = {settings.train_file!r}")
        return split_items(rows, settings.val_fraction, 0.0, key=lambda row: row.id, fill_empty=True)[split]
    return read_conversations(GENERATOR.root(config, create=True) / FILES[split])


def with_system(messages: list[dict[str, Any]], system: str) -> list[dict[str, Any]]:
    """``messages`` with ``system`` as their system turn when they have none."""
    if not system or messages[0]["role"] == "system":
        return messages
    return [{"role": "system", "content": system}, *messages]


def sample(row: ConversationRow, system: str) -> dict[str, Any]:
    """A sample: the whole conversation (``messages``, trained on), the ``prompt`` before the last
    answer and that ``answer`` (None for a row that ends with a question)."""
    prompt, answer = row.prompt_and_answer()
    return {"id": row.id, "messages": with_system(row.messages, system), "prompt": with_system(prompt, system),
            "answer": answer}


def training_majority(training_rows: list[ConversationRow]) -> str | None:
    """The most common last answer of the training rows: the majority baseline's answer."""
    answers = [row.messages[-1]["content"].strip() for row in training_rows]
    return str(majority_class(answers)) if answers else None


def dataset(config: Any, split: str) -> Samples[SftInfo]:
    rows = split_rows(config, split)
    majority = training_majority(rows if split == "train" else split_rows(config, "train"))
    info = SftInfo(majority=majority, layouts=tuple(sorted({row.layout for row in rows})))
    return Samples([sample(row, config.task.system) for row in rows], info)


def predict_dataset(config: Any, source: str) -> Samples[SftInfo]:
    """``predict.input``: a conversation file (rows may end with the question), or an image or a
    folder of images asked ``task.question``."""
    path = Path(source).expanduser()
    if path.suffix.lower() in CONVERSATION_SUFFIXES and path.is_file():
        rows = read_conversations(path, need_answer=False)
        return Samples([sample(row, config.task.system) for row in rows],
                       SftInfo(majority=None, layouts=tuple(sorted({row.layout for row in rows}))))
    if path.is_file() and not is_image_file(path):
        raise UserError(f"predict.input = {source!r}: expected a .json or .jsonl conversation file, an image, or a "
                        "folder of images")
    files = image_files(path, what=f"predict.input = {source!r}")
    question = config.task.question
    if not question:
        raise UserError(f"predict.input = {source!r} holds images: set the question to ask about each, "
                        "--set task.question='...'")
    samples = []
    for file in files:
        messages = [{"role": "user", "content": [{"type": "image", "image": str(file)},
                                                 {"type": "text", "text": question}]}]
        messages = with_system(messages, config.task.system)
        samples.append({"id": file.name, "messages": messages, "prompt": messages, "answer": None})
    return Samples(samples, SftInfo(majority=None))
