import pytest
import torch
from PIL import Image

from qvl import chat


def conversation(answer=None, text="What colour?"):
    messages = [{"role": "user", "content": [{"type": "image", "image": Image.new("RGB", (64, 64), "red")},
                                             {"type": "text", "text": text}]}]
    if answer is not None:
        messages.append({"role": "assistant", "content": answer})
    return messages


def test_sft_labels_cover_only_the_answer_and_its_end(qvl_tiny_backbone):
    processor = qvl_tiny_backbone.processor
    batch = chat.sft_batch(processor, [conversation("red"), conversation("dark purple", text="A longer question?")])
    tokenizer = processor.tokenizer
    for row, answer in enumerate(["red", "dark purple"]):
        labelled = batch["labels"][row][batch["labels"][row] != chat.IGNORE_INDEX]
        assert tokenizer.decode(labelled) == answer + "<|im_end|>"
    # right padding: the shorter first row ends in padding that is not labelled
    assert batch["attention_mask"][0, -1] == 0
    assert (batch["labels"][batch["attention_mask"] == 0] == chat.IGNORE_INDEX).all()


def test_sft_without_answer_is_refused(qvl_tiny_backbone):
    with pytest.raises(ValueError, match="needs an assistant answer"):
        chat.sft_batch(qvl_tiny_backbone.processor, [conversation()])


def test_prompt_batch_is_left_padded_and_ends_with_assistant_header(qvl_tiny_backbone):
    processor = qvl_tiny_backbone.processor
    batch = chat.prompt_batch(processor, [conversation(), conversation(text="A much longer question here?")])
    assert batch["attention_mask"][0, 0] == 0 and batch["attention_mask"][:, -1].all()
    header = processor.tokenizer.encode("<|im_start|>assistant\n")
    assert batch["input_ids"][0, -len(header):].tolist() == header
    assert processor.tokenizer.padding_side == "right"  # restored


def test_generate_text_returns_only_new_text(qvl_tiny_backbone):
    processor = qvl_tiny_backbone.processor
    batch = chat.prompt_batch(processor, [conversation(), conversation()])
    texts = chat.generate_text(qvl_tiny_backbone.model, processor, batch, max_new_tokens=3)
    assert len(texts) == 2 and texts[0] == texts[1]  # greedy and identical inputs
    assert "<|im_start|>" not in texts[0] and "What colour?" not in texts[0]


def test_lm_loss_is_the_mean_over_labelled_tokens(qvl_tiny_backbone):
    batch = chat.sft_batch(qvl_tiny_backbone.processor, [conversation("red")])
    with torch.no_grad():
        loss = chat.lm_loss(qvl_tiny_backbone.model, batch)["loss"]
        logits = qvl_tiny_backbone.model(**{k: v for k, v in batch.items() if k != "labels"}).logits
    shifted = torch.nn.functional.cross_entropy(logits[0, :-1], batch["labels"][0, 1:], ignore_index=-100)
    assert loss.item() == pytest.approx(shifted.item(), rel=1e-4)


def test_video_frames_are_processed_as_a_video(qvl_tiny_backbone):
    frames = [Image.new("RGB", (64, 64), color) for color in ("red", "green", "blue", "white")]
    messages = [{"role": "user", "content": [{"type": "video", "video": frames},
                                             {"type": "text", "text": "What happens?"}]},
                {"role": "assistant", "content": "colours change"}]
    batch = chat.sft_batch(qvl_tiny_backbone.processor, [messages])
    t, h, w = batch["video_grid_thw"][0].tolist()
    assert t == 2  # 4 frames, 2 per temporal patch
    assert (batch["input_ids"] == 151656).sum().item() == t * h * w // 4
    with torch.no_grad():
        assert torch.isfinite(chat.lm_loss(qvl_tiny_backbone.model, batch)["loss"])


def test_a_subsampled_clip_keeps_its_frame_numbers_and_fps(qvl_tiny_backbone):
    # frames 0, 5, 10, 15 of a 10 fps recording: Qwen3-VL stamps each 2-frame group with its mean time
    frames = [Image.new("RGB", (64, 64), color) for color in ("red", "green", "blue", "white")]
    part = {"type": "video", "video": frames, "raw_fps": 10.0, "frames_indices": [0, 5, 10, 15],
            "total_num_frames": 20, "resized_width": 64, "resized_height": 64}
    messages = [{"role": "user", "content": [part, {"type": "text", "text": "What happens?"}]},
                {"role": "assistant", "content": "colours change"}]
    text = qvl_tiny_backbone.processor.tokenizer.decode(chat.sft_batch(qvl_tiny_backbone.processor, [messages])["input_ids"][0])
    assert "<0.2 seconds>" in text and "<1.2 seconds>" in text  # 0.25 s and 1.25 s
    plain = dict(part, frames_indices=None)
    messages[0]["content"][0] = plain
    text = qvl_tiny_backbone.processor.tokenizer.decode(chat.sft_batch(qvl_tiny_backbone.processor, [messages])["input_ids"][0])
    assert "<1.2 seconds>" not in text  # without them the frames count as consecutive


def test_lm_loss_on_labelled_positions_equals_the_models_own_loss(qvl_tiny_backbone):
    import torch
    from PIL import Image

    from qvl import chat

    conversations = [
        [{"role": "user", "content": [{"type": "image", "image": Image.new("RGB", (64, 64), color)},
                                      {"type": "text", "text": question}]},
         {"role": "assistant", "content": answer}]
        for color, question, answer in [("red", "Colour?", "red"), ("blue", "What colour is this square?",
                                                                      "a blue one, I think")]
    ]
    batch = chat.sft_batch(qvl_tiny_backbone.processor, conversations)
    with torch.no_grad():
        ours = chat.lm_loss(qvl_tiny_backbone.model, batch)["loss"]
        reference = qvl_tiny_backbone.model(**batch).loss
    assert ours.item() == pytest.approx(reference.item(), rel=1e-5)


@pytest.mark.parametrize("kind, name, content, question, message", [
    ("image", "frame.png", b"\x89PNG but not really", "what is this?",
     r"frame.png: cannot read this image \(UnidentifiedImageError"),
    ("video", "clip.mp4", b"\x00\x00\x00\x18ftypmp42 truncated", "what happens?", r"clip.mp4: cannot read this video"),
])
def test_an_unreadable_image_or_video_names_the_file(qvl_tiny_backbone, tmp_path, kind, name, content, question,
                                                     message):
    from qvl import UserError

    broken = tmp_path / name
    broken.write_bytes(content)
    conversation = [{"role": "user", "content": [{"type": kind, kind: str(broken)},
                                                 {"type": "text", "text": question}]}]
    with pytest.raises(UserError, match=message):
        chat.prompt_batch(qvl_tiny_backbone.processor, [conversation])


def test_padding_side_is_chosen_per_call(qvl_tiny_backbone):
    processor = qvl_tiny_backbone.processor
    pair = [conversation("red"), conversation("dark purple", text="A much longer question here?")]
    left = chat.sft_batch(processor, pair, padding_side="left")
    assert left["attention_mask"][0, 0] == 0 and left["attention_mask"][:, -1].all()
    right = chat.sft_batch(processor, pair)
    for row in range(2):  # the same answer tokens are labelled whichever side is padded
        assert left["labels"][row][left["labels"][row] != -100].tolist() == \
            right["labels"][row][right["labels"][row] != -100].tolist()
    prompts = chat.prompt_batch(processor, [conversation(), conversation(text="A longer one?")], padding_side="right")
    assert prompts["attention_mask"][0, -1] == 0 and processor.tokenizer.padding_side == "right"




@pytest.mark.parametrize("patch_size", [16, 14])  # Qwen3-VL, Qwen2.5-VL
@pytest.mark.parametrize("frames, size, shown", [(3, (64, 64), (64, 64)), (4, (60, 90), (64, 96)), (5, (90, 120), None)])
def test_frames_kept_as_shown_give_what_qwen_vl_utils_makes_of_the_list(patch_size, frames, size, shown):
    import numpy as np
    from qwen_vl_utils.vision_process import fetch_video

    from qvl.data.frame_lists import array_video, shown_frames

    rng = np.random.default_rng(frames)
    images = [Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)) for _ in range(frames)]
    part = {"type": "video", "video": images, "raw_fps": 10.0, "frames_indices": list(range(0, 3 * frames, 3))}
    if shown is not None:
        part.update(resized_height=shown[0], resized_width=shown[1])
    expected, expected_metadata = fetch_video(part, image_patch_size=patch_size, return_video_metadata=True)
    kept = shown_frames(part, patch_size)
    assert kept.dtype == np.uint8 and kept.shape == (frames, *expected.shape[2:], 3)
    # any selection of the kept frames is what the list of those frames becomes: frames are made one by one
    for chosen in (list(range(frames)), [0, frames - 1]):
        again = {**part, "video": kept[chosen], "frames_indices": [part["frames_indices"][i] for i in chosen]}
        of_list = fetch_video({**part, "video": [images[i] for i in chosen]}, image_patch_size=patch_size,
                              return_video_metadata=True)
        video, metadata = array_video(again)
        assert torch.equal(video, of_list[0]) and metadata == of_list[1]
        _, videos, _ = chat._process_vision_info([[{"role": "user", "content": [again]}]], patch_size)
        assert torch.equal(videos[0][0], of_list[0])
    assert torch.equal(array_video({**part, "video": kept})[0], expected)
    with pytest.raises(ValueError, match="T x H x W x 3 uint8"):
        array_video({"type": "video", "video": kept.astype(np.float32)})
