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
