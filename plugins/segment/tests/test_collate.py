"""Training batches (masked JSON answers, heatmap and K targets), the heads and the curriculum."""

import math
import re
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from qvl.backbone.loading import load
from qvl.config import BackboneConfig
from qvl_segment.answers import answer_text
from qvl_segment.collate import SegmentCollator
from qvl_segment.config import SegmentConfig
from qvl_segment.episodes import read_episodes, sample_frame_numbers, to_sampled
from qvl_segment.heads import SegmentHeads, heatmap_loss, lm_weight
from qvl_segment.model import COUNT_KEY, HEATMAP_KEY, SAMPLES_KEY, answer_vocabulary, training_loss
from qvl_segment.synthetic import SyntheticSettings, write_dataset
from qvl_segment.tokens import add_frame_token


@pytest.fixture(scope="module", params=["embedded:qwen3-vl-tiny", "embedded:qwen2.5-vl-tiny"])
def backbone(request):
    return load(BackboneConfig(name=request.param, finetune="full", freeze_embeddings=True), prepare=add_frame_token)


@pytest.fixture(scope="module")
def episodes(tmp_path_factory):
    root = tmp_path_factory.mktemp("episodes")
    write_dataset(root, SyntheticSettings(episodes=8, min_frames=16, max_frames=40), seed=5, workers=1)
    return [e for e in read_episodes(root / "episodes.jsonl") if e.segments][:3]


def _config(**task):
    return SimpleNamespace(task=SegmentConfig(**task))


def test_only_the_json_answer_carries_labels_and_the_targets_follow_the_sampled_frames(backbone, episodes):
    config = _config(num_frames=8, sigma=1.0)
    batch = SegmentCollator(config, backbone.processor, "train")([{"episode": e} for e in episodes])
    tokenizer = backbone.tokenizer
    for row, episode in enumerate(episodes):
        labelled = batch["labels"][row][batch["labels"][row] != -100]
        assert tokenizer.decode(labelled) == answer_text(episode.segments, frames_as_digits=False) + "<|im_end|>"
        prompt = tokenizer.decode(batch["input_ids"][row])
        numbers = sample_frame_numbers(episode.num_frames, 8)
        assert [int(n) for n in re.findall(r"Frame (\d+):", prompt)] == list(numbers)
        # a heatmap peak (exactly 1) at every boundary, in sampled frames
        placed = to_sampled(episode.segments, numbers)
        heat = batch[HEATMAP_KEY][row].numpy()
        assert [int(i) for i in np.flatnonzero(heat[0] == 1.0)] == sorted({s for s, _ in placed})
        assert [int(i) for i in np.flatnonzero(heat[1] == 1.0)] == sorted({e for _, e in placed})
        assert int(batch[COUNT_KEY][row]) == len(episode.segments)


def test_eval_batches_are_left_padded_prompts_with_what_decoding_needs(backbone, episodes):
    batch = SegmentCollator(_config(num_frames=8), backbone.processor, "eval")([{"episode": e} for e in episodes])
    assert "labels" not in batch
    assert (batch["attention_mask"][:, -1] == 1).all()  # left padding: every row ends at the same position
    summary = batch[SAMPLES_KEY][0]
    assert summary["episode_id"] == episodes[0].episode_id
    assert summary["frame_numbers"] == [int(n) for n in sample_frame_numbers(episodes[0].num_frames, 8)]


def test_one_training_forward_gives_every_loss_term_and_gradients_to_heads_and_backbone(backbone, episodes):
    config = _config(num_frames=8, heads_first=0.0, lm_ramp=0.0)
    batch = SegmentCollator(config, backbone.processor, "train")([{"episode": e} for e in episodes])
    heads = SegmentHeads(backbone.hidden_size, 16, 2, config.task.k_max)
    vocabulary = answer_vocabulary(backbone.tokenizer, [answer_text(e.segments, frames_as_digits=False)
                                                         for e in episodes])
    out = training_loss(config, backbone, heads, batch, step=0, max_steps=10, vocabulary=vocabulary)
    assert out["loss"].item() == pytest.approx(out["lm"].item() + out["heatmap"].item() + 0.5 * out["count"].item(),
                                               rel=1e-5)
    # the answer-vocabulary softmax starts near uniform over its few tokens, not over 151,936
    assert out["lm"].item() < math.log(len(vocabulary)) + 2.0
    out["loss"].backward()
    assert heads.project[1].weight.grad.abs().sum() > 0
    layer = next(p for n, p in backbone.model.named_parameters() if "layers.0." in n and p.requires_grad)
    assert layer.grad is not None and layer.grad.abs().sum() > 0
    backbone.model.zero_grad()


def test_the_curriculum_trains_the_heads_first_then_ramps_the_lm_in():
    # 100 steps, heads alone for 20, then the LM term ramps over 10
    assert [lm_weight(s, 100, 0.2, 0.1) for s in (0, 19, 20, 24, 29, 50)] == [0.0, 0.0, 0.1, 0.5, 1.0, 1.0]
    assert lm_weight(0, 100, 0.0, 0.0) == 1.0


def test_focal_heatmap_loss_scales_bce_by_the_distance_to_the_soft_label():
    logits = torch.tensor([[2.0, -1.0, 0.0]])
    targets = torch.tensor([[1.0, 0.5, 0.0]])
    bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    weight = (targets - torch.sigmoid(logits)).abs() ** 2
    assert heatmap_loss(logits, targets, "bce").item() == pytest.approx(bce.mean().item())
    assert heatmap_loss(logits, targets, "focal", 2.0).item() == pytest.approx((bce * weight).mean().item())


def test_heads_shapes():
    out = SegmentHeads(32, 8, 3, k_max=4)(torch.randn(2, 12, 32))
    assert out["boundary_logits"].shape == (2, 2, 12) and out["count_logits"].shape == (2, 5)


@pytest.mark.parametrize("mode", ["both", "heatmap"])
def test_episodes_prepared_once_give_the_same_batches(backbone, episodes, mode, tmp_path, monkeypatch):
    from qvl_segment.encoded_rows import prepared_episodes

    monkeypatch.setenv("QVL_CACHE", str(tmp_path))
    config = _config(num_frames=8, mode=mode)
    rows = prepared_episodes(episodes, config.task, backbone.processor, "tiny")
    assert len(rows) == len(episodes) and rows[episodes[0].episode_id]["frames"].shape == (8, 64, 64, 3)
    samples = [{"id": e.episode_id, "episode": e} for e in episodes]
    plain = SegmentCollator(config, backbone.processor, "train")(samples)
    cached = SegmentCollator(config, backbone.processor, "train", rows)(samples)
    assert set(cached) == set(plain) and ("labels" in plain) == (mode == "both")
    for key, value in plain.items():
        assert cached[key].dtype == value.dtype and torch.equal(cached[key], value), key
    # an episode without a row (validation) decodes and tokenizes as before; evaluation never reads rows
    other = [e for e in read_episodes(episodes[0].source.rpartition(":")[0]) if e.episode_id not in rows][0]
    mixed = SegmentCollator(config, backbone.processor, "train", rows)(samples[:1] + [{"id": "x", "episode": other}])
    expected = SegmentCollator(config, backbone.processor, "train")(samples[:1] + [{"id": "x", "episode": other}])
    assert all(torch.equal(mixed[key], expected[key]) for key in expected)
    assert SegmentCollator(config, backbone.processor, "eval", rows).rows is None
