import numpy as np
import pytest

from qvl_grasp.augment import AugmentConfig, noisy_bins, rotate
from qvl_grasp.baselines import pca_grasp
from qvl_grasp.geometry import angle_difference
from qvl_grasp.synthetic import render_scene


@pytest.mark.parametrize("degrees", [15.0, -12.0, 90.0])
def test_rotation_turns_image_mask_and_rectangles_together(degrees):
    rng = np.random.default_rng(3)
    image, mask, grasps = render_scene(rng, 320, 240)
    turned, turned_grasps, turned_mask = rotate(image, grasps, degrees, mask)
    assert turned.size == image.size
    # the object's axis (from the turned mask) and the turned labels agree: grasps stay across it
    axis = pca_grasp(turned_mask, jaw=10)
    for grasp in turned_grasps:
        assert angle_difference(grasp.theta, axis.theta) < 4
        assert turned_mask[int(round(grasp.cy)), int(round(grasp.cx))]  # centres stay on the object
    assert turned_grasps[0].theta == pytest.approx(((grasps[0].theta + degrees + 90) % 180) - 90)


def test_label_noise_moves_fields_by_at_most_one_bin_and_wraps_the_angle():
    rng = np.random.default_rng(0)
    bins = (0, 1000, 179, 500, 0)
    seen = set()
    for _ in range(500):
        noisy = noisy_bins(bins, rng, probability=1.0)
        assert noisy[0] in (0, 1) and noisy[1] in (999, 1000) and noisy[4] in (0, 1)  # clamped at the edges
        assert noisy[2] in (178, 0) and noisy[3] in (499, 501)
        seen.add(noisy[2])
    assert seen == {178, 0}
    assert noisy_bins(bins, rng, probability=0.0) == bins


def test_masked_field_drops_exactly_that_fields_digits_from_the_loss(qvl_tiny_backbone):
    from PIL import Image

    from qvl import chat
    from qvl_grasp.prompting import conversation, mask_field_labels

    tokenizer = qvl_tiny_backbone.tokenizer
    image = Image.new("RGB", (64, 64))
    answers = ["512 304 27 118 246", "1 22 3 1000 5"]
    batch = chat.sft_batch(qvl_tiny_backbone.processor, [conversation(image, a, (64, 64)) for a in answers])
    labels = mask_field_labels(batch["labels"].clone(), tokenizer, [2, None], chat.IGNORE_INDEX)
    kept = [tokenizer.decode([t for t in row.tolist() if t != chat.IGNORE_INDEX]) for row in labels]
    assert kept == ["512 304  118 246<|im_end|>", "1 22 3 1000 5<|im_end|>"]
    labels = mask_field_labels(batch["labels"].clone(), tokenizer, [0, 4], chat.IGNORE_INDEX)
    kept = [tokenizer.decode([t for t in row.tolist() if t != chat.IGNORE_INDEX]) for row in labels]
    assert kept == [" 304 27 118 246<|im_end|>", "1 22 3 1000 <|im_end|>"]


def test_augment_config_rejects_probabilities_outside_0_1():
    with pytest.raises(ValueError):
        AugmentConfig(label_noise_prob=1.5)


def test_a_rotation_past_180_degrees_is_refused_naming_the_key(qvl_host):
    from qvl.config import ConfigError, load_config

    assert load_config(qvl_host.task("grasp"), [], ["task.augment.rotation_degrees=180"]).task.augment.rotation_degrees == 180
    with pytest.raises(ConfigError) as caught:
        load_config(qvl_host.task("grasp"), [], ["task.augment.rotation_degrees=200"])
    assert caught.value.problems == ["--set task.augment.rotation_degrees=200: task.augment.rotation_degrees: "
                                     "must be <= 180.0: 200.0"]


def test_answer_vocabulary_loss_is_cross_entropy_over_the_twelve_answer_tokens(qvl_tiny_backbone):
    import torch
    import torch.nn.functional as F
    from PIL import Image

    from qvl import chat
    from qvl_grasp.answer_loss import answer_token_ids, answer_vocabulary_loss
    from qvl_grasp.prompting import conversation

    tokenizer = qvl_tiny_backbone.tokenizer
    ids = answer_token_ids(tokenizer)
    assert tokenizer.decode(ids) == "0123456789 <|im_end|>"
    image = Image.new("RGB", (64, 64), "red")
    batch = chat.sft_batch(qvl_tiny_backbone.processor, [conversation(image, a, (64, 64), "sys", "grasp?")
                                                         for a in ("512 304 27 118 246", "1 2 3 4 5")])
    with torch.no_grad():
        ours = answer_vocabulary_loss(qvl_tiny_backbone.model, tokenizer, batch)["loss"]
        logits = qvl_tiny_backbone.model(**{k: v for k, v in batch.items() if k != "labels"}).logits
    targets = batch["labels"][:, 1:]
    keep = targets != chat.IGNORE_INDEX
    restricted = logits[:, :-1][keep][:, ids]
    expected = F.cross_entropy(restricted, torch.tensor([ids.index(t) for t in targets[keep].tolist()]))
    assert ours.item() == pytest.approx(expected.item(), rel=1e-4)


def test_working_copy_keeps_the_quantized_labels():
    from qvl_grasp.collate import _working_copy
    from qvl_grasp.quantizer import Quantizer

    rng = np.random.default_rng(5)
    image, _, grasps = render_scene(rng, 640, 480)
    small, scaled = _working_copy(image, grasps, (128, 96))
    assert small.size == (256, 192)
    for original, copy in zip(grasps, scaled):
        a, b = Quantizer(640, 480).encode(original), Quantizer(*small.size).encode(copy)
        assert all(abs(x - y) <= 1 for x, y in zip(a, b))  # equal up to rounding
