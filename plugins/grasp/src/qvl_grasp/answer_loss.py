"""The training loss over the answer's own vocabulary: the twelve tokens the grammar can emit.

Decoding is constrained to digits, the space and ``<|im_end|>``, so which of those twelve tokens
wins is all that matters at inference; :func:`qvl.chat.answer_vocabulary_loss` trains exactly that.
"""

from __future__ import annotations

from typing import Any

from qvl.decoding import END_OF_TURN

_ids: dict[int, list[int]] = {}


def answer_token_ids(tokenizer: Any) -> list[int]:
    """Ids of "0".."9", " " and ``<|im_end|>`` (each one token in Qwen's vocabulary)."""
    from qvl.chat import single_token_ids

    key = id(tokenizer)
    if key not in _ids:
        _ids[key] = single_token_ids(tokenizer, [str(d) for d in range(10)] + [" ", END_OF_TURN])
    return _ids[key]


def answer_vocabulary_loss(model: Any, tokenizer: Any, batch: dict[str, Any]) -> dict[str, Any]:
    from qvl import chat

    return chat.answer_vocabulary_loss(model, batch, answer_token_ids(tokenizer))
