"""Token-level constrained decoding of ``"cx cy theta w h"`` with xgrammar.

The grammar allows exactly five integers without leading zeros, each in its range, one space
apart, then the end of the turn; xgrammar compiles it against the tokenizer's real vocabulary and
masks the logits of every token that would leave the language (the seed's digits-and-space mask
still let "12 4" or "99999" through, which is why it had invalid outputs at all).
"""

from __future__ import annotations

import threading
from typing import Any

from qvl_grasp.quantizer import ANGLE_BINS, COORD_MAX

END_OF_TURN = "<|im_end|>"
_cache: dict[tuple[int, int], Any] = {}
_lock = threading.Lock()


def integer_rule(high: int) -> str:
    """An EBNF alternative matching exactly the integers 0..high, written without leading zeros."""
    digits = str(high)
    n = len(digits)
    alternatives = ['"0"'] if high >= 0 else []
    # every shorter length is free: [1-9], [1-9][0-9], ...
    alternatives += ["[1-9]" + " [0-9]" * (k - 1) for k in range(1, n)]
    # n digits, at most high: equal to high up to position i, smaller at i, anything after
    for i, d in enumerate(int(c) for c in digits):
        low = 1 if i == 0 else 0
        if d - 1 >= low:
            head = [f'"{digits[:i]}"'] if i else []
            alternatives.append(" ".join(head + [f"[{low}-{d - 1}]"] + ["[0-9]"] * (n - i - 1)))
    if high > 0:
        alternatives.append(f'"{digits}"')
    return "(" + " | ".join(alternatives) + ")"


def grasp_grammar() -> str:
    coord, angle = integer_rule(COORD_MAX), integer_rule(ANGLE_BINS - 1)
    return "\n".join([
        'root ::= coord " " coord " " angle " " coord " " coord',
        f"coord ::= {coord}",
        f"angle ::= {angle}",
    ])


def compiled_grammar(tokenizer: Any, vocab_size: int) -> Any:
    """The grammar compiled for this tokenizer (cached: building the token table takes a second)."""
    import xgrammar

    key = (id(tokenizer), vocab_size)
    with _lock:
        if key not in _cache:
            end = tokenizer.convert_tokens_to_ids(END_OF_TURN)
            info = xgrammar.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab_size, stop_token_ids=[end])
            _cache[key] = xgrammar.GrammarCompiler(info).compile_grammar(grasp_grammar())
        return _cache[key]


def logits_processor(tokenizer: Any, vocab_size: int) -> Any:
    """A fresh transformers logits processor for one ``generate`` call (it keeps per-row state)."""
    import xgrammar

    return xgrammar.contrib.hf.LogitsProcessor(compiled_grammar(tokenizer, vocab_size))


def model_vocab_size(model: Any) -> int:
    """Rows of the output embedding: the logits' width, which may exceed the tokenizer's length."""
    return int(model.get_output_embeddings().weight.shape[0])
