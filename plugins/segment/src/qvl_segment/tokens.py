"""The ``<FRAME>`` token: added to the tokenizer, given an embedding row, kept across checkpoints."""

from __future__ import annotations

from typing import Any

from qvl_segment.answers import FRAME_TOKEN


def add_frame_token(model: Any, processor: Any) -> int:
    """Add ``<FRAME>`` (once) and return its id.

    It is added as a normal, not a special, token: the JSON grammar matches tokens by their text,
    and xgrammar never allows special tokens inside an answer. Qwen's embedding matrix has spare
    rows past the tokenizer (151,936 rows for ~151,670 tokens), so the new id usually fits without
    a resize; its row (input and, if untied, output) starts as the mean of the real tokens' rows,
    what ``resize_token_embeddings(mean_resizing=True)`` would give, and deterministic, so a LoRA
    run's base model is the same at train and eval time. A processor saved with the token (a full
    fine-tune's checkpoint) already has it: the trained row is kept.
    """
    import torch

    tokenizer = getattr(processor, "tokenizer", processor)
    if FRAME_TOKEN in tokenizer.get_vocab():
        return int(tokenizer.convert_tokens_to_ids(FRAME_TOKEN))
    real = len(tokenizer)
    tokenizer.add_tokens([FRAME_TOKEN])
    token_id = int(tokenizer.convert_tokens_to_ids(FRAME_TOKEN))
    embeddings = model.get_input_embeddings()
    if token_id >= embeddings.weight.shape[0]:
        model.resize_token_embeddings(token_id + 1, mean_resizing=True)
        return token_id
    with torch.no_grad():
        for layer in {id(m): m for m in (embeddings, model.get_output_embeddings()) if m is not None}.values():
            layer.weight[token_id] = layer.weight[:real].float().mean(dim=0).to(layer.weight.dtype)
    return token_id
