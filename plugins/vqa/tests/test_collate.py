"""Answer-only SFT batches and generation prompts, on real tokenized batches of both Qwen-VL families."""

from types import SimpleNamespace

import numpy as np
import pytest

from qvl_vqa.collate import (SAMPLES_KEY, PromptCollator, TrainCollator, augment_frames, conversation,
                             shown_frame_numbers)
from qvl_vqa.config import AugmentConfig, VqaConfig
from qvl_vqa.samples import Item, Video


@pytest.fixture(scope="module", params=["embedded:qwen3-vl-tiny", "embedded:qwen2.5-vl-tiny"])
def backbone(request):
    from qvl.backbone.loading import load
    from qvl.config import BackboneConfig

    return load(BackboneConfig(name=request.param, finetune="frozen"))


def video(trajectory: str, indices: list[int], shade: int) -> Video:
    frames = np.full((len(indices), 64, 64, 3), shade, np.uint8)
    return Video(frames=frames, frame_indices=indices, fps=10.0, trajectory_id=trajectory, num_frames=20)


def item(kind: str, answer: str, swapped: bool = False) -> Item:
    row = {"sample_type": kind, "answer": answer, "prompt": f"Question about {kind}? Task: push the red block",
           "sample_index": 7, "task": "push the red block", "data_gen_strategy": "rewind", "data_source": "test",
           "trajectory_id": "a" if kind == "similarity" else "b", "first_trajectory_id": "a" if kind != "progress" else None,
           "second_trajectory_id": {"preference": "a", "similarity": "c"}.get(kind), "chosen_is_first": True}
    videos = {"preference": [video("a", [0, 5, 10, 15], 40), video("a", [0, 8, 4, 2], 90)],
              "progress": [video("b", [0, 3, 6, 9], 60)],
              "similarity": [video("a", [0, 5, 10, 15], 40), video("c", [0, 6, 12, 18], 50),
                             video("d", [0, 2, 4, 6], 70)]}[kind]
    if swapped:  # as VqaSamples shows a swapped pair: the two candidates exchanged
        videos[-2], videos[-1] = videos[-1], videos[-2]
    return Item(row=row, videos=videos, swapped=swapped)


@pytest.mark.parametrize("multi_image", [False, True])
def test_only_the_answer_and_its_end_token_carry_labels(backbone, multi_image):
    config = VqaConfig(multi_image=multi_image)
    items = [item("preference", "2"), item("progress", "75"), item("similarity", "1", swapped=True)]
    batch = TrainCollator(config, backbone.processor)(items)
    tokenizer = backbone.processor.tokenizer
    labels = batch["labels"]
    for row, expected in zip(labels, ["2", "75", "2"]):  # the swapped similarity answer flips
        kept = row[row != -100]
        assert tokenizer.decode(kept) == expected + "<|im_end|>"
    # everything else is masked: the prompt, every video/image token, the padding
    vision = tokenizer.convert_tokens_to_ids("<|image_pad|>" if multi_image else "<|video_pad|>")
    assert (batch["input_ids"] == vision).sum() > 0
    assert not ((labels != -100) & (batch["input_ids"] == vision)).any()
    assert (labels != -100).sum().item() == 2 + 3 + 2
    masked_share = (labels == -100).float().mean().item()
    assert masked_share > 0.9  # the seed's "~99.7 %" at real resolutions; a few answer tokens here
    if multi_image:
        assert batch["image_grid_thw"].shape[0] == (2 + 1 + 3) * 4  # one image per frame of 6 clips
    else:
        assert batch["video_grid_thw"].shape[0] == 6


def test_prompts_end_with_the_assistant_header_and_carry_the_items(backbone):
    config = VqaConfig()
    items = [item("preference", "1"), item("progress", "40")]
    batch = PromptCollator(config, backbone.processor)(items)
    text = backbone.processor.tokenizer.decode(batch["input_ids"][0])
    assert text.rstrip().endswith("<|im_start|>assistant")
    assert "Video 1:" in text and "Video 2:" in text and "Question about preference?" in text
    summaries = batch[SAMPLES_KEY]
    assert [s["truth"] for s in summaries] == ["1", "40"]
    assert summaries[0]["positions"] == pytest.approx([15 / 19, 2 / 19], abs=1e-6)
    assert [s["cluster"] for s in summaries] == ["a", "b"]  # the chosen video's recording; the progress clip's


def test_a_rewound_clip_plays_forward_in_time():
    assert shown_frame_numbers([0, 5, 10, 15]) == [0, 5, 10, 15]
    assert shown_frame_numbers([0, 8, 4, 2]) == [0, 8, 12, 14]
    assert shown_frame_numbers([12, 9, 6, 3]) == [0, 3, 6, 9]
    assert shown_frame_numbers([3, 3, 4]) == [0, 1, 2]  # a repeated frame still advances


def test_augmentation_keeps_the_first_and_last_frames():
    frames = np.stack([np.full((8, 8, 3), 10 * k, np.uint8) for k in range(8)])
    rng = np.random.default_rng(0)
    dropped, indices = augment_frames(frames, list(range(8)), AugmentConfig(frame_drop=0.9), rng)
    assert indices[0] == 0 and indices[-1] == 7 and len(indices) < 8
    assert [int(f[0, 0, 0]) for f in dropped] == [10 * i for i in indices]
    jittered, same = augment_frames(frames, list(range(8)), AugmentConfig(color_jitter=0.5), rng)
    assert same == list(range(8)) and jittered.dtype == np.uint8 and not np.array_equal(jittered, frames)
    # the rows a collator builds with a seeded generator are reproducible
    a = conversation(item("progress", "10"), VqaConfig(augment=AugmentConfig(frame_drop=0.5)), with_answer=True,
                     rng=np.random.default_rng(3))
    b = conversation(item("progress", "10"), VqaConfig(augment=AugmentConfig(frame_drop=0.5)), with_answer=True,
                     rng=np.random.default_rng(3))
    clip_a, clip_b = (next(p for p in c[0]["content"] if p["type"] == "video") for c in (a, b))
    assert clip_a["frames_indices"] == clip_b["frames_indices"]


def test_the_question_goes_after_the_videos_or_first():
    after = conversation(item("preference", "1"), VqaConfig(), with_answer=False)[0]["content"]
    first = conversation(item("preference", "1"), VqaConfig(question_first=True), with_answer=False)[0]["content"]
    kinds = [p["type"] if p["type"] != "text" else p["text"][:8] for p in after]
    assert kinds == ["Video 1:", "video", "Video 2:", "video", "Question"]
    assert first[0]["text"].startswith("Question") and [p["type"] for p in first[1:]] == ["text", "video", "text", "video"]


@pytest.mark.parametrize("padding_side, multi_image", [("right", False), ("left", False), ("right", True)])
def test_rows_tokenized_once_give_the_same_batches(backbone, padding_side, multi_image, tmp_path, monkeypatch):
    import torch

    from qvl_vqa.encoded_rows import encoded_rows

    monkeypatch.setenv("QVL_CACHE", str(tmp_path))
    config = VqaConfig(padding_side=padding_side, multi_image=multi_image)
    items = [item("preference", "2"), item("progress", "75"), item("similarity", "1"), item("progress", "5")]
    samples = [{"id": str(i), "item": it} for i, it in enumerate(items)]
    rows = encoded_rows(samples, config, backbone.processor, dataset_fingerprint="test", backbone_name="tiny",
                        name="vqa-test-rows")
    assert len(rows) == 4 and list(tmp_path.glob("prepared/vqa-test-rows-*"))
    plain = TrainCollator(config, backbone.processor)(samples)
    cached = TrainCollator(config, backbone.processor, rows)(samples)
    assert set(cached) == set(plain)
    for key, value in plain.items():
        assert cached[key].dtype == value.dtype and torch.equal(cached[key], value), key
    # a sample with no row (a validation batch's) tokenizes the whole batch as before
    other = {"id": "validation-7", "item": item("progress", "30")}
    mixed = TrainCollator(config, backbone.processor, rows)([samples[0], other])
    expected = TrainCollator(config, backbone.processor)([samples[0], other])
    assert all(torch.equal(mixed[key], expected[key]) for key in expected)
    # augmentation changes the clips: the rows are not used
    augmented = VqaConfig(padding_side=padding_side, multi_image=multi_image, augment=AugmentConfig(frame_drop=0.5))
    with_rows = TrainCollator(augmented, backbone.processor, rows)(samples, rng=np.random.default_rng(3))
    without = TrainCollator(augmented, backbone.processor)(samples, rng=np.random.default_rng(3))
    assert all(torch.equal(with_rows[key], without[key]) for key in without)


class _Store:
    """A trajectory store in memory: 20 random frames for each of four trajectories."""

    def __init__(self, size):
        rng = np.random.default_rng(11)
        self.data = {t: rng.integers(0, 256, (20, *size, 3), dtype=np.uint8) for t in "abcd"}
        self.trajectories = [SimpleNamespace(id=t, num_frames=20) for t in self.data]
        self.fingerprint = {"memory": sorted(self.data), "size": list(size)}

    def frames(self, trajectory, indices):
        return self.data[trajectory.id][list(indices)]

    def item(self, kind, answer, clips):
        videos = [Video(frames=self.frames(SimpleNamespace(id=t), i), frame_indices=i, fps=10.0, trajectory_id=t,
                        num_frames=20) for t, i in clips]
        return Item(row=item(kind, answer).row, videos=videos, swapped=False)


@pytest.mark.parametrize("stored", [(64, 64), (48, 80)])  # at the shown size, and resized to it
def test_frames_made_once_give_the_batches_of_the_frame_lists(backbone, stored, tmp_path, monkeypatch):
    import torch

    from qvl_vqa.shown_frames import shown_frames_cache

    monkeypatch.setenv("QVL_CACHE", str(tmp_path))
    store = _Store(stored)
    shown = shown_frames_cache(store, [64, 64], backbone.processor, "tiny")
    side = 64 if "qwen3" in backbone.name else 56  # rounded to the merged patch (32 or 28 pixels)
    assert shown.frames("a", [0, 5]).shape == (2, side, side, 3) and shown.frames("elsewhere", [0]) is None
    items = [store.item("preference", "2", [("a", [0, 5, 10, 15]), ("b", [0, 8, 4, 2])]),
             store.item("progress", "75", [("c", [1, 4, 7])])]
    samples = [{"id": str(i), "item": it} for i, it in enumerate(items)]
    for augment in (AugmentConfig(), AugmentConfig(frame_drop=0.5)):
        config = VqaConfig(augment=augment)
        lists = TrainCollator(config, backbone.processor)(samples, rng=np.random.default_rng(4))
        arrays = TrainCollator(config, backbone.processor, shown=shown)(samples, rng=np.random.default_rng(4))
        assert all(torch.equal(arrays[key], lists[key]) for key in lists)
    prompts = PromptCollator(VqaConfig(), backbone.processor)(samples)
    cached = PromptCollator(VqaConfig(), backbone.processor, shown)(samples)
    assert all(torch.equal(cached[key], prompts[key]) for key in prompts if key != SAMPLES_KEY)


def test_the_trajectory_files_are_read_only_without_the_shown_frames(backbone, tmp_path, monkeypatch):
    from qvl_vqa.shown_frames import shown_frames_cache

    monkeypatch.setenv("QVL_CACHE", str(tmp_path))
    store = _Store((64, 64))
    shown = shown_frames_cache(store, [64, 64], backbone.processor, "tiny")
    reads = []

    def samples():
        def read(t, i):
            return lambda: reads.append(t) or store.frames(SimpleNamespace(id=t), i)

        videos = [Video(frames=read(t, i), frame_indices=i, fps=10.0, trajectory_id=t, num_frames=20)
                  for t, i in (("a", [0, 5, 10]), ("b", [1, 2, 3]))]
        return [{"id": "0", "item": Item(row=item("preference", "2").row, videos=videos, swapped=False)}]

    TrainCollator(VqaConfig(), backbone.processor, shown=shown)(samples())
    assert reads == []
    TrainCollator(VqaConfig(), backbone.processor)(samples())
    assert reads == ["a", "b"]
