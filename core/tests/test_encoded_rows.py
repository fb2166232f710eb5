"""Rows tokenized once: batches rebuilt from their arrays equal the chat batches of the same
conversations, tensor for tensor, on both Qwen-VL families, with images, clips and text alone."""

import numpy as np
import pytest
import torch
from PIL import Image

from qvl import chat
from qvl.encoded_rows import batch_from_rows, encode_row


@pytest.fixture(scope="module", params=["embedded:qwen3-vl-tiny", "embedded:qwen2.5-vl-tiny"])
def processor(request):
    from qvl.backbone.loading import load
    from qvl.config import BackboneConfig

    return load(BackboneConfig(name=request.param, finetune="frozen")).processor


def image(seed: int, width: int, height: int) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8))


def conversations(with_clip: bool) -> list[list[dict]]:
    frames = [np.random.default_rng(i).integers(0, 255, (64, 64, 3), dtype=np.uint8) for i in range(3)]
    rows = [
        [{"role": "user", "content": [{"type": "image", "image": image(1, 64, 64)}, {"type": "text", "text": "Colour?"}]},
         {"role": "assistant", "content": "red"}],
        [{"role": "user", "content": [{"type": "text", "text": "Which is larger?"},
                                      {"type": "image", "image": image(2, 96, 64)},
                                      {"type": "image", "image": image(3, 64, 128)}]},
         {"role": "assistant", "content": "the second one, by a wide margin"}],
        [{"role": "user", "content": "No picture here."}, {"role": "assistant", "content": "fine"}],
    ]
    if with_clip:
        rows.append([{"role": "user", "content": [{"type": "video", "video": frames, "raw_fps": 5.0,
                                                   "frames_indices": [0, 4, 8], "resized_height": 64,
                                                   "resized_width": 64}, {"type": "text", "text": "Done?"}]},
                     {"role": "assistant", "content": "yes"}])
    return rows


@pytest.mark.parametrize("labels, padding_side, with_clip", [(True, "right", True), (True, "left", False),
                                                              (False, "right", True)])
def test_rows_rebuild_the_chat_batch(processor, labels, padding_side, with_clip):
    rows_of = conversations(with_clip)
    make = chat.sft_batch if labels else chat.conversation_batch
    expected = make(processor, rows_of, padding_side=padding_side)
    rows = [encode_row(processor, conversation, labels=labels) for conversation in rows_of]
    assert ("labels" in rows[0]) == labels and rows[2].get("image_grid_thw") is None  # text alone: no grid
    rebuilt = batch_from_rows(rows, rows_of, processor, padding_side)
    assert set(rebuilt) == set(expected)
    for key, value in expected.items():
        assert rebuilt[key].dtype == value.dtype and torch.equal(rebuilt[key], value), key


def test_a_row_whose_media_changed_is_refused(processor):
    rows_of = conversations(with_clip=False)[:1]
    rows = [encode_row(processor, rows_of[0])]
    rows_of[0][0]["content"][0]["image"] = image(1, 128, 64)  # the file behind the row is another size now
    with pytest.raises(RuntimeError, match="image_grid_thw differ.*stale cache"):
        batch_from_rows(rows, rows_of, processor)
