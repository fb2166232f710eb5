"""Padding-free batches: every sequence's loss equal to its padded batch's, on both Qwen-VL families,
with text, image and video rows of different lengths; and when qvl packs."""

import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from qvl import chat
from qvl.padding_free import padding_free_batch, supports_padding_free, use_padding_free


@pytest.fixture(scope="module", params=["embedded:qwen3-vl-tiny", "embedded:qwen2.5-vl-tiny"])
def backbone(request):
    from qvl.backbone.loading import load
    from qvl.config import BackboneConfig

    torch.manual_seed(0)
    return load(BackboneConfig(name=request.param, finetune="full"))


def image(shade: int, size: int = 56) -> Image.Image:
    pixels = np.random.default_rng(shade).integers(0, 255, (size, size, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def rows() -> list[list[dict]]:
    """A short text row, an image row, a two-turn image row and a video row: four lengths."""
    frames = [image(10 + i, 64) for i in range(4)]
    return [
        [{"role": "user", "content": "Say yes."}, {"role": "assistant", "content": "yes"}],
        [{"role": "user", "content": [{"type": "image", "image": image(1)}, {"type": "text", "text": "Colour?"}]},
         {"role": "assistant", "content": "a reddish brown with some green in it"}],
        [{"role": "user", "content": [{"type": "image", "image": image(2, 84)}, {"type": "text", "text": "Shape?"}]},
         {"role": "assistant", "content": "square"},
         {"role": "user", "content": "And its size, in a few words, as precisely as you can?"},
         {"role": "assistant", "content": "large"}],
        [{"role": "user", "content": [{"type": "video", "video": frames, "raw_fps": 10.0,
                                       "frames_indices": [0, 3, 6, 9]}, {"type": "text", "text": "Progress?"}]},
         {"role": "assistant", "content": "40"}],
    ]


def token_losses(model, batch) -> list[torch.Tensor]:
    """Each sequence's per-token cross-entropy of its labelled tokens, in order."""
    inputs = {key: value for key, value in batch.items() if key != "labels"}
    with torch.no_grad():
        logits = model(**inputs).logits.float()
    labels = batch["labels"]
    losses = F.cross_entropy(logits[:, :-1].transpose(1, 2), labels[:, 1:], ignore_index=-100, reduction="none")
    if "attention_mask" in batch:  # padded: one row a sequence
        return [row[target != -100] for row, target in zip(losses, labels[:, 1:])]
    starts = (batch["position_ids"][0, 0] == 0).nonzero().flatten().tolist() + [labels.shape[1]]
    per_token, targets = losses[0], labels[0, 1:]
    return [per_token[a:b - 1][targets[a:b - 1] != -100] for a, b in zip(starts, starts[1:])]


def test_every_sequence_has_its_padded_loss(backbone):
    model = backbone.model.eval()
    batch = chat.sft_batch(backbone.processor, rows())
    lengths = batch["attention_mask"].sum(1).tolist()
    assert len(set(lengths)) == 4  # four different lengths: three rows carry padding
    packed = padding_free_batch(model, batch)
    assert "attention_mask" not in packed and packed["input_ids"].shape == (1, sum(lengths))
    assert packed["position_ids"].shape == (4, 1, sum(lengths))
    padded, flat = token_losses(model, batch), token_losses(model, packed)
    assert [len(t) for t in flat] == [len(t) for t in padded] and min(len(t) for t in padded) > 0
    for a, b in zip(padded, flat):
        assert torch.allclose(a.mean(), b.mean(), rtol=1e-5, atol=1e-5)
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-4)


def test_losses_and_gradients_match_padded(backbone):
    model = backbone.model.train()
    batch = chat.sft_batch(backbone.processor, rows(), padding_side="left")  # generation-style padding too
    results = {}
    for padding_free in (False, True):
        model.zero_grad(set_to_none=True)
        loss = chat.lm_loss(model, batch, padding_free=padding_free)["loss"]
        loss.backward()
        weight = model.get_output_embeddings().weight
        results[padding_free] = (loss.detach(), weight.grad.detach().clone())
    assert torch.allclose(results[False][0], results[True][0], rtol=1e-5, atol=1e-5)
    assert torch.allclose(results[False][1], results[True][1], rtol=1e-4, atol=1e-6)
    token_ids = chat.single_token_ids(backbone.tokenizer, ["yes", "square", "large", "<|im_end|>"])
    vocabulary = [chat.answer_vocabulary_loss(model, batch, token_ids, padding_free=p)["loss"] for p in (False, True)]
    assert torch.allclose(vocabulary[0], vocabulary[1], rtol=1e-5, atol=1e-5)


def test_when_qvl_packs(backbone):
    model = backbone.model
    assert supports_padding_free(model)
    assert use_padding_free(model, True) and not use_padding_free(model, False)
    # "auto": sdpa on CPU attends over the whole packed row; only a varlen kernel makes packing pay
    assert model.config._attn_implementation == "sdpa" and not use_padding_free(model, "auto")
    full = {"input_ids": torch.ones(2, 3, dtype=torch.long), "attention_mask": torch.ones(2, 3, dtype=torch.long)}
    assert padding_free_batch(model, full) is full  # nothing to remove


def test_other_models_stay_padded_with_one_warning():
    other = SimpleNamespace(config=SimpleNamespace(model_type="llava", _attn_implementation="flash_attention_2"))
    assert not supports_padding_free(other) and not use_padding_free(other, "auto")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert not use_padding_free(other, True)
        assert not use_padding_free(other, True)
    assert len(caught) == 1 and "llava" in str(caught[0].message)

