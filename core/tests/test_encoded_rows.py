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


def sft_conversations(answers: list[str]) -> list[list[dict]]:
    """Two prompts that repeat (one with a system turn and an image at its shown size, one text alone),
    each with its own answers."""
    rows = []
    for index, answer in enumerate(answers):
        if index % 2 == 0:
            rows.append([{"role": "system", "content": "You plan grasps."},
                         {"role": "user", "content": [{"type": "image", "image": image(index, 80, 60),
                                                       "resized_width": 64, "resized_height": 64},
                                                      {"type": "text", "text": "Where?"}]},
                         {"role": "assistant", "content": answer}])
        else:
            rows.append([{"role": "user", "content": "Count to three."}, {"role": "assistant", "content": answer}])
    return rows


@pytest.mark.parametrize("padding_side", ["right", "left"])
def test_prompt_rows_give_the_sft_batch_with_the_prompt_tokenized_once(processor, padding_side, monkeypatch):
    from qvl.encoded_rows import PromptRows

    rows = PromptRows(processor)
    first = sft_conversations(["12 7 0 31 4", "1 2 3", "3 3 3 3 3", "one, two, three"])
    assert all(torch.equal(rows.batch(first, padding_side)[k], v)
               for k, v in chat.sft_batch(processor, first, padding_side=padding_side).items())
    assert len(rows.prompts) == 2 and all(parts is not None for parts in rows.prompts.values())

    later = sft_conversations(["0 0 0 0 0", "uno dos tres, and a much longer answer than before", "255 1 9 9 9",
                               "3"])
    expected = chat.sft_batch(processor, later, padding_side=padding_side)
    whole = []
    monkeypatch.setattr(chat, "sft_batch", lambda *args, **kwargs: whole.append(args) or expected)
    rebuilt = rows.batch(later, padding_side)
    assert whole == []  # every row came from its cached prompt
    assert set(rebuilt) == set(expected)
    for key, value in expected.items():
        assert rebuilt[key].dtype == value.dtype and torch.equal(rebuilt[key], value), key


def test_prompt_rows_encode_whole_what_they_cannot_split(processor):
    from qvl.encoded_rows import PromptRows, prompt_key

    clip = conversations(with_clip=True)[3]
    padded_answer = sft_conversations([" 12 7", "x"])[0]
    assert prompt_key(clip) is None and prompt_key(padded_answer) is None
    assert prompt_key([{"role": "user", "content": "hi"}]) is None  # no answer to split off
    rows = PromptRows(processor)
    mixed = [clip, padded_answer, *sft_conversations(["4 5", "6"])]
    for _ in range(2):
        rebuilt = rows.batch(mixed)
        for key, value in chat.sft_batch(processor, mixed).items():
            assert torch.equal(rebuilt[key], value), key
    assert len(rows.prompts) == 2


def test_prompt_rows_without_labels_give_the_conversation_batch(processor, monkeypatch):
    from qvl.encoded_rows import PromptRows

    def pooled(seeds):  # reward's shape: camera images and the task's text, no answer
        return [[{"role": "user", "content": [{"type": "image", "image": image(seed, 64, 64), "resized_width": 64,
                                               "resized_height": 64}, {"type": "text", "text": f"task {seed % 2}"}]}]
                for seed in seeds]

    rows = PromptRows(processor, labels=False)
    first = pooled([1, 2, 3])
    assert all(torch.equal(rows.batch(first, "left")[k], v)
               for k, v in chat.conversation_batch(processor, first, padding_side="left").items())
    assert len(rows.prompts) == 2
    later = pooled([4, 5, 6, 7])  # new pixels, the same prompts
    expected = chat.conversation_batch(processor, later, padding_side="left")
    monkeypatch.setattr(chat, "conversation_batch", lambda *args, **kwargs: pytest.fail("encoded whole"))
    rebuilt = rows.batch(later, "left")
    assert set(rebuilt) == set(expected) and "labels" not in rebuilt
    for key, value in expected.items():
        assert torch.equal(rebuilt[key], value), key
