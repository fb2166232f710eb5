"""The JSON answers, the <FRAME> token and one-pass decoding on the embedded tiny Qwen3-VL."""

import json
from types import SimpleNamespace

import jsonschema
import pytest
import torch
import xgrammar

from qvl.backbone.loading import load
from qvl.config import BackboneConfig, LoraConfig
from qvl.decoding import Constraint, compile_constraint, end_of_turn_id, model_vocab_size
from qvl_segment.answers import FRAME_TOKEN, answer_schema, answer_text, parse_answer
from qvl_segment.collate import SegmentCollator
from qvl_segment.config import SegmentConfig
from qvl_segment.episodes import Segment, read_episodes
from qvl_segment.heads import SegmentHeads
from qvl_segment.inference import decode_batch, decode_two_pass
from qvl_segment.synthetic import SyntheticSettings, write_dataset
from qvl_segment.tokens import add_frame_token

SEGMENTS = [Segment(0, 5, "reach the red block", "reach"), Segment(6, 9, "grasp the red block", "grasp")]


@pytest.fixture(scope="module")
def backbone():
    return load(BackboneConfig(name="embedded:qwen3-vl-tiny", finetune="frozen"), prepare=add_frame_token)


@pytest.fixture(scope="module")
def episodes(tmp_path_factory):
    root = tmp_path_factory.mktemp("episodes")
    write_dataset(root, SyntheticSettings(episodes=6, min_frames=16, max_frames=24), seed=3, workers=1)
    return read_episodes(root / "episodes.jsonl")


def _accepts(tokenizer, vocab_size, constraint, text):
    matcher = xgrammar.GrammarMatcher(compile_constraint(tokenizer, vocab_size, constraint))
    ids = tokenizer.encode(text, add_special_tokens=False)
    return all(matcher.accept_token(i) for i in ids) and matcher.accept_token(end_of_turn_id(tokenizer)) \
        and matcher.is_terminated()


def test_frame_token_is_one_new_token_added_once(backbone):
    tokenizer = backbone.tokenizer
    frame_id = tokenizer.convert_tokens_to_ids(FRAME_TOKEN)
    assert tokenizer.encode(FRAME_TOKEN, add_special_tokens=False) == [frame_id]
    assert add_frame_token(backbone.model, backbone.processor) == frame_id  # a second call adds nothing
    embeddings = backbone.model.get_input_embeddings().weight
    assert frame_id < embeddings.shape[0]
    real = frame_id  # the token went right after the tokenizer's last one
    assert torch.allclose(embeddings[frame_id], embeddings[:real].mean(dim=0), atol=1e-6)


@pytest.mark.parametrize("digits", [False, True])
def test_the_training_target_is_exactly_what_the_grammar_allows(backbone, digits):
    tokenizer, vocab = backbone.tokenizer, model_vocab_size(backbone.model)
    text = answer_text(SEGMENTS, frames_as_digits=digits)
    schema = answer_schema(["grasp", "reach"], count=None if digits else 2, k_max=4, frames_as_digits=digits,
                           num_frames=10)
    assert _accepts(tokenizer, vocab, Constraint.json_schema(schema), text)
    jsonschema.validate(json.loads(text), schema)
    # the count is part of the schema: the K head's answer fixes how many segments the LM writes
    three = answer_schema(["grasp", "reach"], count=3, k_max=4, frames_as_digits=digits, num_frames=10)
    assert not _accepts(tokenizer, vocab, Constraint.json_schema(three), text)
    if digits:  # frames past the episode are refused
        short = answer_schema(["grasp", "reach"], count=None, k_max=4, frames_as_digits=True, num_frames=8)
        assert not _accepts(tokenizer, vocab, Constraint.json_schema(short), text)
    else:
        assert text.count(f'"{FRAME_TOKEN}"') == 4
        assert [row["skill"] for row in parse_answer(text)] == ["reach", "grasp"]


def _config(**task):
    return SimpleNamespace(task=SegmentConfig(**task))


def test_one_pass_gives_the_predictions_of_two_separate_passes(backbone, episodes):
    config = _config(num_frames=8, max_new_tokens=48)
    torch.manual_seed(0)
    heads = SegmentHeads(backbone.hidden_size, 32, 2, config.task.k_max).eval()
    batch = SegmentCollator(config, backbone.processor, "eval")([{"episode": e} for e in episodes[:3]])
    with torch.no_grad():
        one = decode_batch(config, backbone, heads, batch, ["grasp", "reach"])
        two = decode_two_pass(config, backbone, heads, batch, ["grasp", "reach"])
    assert [p["text"] for p in one] == [p["text"] for p in two]
    assert [p["segments"] for p in one] == [p["segments"] for p in two]
    for prediction, episode in zip(one, episodes):
        # K segments, in the episode's own frame numbers, in time order
        assert len(prediction["segments"]) == prediction["k"]
        frames = [(row["start_frame"], row["end_frame"]) for row in prediction["segments"]]
        assert all(0 <= a <= b < episode.num_frames for a, b in frames)
        assert all(b1 < a2 for (_, b1), (a2, _) in zip(frames, frames[1:]))
        assert set(prediction["frame_numbers"]) <= set(range(episode.num_frames))


def _gumbel(input_ids, scores):
    """Gumbel noise before the grammar's mask, then greedy: exactly a sample at temperature 1 from the
    masked softmax (the Gumbel-max trick), without torch.multinomial over 151,936 tokens, which was
    87 % of the sampling time on a CPU."""
    uniform = torch.rand_like(scores).clamp_(1e-20, 1.0)
    return scores - torch.log(-torch.log(uniform))


def random_answers(tokenizer, processor, vocab_size, count, rows, seed=0):
    """``count`` answers sampled at temperature 1 from untrained weights, K cycling over 0-4,
    each with its schema (also run by benchmarks/bench_segment_validity.py, 1,000 of them).

    The model is a one-layer Qwen3 language model with random weights, the real tokenizer (with
    <FRAME>) and the real vocabulary width: the grammar, the tokenizer and qvl.decoding are what
    is tested; its 32-wide trunk keeps the cost to the 151,936-wide sampling and masking.
    """
    from transformers import Qwen3Config, Qwen3ForCausalLM

    from qvl import chat
    from qvl.decoding import generate_constrained

    torch.manual_seed(seed)
    model = Qwen3ForCausalLM(Qwen3Config(vocab_size=vocab_size, hidden_size=32, intermediate_size=64,
                                         num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                                         head_dim=16)).eval()
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    skills = ["grasp", "lift", "move", "place", "reach"]
    prompt = chat.prompt_batch(processor, [[{"role": "user", "content": [
        {"type": "text", "text": "Segment the video."}]}]] * rows)
    prompt = {key: prompt[key] for key in ("input_ids", "attention_mask")}
    answers = []
    for first in range(0, count, rows):
        schemas = [answer_schema(skills, count=(first + row) % 5, k_max=4, frames_as_digits=False, max_text=8)
                   for row in range(min(rows, count - first))]
        batch = {key: value[:len(schemas)] for key, value in prompt.items()}
        with torch.no_grad():
            texts = generate_constrained(model, processor, batch, [Constraint.json_schema(s) for s in schemas],
                                         max_new_tokens=600, do_sample=False, logits_processor=[_gumbel])
        answers += list(zip(texts, schemas))
    return answers


def test_random_weights_write_schema_valid_json_in_sampled_generations(backbone):
    """40 answers of 0-4 segments sampled at temperature 1 from random weights, every one valid
    (1,000 in benchmarks/bench_segment_validity.py, all valid: 25 minutes on 2 cores)."""
    answers = random_answers(backbone.tokenizer, backbone.processor, model_vocab_size(backbone.model), 40, 40)
    for text, schema in answers:
        jsonschema.validate(json.loads(text), schema)
    assert len(answers) == 40
    assert {len(json.loads(text)["segments"]) for text, _ in answers} == {0, 1, 2, 3, 4}


def test_lora_trains_the_frame_row_and_no_other_embedding_row():
    config = BackboneConfig(name="embedded:qwen3-vl-tiny", finetune="lora",
                            lora=LoraConfig(r=4, alpha=8, trainable_tokens=[FRAME_TOKEN]))
    backbone = load(config, prepare=add_frame_token)
    frame_id = backbone.tokenizer.convert_tokens_to_ids(FRAME_TOKEN)
    before = backbone.base_model.get_input_embeddings()
    weights_before = backbone.model.get_input_embeddings()(torch.tensor([[frame_id, 100]])).detach().clone()
    trainable = [p for p in backbone.model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(trainable, lr=1.0)
    ids = torch.tensor([[100, frame_id, 101, frame_id]])
    loss = backbone.model(input_ids=ids, labels=ids).loss
    loss.backward()
    optimizer.step()
    after = backbone.model.get_input_embeddings()(torch.tensor([[frame_id, 100]])).detach()
    assert not torch.allclose(after[0, 0], weights_before[0, 0])  # the <FRAME> row moved
    assert torch.equal(after[0, 1], weights_before[0, 1])  # an ordinary token's row did not
    assert before is not None
