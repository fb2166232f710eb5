"""qvl.decoding on the untrained embedded tiny Qwen3-VL, sampled at temperature 1: without the
grammar its answers are noise, so every test below would fail if the mask let anything through."""

import json
import re

import pytest
import torch

from qvl import UserError, chat, decoding
from qvl.decoding import Constraint

END = "<|im_end|>"
TRIPLE = r"(0|[1-9][0-9]{0,2})( (0|[1-9][0-9]{0,2})){2}"
SCHEMA = {
    "type": "object",
    "properties": {
        "color": {"enum": ["red", "green", "blue"]},
        "count": {"type": "integer", "minimum": 0, "maximum": 99},
        "ok": {"type": "boolean"},
    },
    "required": ["color", "count", "ok"],
}
CHOICES = ["red", "dark blue", 'say "hi"', "naïve"]
HOT = {"do_sample": True, "temperature": 1.0, "top_k": 0}


def prompts(processor, rows):
    conversation = [{"role": "user", "content": [{"type": "text", "text": "Answer."}]}]
    return chat.prompt_batch(processor, [conversation] * rows)


def sample(backbone, constraint, rows, max_new_tokens, seed=0, **kwargs):
    """Hot samples, with the grammar (``constraint``) or without (None), with special tokens kept."""
    torch.manual_seed(seed)
    batch = prompts(backbone.processor, rows)
    if constraint is None:
        return chat.generate_text(backbone.model, backbone.processor, batch, max_new_tokens,
                                  skip_special_tokens=False, **HOT, **kwargs)
    return decoding.generate_constrained(backbone.model, backbone.processor, batch, constraint, max_new_tokens,
                                         skip_special_tokens=False, **HOT, **kwargs)


def ended(text):
    """The answer before its ``<|im_end|>``, or None when it was cut by max_new_tokens."""
    return text.split(END)[0] if END in text else None


def matches_schema(text):
    try:
        value = json.loads(text)
    except (TypeError, json.JSONDecodeError):
        return False
    return (isinstance(value, dict) and set(value) == {"color", "count", "ok"} and value["color"] in
            ("red", "green", "blue") and type(value["count"]) is int and 0 <= value["count"] <= 99
            and type(value["ok"]) is bool)


def test_regex_answers_match_in_full(qvl_tiny_backbone):
    answers = [ended(a) for a in sample(qvl_tiny_backbone, Constraint.regex(TRIPLE), 8, 12)]
    assert all(a is not None and re.fullmatch(TRIPLE, a) for a in answers), answers
    assert len(set(answers)) > 4  # sampled, not one answer repeated
    free = [ended(a) for a in sample(qvl_tiny_backbone, None, 4, 12)]
    assert sum(a is not None and re.fullmatch(TRIPLE, a) is not None for a in free) == 0, free


def test_json_schema_answers_parse_and_validate(qvl_tiny_backbone):
    answers = [ended(a) for a in sample(qvl_tiny_backbone, Constraint.json_schema(SCHEMA), 8, 32)]
    assert all(matches_schema(a) for a in answers), answers
    free = [ended(a) for a in sample(qvl_tiny_backbone, None, 4, 16)]
    assert not any(matches_schema(a) for a in free), free
    # the same schema as JSON text is the same constraint (one compiled grammar)
    assert Constraint.json_schema(json.dumps(SCHEMA)) == Constraint.json_schema(SCHEMA)


def test_choices_give_exactly_one_option(qvl_tiny_backbone):
    answers = [ended(a) for a in sample(qvl_tiny_backbone, Constraint.choices(CHOICES), 8, 12)]
    assert set(answers) <= set(CHOICES) and len(set(answers)) > 1, answers
    free = [ended(a) for a in sample(qvl_tiny_backbone, None, 4, 8)]
    assert not set(free) & set(CHOICES), free


def test_rows_of_one_batch_follow_their_own_constraints(qvl_tiny_backbone):
    constraints = [Constraint.regex(TRIPLE), Constraint.json_schema(SCHEMA), Constraint.choices(CHOICES),
                   Constraint.ebnf('root ::= "yes" | "no" | "maybe " [0-9]')] * 2
    answers = [ended(a) for a in sample(qvl_tiny_backbone, constraints, 8, 32, seed=1)]
    checks = [lambda a: re.fullmatch(TRIPLE, a), matches_schema, lambda a: a in CHOICES,
              lambda a: re.fullmatch(r"yes|no|maybe [0-9]", a)] * 2
    assert all(a is not None and check(a) for a, check in zip(answers, checks)), answers


def test_default_decoding_is_greedy_and_strips_the_end_token(qvl_tiny_backbone):
    batch = prompts(qvl_tiny_backbone.processor, 2)
    model, processor = qvl_tiny_backbone.model, qvl_tiny_backbone.processor
    answers = decoding.generate_constrained(model, processor, batch, Constraint.choices(CHOICES), 12)
    assert answers[0] == answers[1] and answers[0] in CHOICES


def test_logits_processor_works_with_generate_directly(qvl_tiny_backbone):
    model, tokenizer = qvl_tiny_backbone.model, qvl_tiny_backbone.tokenizer
    batch = prompts(qvl_tiny_backbone.processor, 2)
    processor = decoding.logits_processor(tokenizer, decoding.model_vocab_size(model), Constraint.regex("[0-9]{3}"))
    output = model.generate(**batch, max_new_tokens=6, logits_processor=[processor], do_sample=False)
    texts = tokenizer.batch_decode(output[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)
    assert all(re.fullmatch("[0-9]{3}", t) for t in texts), texts
    with pytest.raises(RuntimeError, match="one generate call"):
        model.generate(**batch, max_new_tokens=2, logits_processor=[processor], do_sample=False)


@pytest.mark.parametrize(("make", "message"), [
    (lambda: Constraint.regex("[0-9"), r"invalid regex constraint '\[0-9': .*Unclosed"),
    (lambda: Constraint.json_schema({"type": "nope"}), r"invalid json_schema constraint .*nope"),
    (lambda: Constraint.json_schema("{not json"), r"invalid json_schema constraint: not JSON"),
    (lambda: Constraint.choices([]), r"invalid choices constraint \[\]"),
    (lambda: Constraint.ebnf("root ::= digit"), r"invalid ebnf constraint 'root ::= digit': .*not defined"),
])
def test_bad_constraint_is_a_user_error_naming_it(make, message):
    with pytest.raises(UserError, match=message) as caught:
        make()
    assert "\n" not in str(caught.value)


def test_constraint_count_must_match_the_batch(qvl_tiny_backbone):
    batch = prompts(qvl_tiny_backbone.processor, 3)
    with pytest.raises(UserError, match="2 constraints for a batch of 3 rows"):
        decoding.generate_constrained(qvl_tiny_backbone.model, qvl_tiny_backbone.processor, batch,
                                      [Constraint.regex("a"), Constraint.regex("b")], 4)


def test_compiled_grammars_are_cached_for_the_model_vocab(qvl_tiny_backbone):
    tokenizer, vocab = qvl_tiny_backbone.tokenizer, decoding.model_vocab_size(qvl_tiny_backbone.model)
    assert vocab > len(tokenizer)  # the logits are wider than the tokenizer: padding ids to mask too
    first = decoding.compile_constraint(tokenizer, vocab, Constraint.regex("[a-z]+"))
    assert decoding.compile_constraint(tokenizer, vocab, Constraint.regex("[a-z]+")) is first
    assert first.tokenizer_info.vocab_size == vocab


@pytest.mark.parametrize("rows", [[0, 1, 2, 3, 4, 5], [1, 4, 5]])
def test_fast_cpu_mask_equals_xgrammar_kernel(rows):
    """The sparse path (few allowed tokens) and the dense one (xgrammar's kernel) on mixed rows."""
    import xgrammar

    vocab = 1000
    bitmask = xgrammar.allocate_token_bitmask(6, vocab)
    generator = torch.Generator().manual_seed(0)
    bitmask[0] = 0
    bitmask[0, 3] = 0b1011  # three allowed tokens
    bitmask[1] = 0
    bitmask[1, -1] = -1  # allowed bits past the vocab must stay ignored
    bitmask[1, 0] = -(1 << 31)  # the sign bit is token 31
    bitmask[2] = torch.randint(-2**31, 2**31 - 1, (bitmask.shape[1],), dtype=torch.int32, generator=generator)
    bitmask[4] = 0
    bitmask[4, 10] = -1
    logits = torch.randn(6, vocab, generator=generator)
    expected = logits.clone()
    xgrammar.apply_token_bitmask_inplace(expected, bitmask, vocab_size=vocab, indices=rows)
    decoding._mask_rows_cpu(logits, bitmask, rows)
    assert torch.equal(logits, expected)
