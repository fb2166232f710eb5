"""The training loss over the answer's own vocabulary: the twelve tokens the grammar can emit.

Decoding is constrained to digits, the space and ``<|im_end|>``, so which of those twelve tokens
wins is all that matters at inference. Cross-entropy over just them (the LM head's rows for those
tokens, on the labelled positions) trains exactly that, without spending the step on pushing down
151,924 tokens the grammar never allows. On the tiny backbone it also skips most of the LM head's
cost, because the vocabulary matrix is most of its parameters.
"""

from __future__ import annotations

from typing import Any

from qvl.decoding import END_OF_TURN

_ids: dict[int, list[int]] = {}


def answer_token_ids(tokenizer: Any) -> list[int]:
    """Ids of "0".."9", " " and ``<|im_end|>`` (each one token in Qwen's vocabulary)."""
    key = id(tokenizer)
    if key not in _ids:
        ids = []
        for text in [str(d) for d in range(10)] + [" "]:
            encoded = tokenizer.encode(text, add_special_tokens=False)
            if len(encoded) != 1:
                raise ValueError(f"the tokenizer splits {text!r} into {len(encoded)} tokens; expected one")
            ids.append(encoded[0])
        ids.append(tokenizer.convert_tokens_to_ids(END_OF_TURN))
        _ids[key] = ids
    return _ids[key]


def _language_model_parts(model: Any) -> tuple[Any, Any]:
    """The multimodal trunk (ending in the final norm) and the LM head, through a peft wrapper."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return base.model, base.get_output_embeddings()


def answer_vocabulary_loss(model: Any, tokenizer: Any, batch: dict[str, Any]) -> dict[str, Any]:
    import torch
    import torch.nn.functional as F

    from qvl.chat import IGNORE_INDEX

    labels = batch["labels"]
    targets = labels[:, 1:]
    positions = (targets != IGNORE_INDEX).any(dim=0).nonzero().flatten()
    inputs = {key: value for key, value in batch.items() if key != "labels"}
    trunk, head = _language_model_parts(model)
    hidden = trunk(**inputs).last_hidden_state[:, positions]
    allowed = torch.tensor(answer_token_ids(tokenizer), device=labels.device)
    weight = head.weight[allowed]
    logits = hidden.to(weight.dtype) @ weight.T
    if getattr(head, "bias", None) is not None:
        logits = logits + head.bias[allowed]
    wanted = targets[:, positions]
    # map vocabulary ids to their index among the allowed ones; anything else is left out
    lookup = torch.full((int(allowed.max()) + 1,), IGNORE_INDEX, dtype=torch.long, device=labels.device)
    lookup[allowed] = torch.arange(len(allowed), device=labels.device)
    mapped = torch.where((wanted >= 0) & (wanted <= allowed.max()), lookup[wanted.clamp(0, int(allowed.max()))],
                         torch.full_like(wanted, IGNORE_INDEX))
    loss = F.cross_entropy(logits.float().reshape(-1, len(allowed)), mapped.reshape(-1), ignore_index=IGNORE_INDEX)
    return {"loss": loss}
