"""The probability of every answer of a finite set, as constrained decoding sees it.

Greedy constrained decoding (:func:`qvl.decoding.generate_constrained`) follows the most likely
allowed token at each step, so on an answer like a progress value 0-100 it returns a mode: a
model torn between "0" and "100" answers one of them, the worst guess under an absolute or
squared error. Knowing the whole distribution lets a task answer what its metric rewards: the
median minimises the expected absolute error, the mean the expected squared error (minimum Bayes
risk decoding; for numbers from language models see Lukasik et al., 2024, "Regression-aware
inference with LLMs"). ``generate`` cannot give it: its scores cover the path it took only.

The answers' token sequences form a trie. At each node the model's next-token logits are
renormalised over the node's children, exactly the masking of a grammar whose language is the
answer set, so ``P(answer)`` is the product of those choices and the greedy answer is the path of
the largest ones. A node with one child costs nothing; the others need the logits after the prompt
and the node's tokens. The prompt runs once (its images and all), keeping its key/value cache; the
deepest branching nodes' tokens then continue from that cache, every path of every row in one
short forward, and give the logits of every node on their way. A progress answer set ("0".."100":
branching at the root, "1".."9" and "10") takes 9 paths of at most 2 tokens after one prefill, the
cost of a few greedy decoding steps (it used to run the whole prompt 9 times).
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import Any

from qvl.chat import language_model_parts
from qvl.errors import UserError


# every row of a batch usually has one of a few answer sets ("1"/"2", "0".."100"): tokenized once
# per tokenizer and set, not once per row and call; weak keys, so a dropped tokenizer is not kept
_TOKENIZED: weakref.WeakKeyDictionary[Any, dict[tuple[str, ...], list[tuple[int, ...]]]] = weakref.WeakKeyDictionary()


def answer_token_ids(tokenizer: Any, answers: Sequence[str]) -> list[tuple[int, ...]]:
    """Each answer's tokens as the model writes them: its text, then ``<|im_end|>``."""
    known = _TOKENIZED.setdefault(tokenizer, {})
    key = tuple(answers)
    if key not in known:
        from qvl.decoding import end_of_turn_id

        end = end_of_turn_id(tokenizer)
        sequences = [tuple(tokenizer.encode(answer, add_special_tokens=False)) + (end,) for answer in answers]
        if len(set(sequences)) != len(sequences):
            raise UserError("answers must be distinct; two of them tokenize to the same sequence")
        known[key] = sequences
    return list(known[key])


def _children(sequences: Sequence[tuple[int, ...]]) -> dict[tuple[int, ...], list[int]]:
    """Each prefix of the sequences -> the distinct tokens that follow it, in first-seen order."""
    children: dict[tuple[int, ...], list[int]] = {}
    for sequence in sequences:
        for depth, token in enumerate(sequence):
            following = children.setdefault(sequence[:depth], [])
            if token not in following:
                following.append(token)
    return children


def _paths_to_run(branching: set[tuple[int, ...]]) -> list[tuple[int, ...]]:
    """The branching nodes that are no other branching node's prefix: running each of them gives
    the logits of every branching node on its way."""
    return sorted(node for node in branching
                  if not any(len(other) > len(node) and other[: len(node)] == node for other in branching))


def _continuations(paths: Sequence[tuple[int, ...]], rows: int, device: Any, dtype: Any) -> tuple[Any, Any]:
    """``(input_ids, real)`` of every path for every row, row-major (row ``r``'s paths at
    ``r * len(paths) ... ``, as ``Cache.batch_repeat_interleave`` lays out the prompt's cache),
    right-padded to the longest path; ``real`` marks the tokens that are not padding."""
    import torch

    longest = max(len(path) for path in paths)
    ids = torch.zeros(len(paths), longest, dtype=dtype, device=device)
    real = torch.zeros(len(paths), longest, dtype=torch.bool, device=device)
    for k, path in enumerate(paths):
        ids[k, : len(path)] = torch.tensor(path, dtype=dtype)
        real[k, : len(path)] = True
    return ids.repeat(rows, 1), real.repeat(rows, 1)


def _prefill(trunk: Any, batch: dict[str, Any]) -> tuple[Any, Any, Any]:
    """The prompt's last hidden states and its key/value cache, read once.

    Returns the position of each row's first continuing token, ``[rows, 1]``. Qwen-VL's multimodal
    rotary positions number a prompt with images from its first real token (padding skipped) and
    let images advance the count by less than their token count; the model records each row's
    ``rope_deltas`` (last position + 1 - real tokens) while it reads the prompt, so text that
    continues it starts at ``real tokens + delta``. A prompt without images or videos is numbered
    by column, padding included: it continues at its width."""
    import torch

    if hasattr(trunk, "rope_deltas"):
        trunk.rope_deltas = None  # a value left by an earlier call must not stand in for this prompt's
    out = trunk(**batch, use_cache=True)
    cache = out["cache"] if "cache" in out else out["past_key_values"]  # named "cache" from transformers 5.2x
    ids = batch["input_ids"]
    deltas = getattr(trunk, "rope_deltas", None)
    if deltas is None:
        start = torch.full((ids.shape[0], 1), ids.shape[1], dtype=torch.long, device=ids.device)
    else:
        real = batch.get("attention_mask", torch.ones_like(ids)).sum(dim=1, keepdim=True)
        start = real.to(torch.long) + deltas.to(device=ids.device, dtype=torch.long)
    return out.last_hidden_state, cache, start


def answer_probabilities(model: Any, tokenizer: Any, batch: dict[str, Any],
                         answers: Sequence[Sequence[str]]) -> list[dict[str, float]]:
    """``P(answer | prompt)`` of each row's answers, each decoding step renormalised over the
    tokens that continue one of the row's answers (what a grammar allowing exactly those answers
    does).

    :param batch: a :func:`qvl.chat.prompt_batch` (left-padded prompts ending with the assistant
        header), without keys the model does not take.
    :param answers: one answer set per row (rows may differ: "1"/"2" for one, "0".."100" for
        another).
    :returns: per row, ``{answer: probability}``; the probabilities of a row sum to 1.

    The prompt runs once; its key/value cache is then copied once per branching path (rows x paths
    copies, the memory of that many prompts' caches, not of their activations).
    """
    import torch

    rows = int(batch["input_ids"].shape[0])
    if len(answers) != rows:
        raise UserError(f"{len(answers)} answer sets for a batch of {rows} rows: give one per row")
    if "attention_mask" in batch and not bool(batch["attention_mask"][:, -1].all()):
        raise UserError("answer_probabilities needs left-padded prompts (qvl.chat.prompt_batch's default): "
                        "every row must end at the last column")
    row_sequences = [answer_token_ids(tokenizer, row) for row in answers]
    tries: dict[tuple[str, ...], dict[tuple[int, ...], list[int]]] = {}  # one trie per distinct answer set
    for row, sequences in zip(answers, row_sequences):
        if tuple(row) not in tries:
            tries[tuple(row)] = _children(sequences)
    row_children = [tries[tuple(row)] for row in answers]
    branching = {node for children in row_children for node, following in children.items() if len(following) > 1}
    # only the LM head's rows of tokens some answer can take: the full 151,936-row head would be
    # most of the cost (as in qvl.chat.answer_vocabulary_loss)
    tokens = sorted({token for children in row_children for following in children.values() for token in following})
    column = {token: k for k, token in enumerate(tokens)}
    trunk, head = language_model_parts(model)
    weight = head.weight[torch.tensor(tokens, device=head.weight.device)]
    bias = head.bias[tokens] if getattr(head, "bias", None) is not None else None
    # the logits of ``tokens`` after each branching node, for every row: [rows, len(tokens)]
    logits_at: dict[tuple[int, ...], Any] = {}
    paths = _paths_to_run(branching)
    ids = batch["input_ids"]
    width = int(ids.shape[1])
    with torch.no_grad():
        prompt_hidden, cache, start = _prefill(trunk, batch)
        logits_at[()] = _logits(prompt_hidden[:, -1], weight, bias)
        if any(paths):
            # every row's paths continue from the prompt's cache, in one forward of rows x paths short rows
            count = len(paths)
            cache.batch_repeat_interleave(count)
            tail, real = _continuations(paths, rows, ids.device, ids.dtype)
            prompt_mask = batch.get("attention_mask", torch.ones_like(ids))
            mask = torch.cat([prompt_mask.repeat_interleave(count, dim=0), real.to(prompt_mask.dtype)], dim=1)
            columns = torch.arange(width, width + tail.shape[1], device=ids.device)
            steps = torch.arange(tail.shape[1], device=ids.device)
            positions = start.repeat_interleave(count, dim=0) + steps[None, :]
            hidden = trunk(input_ids=tail, attention_mask=mask, position_ids=positions[None].expand(3, -1, -1),
                           use_cache=True, cache_position=columns, **_cache_argument(trunk, cache)).last_hidden_state
            for k, path in enumerate(paths):
                # after each of the path's tokens: the logits of the node it leads to
                logits = _logits(hidden[k::count, : len(path)], weight, bias)
                for depth in range(1, len(path) + 1):
                    logits_at.setdefault(path[:depth], logits[:, depth - 1])
    results = []
    for row, (sequences, children, texts) in enumerate(zip(row_sequences, row_children, answers)):
        # log P(next token | node) over the node's children, for the row's branching nodes
        choice: dict[tuple[int, ...], dict[int, float]] = {}
        for node, following in children.items():
            if len(following) > 1:
                log_probs = torch.log_softmax(logits_at[node][row, [column[t] for t in following]], dim=0).tolist()
                choice[node] = dict(zip(following, log_probs))
        log_p = torch.tensor([sum(choice[s[:d]][s[d]] for d in range(len(s)) if s[:d] in choice)
                              for s in sequences], dtype=torch.float64)
        results.append(dict(zip(texts, torch.exp(log_p).tolist())))
    return results


def _cache_argument(trunk: Any, cache: Any) -> dict[str, Any]:
    """``cache=`` where the model takes it (``past_key_values`` is deprecated there), else ``past_key_values=``."""
    import inspect

    name = "cache" if "cache" in inspect.signature(trunk.forward).parameters else "past_key_values"
    return {name: cache}


def _logits(hidden: Any, weight: Any, bias: Any) -> Any:
    """The LM head's logits of the answer tokens only (``weight``: their rows), in float32."""
    return (hidden.to(weight.dtype) @ weight.T + (0 if bias is None else bias)).float()


def greedy_answer(probabilities: dict[str, float], tokenizer: Any) -> str:
    """The answer greedy constrained decoding writes: the most likely token at every step.

    Not the most likely answer: "100" can lose to "0" on its first digit and still be likelier
    than "0" whole. Ties go to the answer listed first."""
    texts = list(probabilities)
    sequences = answer_token_ids(tokenizer, texts)
    # P(next token | node) is the children's summed answer mass, renormalised
    node: tuple[int, ...] = ()
    live = list(range(len(texts)))
    while True:
        finished = [i for i in live if len(sequences[i]) == len(node)]
        if finished:
            return texts[finished[0]]
        mass: dict[int, float] = {}
        for i in live:
            token = sequences[i][len(node)]
            mass[token] = mass.get(token, 0.0) + probabilities[texts[i]]
        best = max(mass, key=lambda token: (mass[token], -min(i for i in live if sequences[i][len(node)] == token)))
        node = node + (best,)
        live = [i for i in live if sequences[i][: len(node)] == node]
