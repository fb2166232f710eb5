import re

import pytest

from qvl.decoding import END_OF_TURN, logits_processor, model_vocab_size
from qvl_grasp.grammar import grasp_constraint, grasp_grammar, integer_rule
from qvl_grasp.quantizer import parse_answer


def matcher_for(grammar_text, tokenizer_info):
    import xgrammar

    compiled = xgrammar.GrammarCompiler(tokenizer_info).compile_grammar(grammar_text)
    return lambda text: _accepts(xgrammar.GrammarMatcher(compiled), text)


def _accepts(matcher, text):
    return matcher.accept_string(text) and matcher.is_terminated() is False and _complete(matcher)


def _complete(matcher):
    # the string is a whole sentence of the grammar when the stop token is now allowed
    return matcher.accept_token(matcher.stop_token_ids[0]) if matcher.stop_token_ids else True


@pytest.fixture(scope="module")
def tokenizer_info(qvl_tiny_backbone):
    import xgrammar

    return xgrammar.TokenizerInfo.from_huggingface(
        qvl_tiny_backbone.tokenizer, vocab_size=model_vocab_size(qvl_tiny_backbone.model),
        stop_token_ids=[qvl_tiny_backbone.tokenizer.convert_tokens_to_ids(END_OF_TURN)])


@pytest.mark.parametrize("high", [1, 9, 10, 99, 179, 255, 1000])
def test_integer_rule_matches_exactly_0_to_high_without_leading_zeros(high, tokenizer_info):
    accepts = matcher_for(f"root ::= {integer_rule(high)}", tokenizer_info)
    for value in range(0, high + 1):
        assert accepts(str(value)), value
    for bad in (str(high + 1), str(high * 10), "00", "01", "-1", "", "1 "):
        assert not accepts(bad), bad


def test_grammar_is_five_fields_with_single_spaces(tokenizer_info):
    accepts = matcher_for(grasp_grammar(), tokenizer_info)
    assert accepts("512 304 27 118 246") and accepts("1000 0 179 1000 0")
    for bad in ("512 304 180 118 246", "512 304 27 118", "512  304 27 118 246", "1001 0 0 0 0",
                "512 304 27 118 246 1", "a 1 2 3 4"):
        assert not accepts(bad), bad


def test_untrained_model_sampling_hot_never_leaves_the_grammar(qvl_tiny_backbone):
    """A random-weight model sampled at temperature 2 still writes only valid answers."""
    import torch
    from PIL import Image

    from qvl import chat
    from qvl_grasp.prompting import conversation

    torch.manual_seed(0)
    image = Image.new("RGB", (64, 64), (90, 120, 30))
    batch = chat.prompt_batch(qvl_tiny_backbone.processor, [conversation(image, None, (64, 64))] * 64)
    answers = []
    for _ in range(2):
        processor = logits_processor(qvl_tiny_backbone.tokenizer, model_vocab_size(qvl_tiny_backbone.model),
                                     grasp_constraint())
        answers += chat.generate_text(qvl_tiny_backbone.model, qvl_tiny_backbone.processor, batch, 32,
                                      logits_processor=[processor], do_sample=True, temperature=2.0, top_k=0)
    assert len(answers) == 128
    assert [a for a in answers if parse_answer(a) is None] == []
    assert len(set(answers)) > 100  # sampled, not one answer repeated
    assert all(re.fullmatch(r"[0-9 ]+", a) for a in answers)


def test_unconstrained_untrained_model_writes_invalid_answers(qvl_tiny_backbone):
    """The reason for the grammar: without it the same model's answers are not five integers."""
    import torch
    from PIL import Image

    from qvl import chat
    from qvl_grasp.prompting import conversation

    torch.manual_seed(0)
    batch = chat.prompt_batch(qvl_tiny_backbone.processor,
                              [conversation(Image.new("RGB", (64, 64)), None, (64, 64))] * 16)
    answers = chat.generate_text(qvl_tiny_backbone.model, qvl_tiny_backbone.processor, batch, 32,
                                 do_sample=True, temperature=1.0)
    assert sum(parse_answer(a) is None for a in answers) >= 15
