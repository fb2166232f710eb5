"""qvl.answer_probabilities on the untrained embedded tiny Qwen3-VL: the distribution over an answer
set agrees with one forward per decoding step, and its greedy path is what constrained generation
writes."""

import pytest
import torch
from PIL import Image

from qvl import UserError, chat, decoding
from qvl.answer_probabilities import answer_probabilities, greedy_answer
from qvl.decoding import Constraint

PROGRESS = [str(n) for n in range(101)]
PROGRESS_REGEX = r"(100|[1-9]?[0-9])"


def conversations(rows, with_image=False, with_video=False):
    """Prompts of different lengths (so the batch is left-padded), some with an image or a video."""
    result = []
    for row in range(rows):
        content = [{"type": "text", "text": "How far along? " + "Answer. " * row}]
        if with_image:
            shade = 40 * row % 255
            content.insert(0, {"type": "image", "image": Image.new("RGB", (64, 64), (shade, 90, 200 - shade)),
                               "resized_width": 64, "resized_height": 64})
        if with_video:
            frames = [Image.new("RGB", (64, 64), (60 * row, 40 + 30 * k, 90)) for k in range(4)]
            content.insert(0, {"type": "video", "video": frames, "resized_width": 64, "resized_height": 64,
                               "fps": 10.0})
        result.append([{"role": "user", "content": content}])
    return result


@pytest.fixture(scope="module")
def qwen25_backbone():
    from qvl.backbone.loading import load
    from qvl.config import BackboneConfig

    return load(BackboneConfig(name="embedded:qwen2.5-vl-tiny", finetune="frozen"))


@pytest.mark.parametrize("model", ["qwen3-vl", "qwen2.5-vl"])
@pytest.mark.parametrize("prompt", ["text", "image", "video"])
def test_one_prefill_and_cached_branches_give_the_full_forwards_probabilities(qvl_tiny_backbone, qwen25_backbone,
                                                                              model, prompt):
    """The prompt's cache continued per branch (multimodal rotary positions and left padding
    included) agrees to 1e-4 with a whole forward of the prompt and each prefix."""
    backbone = qvl_tiny_backbone if model == "qwen3-vl" else qwen25_backbone
    convs = conversations(3, with_image=prompt == "image", with_video=prompt == "video")
    answer_set = ["0", "7", "10", "12", "100", "3"]  # branching at the root, after "1", after "10"
    batch = chat.prompt_batch(backbone.processor, convs)
    got = answer_probabilities(backbone.model, backbone.processor.tokenizer, batch, [answer_set] * 3)
    for row, conversation in enumerate(convs):
        assert got[row] == pytest.approx(step_by_step(backbone, conversation, answer_set), rel=1e-4, abs=1e-7)


def step_by_step(backbone, conversation, answer_set):
    """The same probabilities the slow way: one forward of the prompt plus each prefix, per row."""
    tokenizer = backbone.processor.tokenizer
    end = decoding.end_of_turn_id(tokenizer)
    sequences = {a: tokenizer.encode(a, add_special_tokens=False) + [end] for a in answer_set}
    batch = chat.prompt_batch(backbone.processor, [conversation])
    result = {}
    for answer, tokens in sequences.items():
        log_p = 0.0
        for depth in range(len(tokens)):
            prefix = tokens[:depth]
            allowed = sorted({s[depth] for s in sequences.values() if len(s) > depth and s[:depth] == prefix})
            if len(allowed) == 1:
                continue
            extended = {key: torch.cat([value, torch.full((1, depth), 1 if key == "attention_mask" else 0,
                                                          dtype=value.dtype)], dim=1)
                        if key != "input_ids" and value.shape == batch["input_ids"].shape else value
                        for key, value in batch.items()}
            extended["input_ids"] = torch.cat([batch["input_ids"], torch.tensor([prefix], dtype=torch.long)], dim=1)
            with torch.no_grad():
                logits = backbone.model(**extended).logits[0, -1].float()
            log_p += torch.log_softmax(logits[allowed], dim=0)[allowed.index(tokens[depth])].item()
        result[answer] = float(torch.tensor(log_p).exp())
    return result


@pytest.mark.parametrize("with_image", [False, True])
def test_probabilities_match_one_forward_per_step_and_sum_to_one(qvl_tiny_backbone, with_image):
    backbone = qvl_tiny_backbone
    convs = conversations(3, with_image)
    answer_sets = [["1", "2"], ["0", "7", "10", "12", "100"], PROGRESS]
    batch = chat.prompt_batch(backbone.processor, convs)
    got = answer_probabilities(backbone.model, backbone.processor.tokenizer, batch, answer_sets)
    for row, (conversation, answer_set) in enumerate(zip(convs, answer_sets)):
        assert list(got[row]) == answer_set
        assert sum(got[row].values()) == pytest.approx(1.0, abs=1e-6)
        if len(answer_set) <= 5:
            expected = step_by_step(backbone, conversation, answer_set)
            assert got[row] == pytest.approx(expected, rel=1e-3, abs=1e-6)
    # an untrained model spreads its mass: no answer of 101 gets it all
    assert max(got[2].values()) < 0.9


def test_one_token_answers_need_the_prompt_alone(qvl_tiny_backbone):
    backbone = qvl_tiny_backbone
    convs = conversations(2)
    batch = chat.prompt_batch(backbone.processor, convs)
    got = answer_probabilities(backbone.model, backbone.processor.tokenizer, batch, [["1", "2"], ["2", "1"]])
    for row, conversation in enumerate(convs):
        assert got[row] == pytest.approx(step_by_step(backbone, conversation, ["1", "2"]), rel=1e-3)


def test_the_greedy_path_is_what_constrained_generation_writes(qvl_tiny_backbone):
    backbone = qvl_tiny_backbone
    batch = chat.prompt_batch(backbone.processor, conversations(6, with_image=True))
    got = answer_probabilities(backbone.model, backbone.processor.tokenizer, batch, [PROGRESS] * 6)
    generated = decoding.generate_constrained(backbone.model, backbone.processor, batch,
                                              Constraint.regex(PROGRESS_REGEX), 4)
    assert [greedy_answer(p, backbone.processor.tokenizer) for p in got] == generated


def test_greedy_is_the_best_path_not_the_most_likely_answer():
    class DigitTokenizer:  # one token per character, <|im_end|> = 99
        unk_token_id = -1

        def encode(self, text, add_special_tokens=False):
            return [ord(c) for c in text]

        def convert_tokens_to_ids(self, token):
            return 99

    # "1..." holds 0.6 of the mass over three answers; "0" alone 0.4, the likeliest answer: greedy
    # takes "1" first, then the first listed of three tied second digits
    probabilities = {"0": 0.4, "10": 0.2, "11": 0.2, "12": 0.2}
    assert greedy_answer(probabilities, DigitTokenizer()) == "10"
    assert greedy_answer({"0": 0.4, "10": 0.1, "11": 0.2, "12": 0.3}, DigitTokenizer()) == "12"


def test_right_padded_prompts_and_wrong_row_counts_are_refused(qvl_tiny_backbone):
    backbone = qvl_tiny_backbone
    tokenizer = backbone.processor.tokenizer
    right = chat.prompt_batch(backbone.processor, conversations(2), padding_side="right")
    with pytest.raises(UserError, match="left-padded"):
        answer_probabilities(backbone.model, tokenizer, right, [["1", "2"]] * 2)
    left = chat.prompt_batch(backbone.processor, conversations(2))
    with pytest.raises(UserError, match="3 answer sets for a batch of 2 rows"):
        answer_probabilities(backbone.model, tokenizer, left, [["1", "2"]] * 3)


def test_qwen25_video_prompts_give_the_generated_answer(qwen25_backbone):
    backbone = qwen25_backbone
    convs = []
    for row in range(3):
        frames = [Image.new("RGB", (56, 56), (60 * row, 40 + 30 * k, 90)) for k in range(4)]
        convs.append([{"role": "user", "content": [
            *({"type": "video", "video": frames, "resized_width": 56, "resized_height": 56, "fps": 10.0}
              for _ in range(2)),
            {"type": "text", "text": "How much progress?" + " Answer." * row}]}])
    batch = chat.prompt_batch(backbone.processor, convs)
    assert "second_per_grid_ts" in batch  # Qwen2.5-VL's per-video input is repeated with the paths
    got = answer_probabilities(backbone.model, backbone.processor.tokenizer, batch, [PROGRESS] * 3)
    generated = decoding.generate_constrained(backbone.model, backbone.processor, batch,
                                              Constraint.regex(PROGRESS_REGEX), 4)
    assert [greedy_answer(p, backbone.processor.tokenizer) for p in got] == generated
    assert all(sum(p.values()) == pytest.approx(1.0, abs=1e-6) for p in got)
