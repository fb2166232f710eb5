"""A training batch from rows tokenized once (:mod:`qvl_vqa.encoded_rows`): their token arrays padded,
the clips' frames through the video processor."""

from __future__ import annotations

from typing import Any

import numpy as np

from qvl.chat import IGNORE_INDEX

ROW_KEYS = {"input_ids": None, "mm_token_type_ids": 0, "labels": IGNORE_INDEX}  # per token: the padding value
VIDEO_KEYS = ("video_grid_thw", "second_per_grid_ts")  # per clip (Qwen2.5-VL has the second)


def batch_from_rows(rows: list[dict[str, Any]], conversations: list[list[dict[str, Any]]], processor: Any,
                    padding_side: str) -> dict[str, Any]:
    """The SFT batch of ``conversations`` from their encoded ``rows``: the token arrays padded, the
    clips through the video processor as :func:`qvl.chat.sft_batch` gives them to it."""
    import torch

    from qvl import chat

    images, videos, video_kwargs = chat.vision_inputs(processor, conversations)
    if images is not None:
        raise ValueError("rows tokenized once carry clips, not images (task.multi_image)")
    batch: dict[str, Any] = {}
    if videos is not None:
        batch.update(processor.video_processor(videos=videos, return_tensors="pt", **video_kwargs))
        grids = np.concatenate([row["video_grid_thw"] for row in rows])
        if not np.array_equal(batch["video_grid_thw"].numpy(), grids):
            raise RuntimeError("the encoded rows' clips differ from the frames read now: a stale cache")
        for key in VIDEO_KEYS[1:]:
            if key in rows[0]:
                batch[key] = torch.from_numpy(np.concatenate([row[key] for row in rows]))
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
