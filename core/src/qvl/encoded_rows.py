"""Chat rows tokenized once: a row's token arrays kept, each batch rebuilt from them with only its
images and clips through the processor.

:class:`PromptRows` is the same for rows made fresh each step from a few prompts: each distinct prompt
is tokenized once (with its images' sizes, not their pixels), and a step tokenizes only the answers,
which may change every step (augmented labels).

When a training row never changes (no augmentation of its text or the size of its media), the chat
template, the tokenizer and the processor's expansion of each image or clip into its vision tokens
give the same arrays every epoch; on a small model they are a large part of a step that runs in the
main process (no DataLoader worker pays on 2 cores). A task keeps :func:`encode_row`'s arrays (in
:func:`qvl.prepared.prepare_samples`, about 3 KB a row) and makes each batch with
:func:`batch_from_rows`: the same batch as :func:`qvl.chat.sft_batch` (or
:func:`~qvl.chat.conversation_batch`) of the same conversations, tensor for tensor (tested on both
Qwen-VL families, with images and with clips).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

import attrs
import numpy as np

from qvl.chat import IGNORE_INDEX, Conversation

ROW_KEYS = {"input_ids": None, "mm_token_type_ids": 0, "labels": IGNORE_INDEX}  # per token: the padding value
MEDIA_KEYS = ("image_grid_thw", "video_grid_thw", "second_per_grid_ts")  # per image / clip


def processor_fingerprint(processor: Any, backbone_name: str) -> dict[str, Any]:
    """What a row's arrays depend on besides the row, for a cache's fingerprint: the backbone, its
    vocabulary (tokens a task added included), its chat template and how it patches images and clips."""
    patching = {}
    for name in ("image_processor", "video_processor"):
        part = getattr(processor, name, None)
        if part is not None:
            patching[name] = [type(part).__name__] + [getattr(part, key, None) for key in
                                                      ("patch_size", "merge_size", "temporal_patch_size",
                                                       "min_pixels", "max_pixels")]
    return {"backbone": backbone_name, "vocabulary": len(processor.tokenizer), "template": processor.chat_template,
            "patching": patching}


def encode_row(processor: Any, conversation: Conversation, *, labels: bool = True) -> dict[str, Any]:
    """The arrays of one conversation: its tokens (with the answer ``labels`` of
    :func:`qvl.chat.sft_batch`, or none as :func:`qvl.chat.conversation_batch`) and its media grids."""
    from qvl import chat

    make = chat.sft_batch if labels else chat.conversation_batch
    batch = make(processor, [conversation])
    arrays = {key: batch[key][0].numpy() for key in ROW_KEYS if key in batch}
    arrays.update({key: batch[key].numpy() for key in MEDIA_KEYS if key in batch})
    return arrays


def batch_from_rows(rows: Sequence[dict[str, Any]], conversations: Sequence[Conversation], processor: Any,
                    padding_side: str = "right") -> dict[str, Any]:
    """The batch of ``conversations`` from their :func:`encode_row` arrays ``rows``: the token arrays
    padded on ``padding_side``, the images and clips through the processor's image and video
    processors as :func:`qvl.chat.sft_batch` hands them over. A row whose media no longer match its
    grids (a stale cache) raises."""
    import torch

    from qvl import chat

    images, videos, video_kwargs = chat.vision_inputs(processor, conversations)
    batch: dict[str, Any] = {}
    if images is not None:
        # as uint8 C x H x W tensors: the same pixel values as from the PIL images, a third less time
        # (transformers' torchvision image processor converts every PIL image on its own)
        images = [torch.from_numpy(np.array(image)).permute(2, 0, 1) if getattr(image, "mode", None) == "RGB"
                  else image for image in images]
        batch.update(processor.image_processor(images=images, return_tensors="pt"))
    if videos is not None:
        batch.update(processor.video_processor(videos=videos, return_tensors="pt", **video_kwargs))
    for key in MEDIA_KEYS:
        kept = [row[key] for row in rows if key in row]
        if not kept:
            continue
        cached = np.concatenate(kept)
        if key in batch:
            if not np.array_equal(batch[key].numpy(), cached):
                raise RuntimeError(f"the rows' {key} differ from their media read now: a stale cache")
        else:
            batch[key] = torch.from_numpy(cached)
    width = max(len(row["input_ids"]) for row in rows)
    pad_id = processor.tokenizer.pad_token_id
    mask = torch.zeros(len(rows), width, dtype=torch.long)
    for key, fill in ROW_KEYS.items():
        if key not in rows[0]:
            continue
        dtype = torch.from_numpy(np.asarray(rows[0][key][:0])).dtype
        values = torch.full((len(rows), width), pad_id if fill is None else fill, dtype=dtype)
        for index, row in enumerate(rows):
            length = len(row[key])
            where = slice(width - length, width) if padding_side == "left" else slice(0, length)
            values[index, where] = torch.from_numpy(np.asarray(row[key]))
            mask[index, where] = 1
        batch[key] = values
    batch["attention_mask"] = mask
    return batch


@attrs.frozen
class _PromptParts:
    """One prompt's arrays up to its answer (``head``), and the tokens the template puts after the
    answer text: labelled (``<|im_end|>``) and not (the newline)."""

    head: dict[str, np.ndarray]
    labelled_tail: np.ndarray
    unlabelled_tail: np.ndarray
    media: dict[str, np.ndarray]


def prompt_key(conversation: Conversation, answer: bool = True) -> Hashable | None:
    """What decides the tokens of a conversation's prompt: every message (but the closing assistant
    answer, with ``answer``), each image as the size it is shown at. None when it cannot be told cheaply
    (a clip, an image given as a file) or the answer is not plain text the template copies as it is."""
    if answer:
        if len(conversation) < 2 or conversation[-1].get("role") != "assistant":
            return None
        text = conversation[-1].get("content")
        if not isinstance(text, str) or text != text.strip() or "<think>" in text or "</think>" in text:
            return None
    key: list[Any] = []
    for message in conversation[:-1] if answer else conversation:
        content = message.get("content")
        if isinstance(content, str):
            key.append((message.get("role"), content))
            continue
        parts: list[Any] = [message.get("role")]
        for part in content if isinstance(content, list) else [None]:
            if not isinstance(part, dict):
                return None
            if part.get("type") == "text" or ("text" in part and "image" not in part):
                parts.append(("text", part.get("text")))
            elif "image" in part and isinstance(getattr(part["image"], "size", None), tuple) and "video" not in part:
                parts.append(("image", tuple(part["image"].size),
                              *(part.get(name) for name in ("resized_width", "resized_height", "min_pixels",
                                                            "max_pixels"))))
            else:
                return None
        key.append(tuple(parts))
    return tuple(key)


class PromptRows:
    """:func:`encode_row` arrays of conversations made each step from a few prompts.

    With ``labels`` (SFT rows, :func:`qvl.chat.sft_batch`), the first conversation of each prompt is
    encoded whole, later ones reuse its prompt tokens and tokenize only their closing answer (grasp's
    prompt is the same every step, its answer is augmented: the chat template, the tokenizer over the
    image tokens and the processor's token types were two thirds of its collation). The first
    conversation of a prompt also checks that its answer tokenizes on its own as it does inside the
    template; a prompt where it does not is always encoded whole. Without ``labels``
    (:func:`qvl.chat.conversation_batch`, for heads that pool), a conversation's row is its prompt's.

    :meth:`batch` gives the same batch as those functions, tensor for tensor (tested on both Qwen-VL
    families); only the images go through the processor each time.
    """

    def __init__(self, processor: Any, labels: bool = True, max_prompts: int = 4096) -> None:
        self.processor = processor
        self.labels = labels
        self.max_prompts = max_prompts
        self.prompts: dict[Hashable, Any] = {}  # key -> _PromptParts (labels) or row; None: encode whole

    def batch(self, conversations: Sequence[Conversation], padding_side: str = "right") -> dict[str, Any]:
        """The batch of ``conversations``, as :func:`~qvl.chat.sft_batch` (or ``conversation_batch``) gives it."""
        rows = self.rows(conversations)
        if self.labels and not any((row["labels"] != IGNORE_INDEX).any() for row in rows):
            raise ValueError("no assistant turn in the batch: every SFT conversation needs an assistant answer")
        return batch_from_rows(rows, conversations, self.processor, padding_side)

    def rows(self, conversations: Sequence[Conversation]) -> list[dict[str, Any]]:
        """Each conversation's :func:`encode_row` arrays."""
        keys = [prompt_key(conversation, answer=self.labels) for conversation in conversations]
        known = [i for i, key in enumerate(keys) if key is not None and self.prompts.get(key) is not None]
        tokens = {}
        if self.labels and known:
            answers = [conversations[i][-1]["content"] for i in known]
            tokens = dict(zip(known, self.processor.tokenizer(answers, add_special_tokens=False)["input_ids"]))
        rows = []
        for index, (conversation, key) in enumerate(zip(conversations, keys)):
            if index in tokens:
                rows.append(self._joined(self.prompts[key], np.asarray(tokens[index], dtype=np.int64)))
                continue
            if index in known:  # a label-free row is its prompt's
                rows.append(self.prompts[key])
                continue
            row = encode_row(self.processor, conversation, labels=self.labels)
            if key is not None and key not in self.prompts and len(self.prompts) < self.max_prompts:
                self.prompts[key] = self._split(row, conversation[-1]["content"]) if self.labels else row
            rows.append(row)
        return rows

    def _split(self, row: dict[str, Any], answer: str) -> _PromptParts | None:
        """The prompt's parts of a whole row, or None if its answer's tokens are not the answer alone's."""
        labelled = np.flatnonzero(row["labels"] != IGNORE_INDEX)
        if labelled.size == 0:
            return None
        end = int(labelled[-1]) + 1
        start = end
        while start > 0 and row["labels"][start - 1] != IGNORE_INDEX:  # the last labelled run: this answer
            start -= 1
        alone = np.asarray(self.processor.tokenizer(answer, add_special_tokens=False)["input_ids"], dtype=np.int64)
        inside = row["input_ids"][start:end]
        if len(alone) > len(inside) or not np.array_equal(inside[:len(alone)], alone) \
                or (row.get("mm_token_type_ids") is not None and row["mm_token_type_ids"][start:].any()):
            return None
        return _PromptParts(head={key: row[key][:start] for key in ROW_KEYS if key in row},
                            labelled_tail=inside[len(alone):], unlabelled_tail=row["input_ids"][end:],
                            media={key: row[key] for key in MEDIA_KEYS if key in row})

    @staticmethod
    def _joined(parts: _PromptParts, answer: np.ndarray) -> dict[str, Any]:
        labelled = np.concatenate([answer, parts.labelled_tail])
        after = parts.unlabelled_tail
        row = {"input_ids": np.concatenate([parts.head["input_ids"], labelled, after]),
               "labels": np.concatenate([parts.head["labels"], labelled, np.full(len(after), IGNORE_INDEX, np.int64)])}
        if "mm_token_type_ids" in parts.head:
            types = parts.head["mm_token_type_ids"]
            row["mm_token_type_ids"] = np.concatenate([types, np.zeros(len(labelled) + len(after), types.dtype)])
        row.update(parts.media)
        return row
