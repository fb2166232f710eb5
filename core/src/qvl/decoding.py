"""Grammar-constrained decoding: answers that are, token by token, sentences of a given language.

A task whose answer has a shape (five integers, a JSON object, one of N labels) should never have
to parse garbage: an untrained or hot-sampled model writes text of any shape, and even a trained
one drifts. xgrammar compiles the language against the tokenizer's real vocabulary; at every step
the logits of the tokens that would leave it are set to -inf, and the answer ends with the
end-of-turn token ``<|im_end|>`` as soon as the language allows nothing else. Rows of one batch can
follow different constraints.

The speed matters because decoding runs at every eval and predict step. xgrammar's own CPU kernel
writes -inf one masked token at a time, which for a narrow language (digits) is ~150,000 writes a
row per step, a quarter of a tiny model's step; :class:`GrammarLogitsProcessor` instead keeps the
few allowed logits and fills the rest of the row in one pass (see ``_mask_rows_cpu``).

Nothing here imports torch or xgrammar at import time: ``import qvl`` stays light.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Sequence
from typing import Any, Literal

import attrs

from qvl.errors import UserError

END_OF_TURN = "<|im_end|>"

Kind = Literal["regex", "json_schema", "choices", "ebnf"]


def _first_line(exc: BaseException) -> str:
    """xgrammar's message without its ``[time] file.cc:line:`` prefix."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return re.sub(r"^\[[\d:]+\] \S+:\d+: ", "", text)


@attrs.frozen
class Constraint:
    """One answer language; build it with :meth:`regex`, :meth:`json_schema`, :meth:`choices`
    or :meth:`ebnf`.

    Hashable (the schema is kept as canonical JSON text) so compiled grammars can be cached per
    constraint. The source is checked by xgrammar when the constraint is made, so a bad pattern
    fails where it is written, as a :class:`~qvl.UserError`, not in the middle of an eval.
    """

    kind: Kind
    source: str
    label: str = attrs.field(eq=False, default="")

    def __attrs_post_init__(self) -> None:
        try:
            self.grammar()
        except (RuntimeError, ValueError, TypeError) as exc:  # xgrammar reports parse errors as RuntimeError
            raise UserError(f"invalid {self.describe()}: {_first_line(exc)}") from None

    @classmethod
    def regex(cls, pattern: str) -> Constraint:
        """Answers that fully match ``pattern`` (xgrammar's regex dialect: no backreferences)."""
        return cls("regex", pattern)

    @classmethod
    def json_schema(cls, schema: dict[str, Any] | str) -> Constraint:
        """Compact JSON (``", "`` and ``": "`` separators, no other whitespace) valid for ``schema``.

        Whitespace is fixed because free whitespace lets a weak model pad forever and never close
        the object; extra properties are refused (xgrammar's strict mode).
        """
        if isinstance(schema, str):
            try:
                schema = json.loads(schema)
            except json.JSONDecodeError as exc:
                raise UserError(f"invalid json_schema constraint: not JSON ({exc})") from None
        if not isinstance(schema, dict):
            raise UserError(f"invalid json_schema constraint: expected a JSON object, got {type(schema).__name__}")
        return cls("json_schema", json.dumps(schema, sort_keys=True))

    @classmethod
    def choices(cls, options: Sequence[str]) -> Constraint:
        """Exactly one of ``options``, verbatim."""
        if isinstance(options, str) or not options or not all(isinstance(o, str) for o in options):
            raise UserError(f"invalid choices constraint {options!r}: expected a non-empty list of strings")
        # json.dumps escapes quotes, backslashes and control characters the way xgrammar's EBNF reads them
        ebnf = "root ::= " + " | ".join(json.dumps(option) for option in dict.fromkeys(options))
        return cls("choices", ebnf, label=json.dumps(list(options))[:80])

    @classmethod
    def ebnf(cls, text: str) -> Constraint:
        """A grammar in xgrammar's EBNF (GBNF-like); the start rule is ``root``."""
        return cls("ebnf", text)

    def describe(self) -> str:
        """``kind constraint 'source'``, shortened, for error messages."""
        shown = self.label or repr(self.source if len(self.source) <= 80 else self.source[:77] + "...")
        return f"{self.kind} constraint {shown}"

    def grammar(self) -> Any:
        """The xgrammar ``Grammar`` (tokenizer-independent; compiling happens in :func:`compile_constraint`)."""
        import xgrammar

        if self.kind == "regex":
            return xgrammar.Grammar.from_regex(self.source)
        if self.kind == "json_schema":
            return xgrammar.Grammar.from_json_schema(self.source, any_whitespace=False, strict_mode=True)
        return xgrammar.Grammar.from_ebnf(self.source)


def model_vocab_size(model: Any) -> int:
    """Rows of the output embedding: the logits' width (151,936 for Qwen), which exceeds
    ``len(tokenizer)``; a bitmask sized from the tokenizer would leave the padding ids unmasked."""
    return int(model.get_output_embeddings().weight.shape[0])


_lock = threading.Lock()
# (id(tokenizer), vocab size) -> (tokenizer, GrammarCompiler). The tokenizer is held so its id
# cannot be reused by another object; building the TokenizerInfo walks the whole vocabulary (~1 s).
_compilers: dict[tuple[int, int], tuple[Any, Any]] = {}
_compiled: dict[tuple[int, int, Constraint], Any] = {}


def end_of_turn_id(tokenizer: Any) -> int:
    """Id of ``<|im_end|>``, the only stop token a constrained answer may end with."""
    token_id = tokenizer.convert_tokens_to_ids(END_OF_TURN)
    if token_id is None or token_id == tokenizer.unk_token_id:
        raise UserError(f"the tokenizer has no {END_OF_TURN} token; constrained decoding needs a Qwen chat tokenizer")
    return int(token_id)


def compile_constraint(tokenizer: Any, vocab_size: int, constraint: Constraint) -> Any:
    """The constraint compiled for this tokenizer and logits width (cached, thread-safe)."""
    key = (id(tokenizer), vocab_size)
    with _lock:
        if (*key, constraint) in _compiled:
            return _compiled[(*key, constraint)]
        import xgrammar

        if key not in _compilers:
            info = xgrammar.TokenizerInfo.from_huggingface(
                tokenizer, vocab_size=vocab_size, stop_token_ids=[end_of_turn_id(tokenizer)])
            _compilers[key] = (tokenizer, xgrammar.GrammarCompiler(info))
        try:
            compiled = _compilers[key][1].compile_grammar(constraint.grammar())
        except (RuntimeError, ValueError, TypeError) as exc:
            raise UserError(f"cannot compile {constraint.describe()}: {_first_line(exc)}") from None
        _compiled[(*key, constraint)] = compiled
        return compiled


def _mask_rows_cpu(scores: Any, bitmask: Any, rows: list[int]) -> None:
    """Set the logits of ``rows`` outside their bitmask to -inf, in place, on the CPU.

    xgrammar's CPU kernel costs one write per *masked* token (~4.7 ms for 8 rows of digits-only
    masks, 150k masked each), cheap only when nearly everything is allowed (inside a JSON string).
    A row whose allowed tokens fit in few 32-bit words is done here instead: gather its few
    allowed logits, fill the row with -inf in one vectorised pass, scatter them back (~0.1 ms).
    """
    import torch
    import xgrammar

    width = bitmask.shape[1]
    words = bitmask if len(rows) == bitmask.shape[0] else bitmask[rows]
    counts = torch.count_nonzero(words, dim=1).tolist()
    # a row with allowed tokens in under 1/8 of its words is sparse; denser rows mask few tokens
    sparse = [i for i, count in enumerate(counts) if count * 8 < width]
    dense = [rows[i] for i, count in enumerate(counts) if count * 8 >= width]
    if dense:
        xgrammar.apply_token_bitmask_inplace(scores, bitmask, vocab_size=scores.shape[1], indices=dense)
    if not sparse:
        return
    if len(sparse) < len(rows):
        words = words[sparse]
    row, word = words.nonzero(as_tuple=True)
    bits = (words[row, word].unsqueeze(1) >> torch.arange(32, dtype=words.dtype)) & 1
    which, bit = bits.nonzero(as_tuple=True)
    token = word[which] * 32 + bit
    batch_row = torch.tensor([rows[i] for i in sparse])[row[which]]
    vocab = scores.shape[1]
    flat = (batch_row * vocab + token)[token < vocab]
    view = scores.view(-1)
    kept = view[flat]
    if len(sparse) == scores.shape[0]:
        scores.fill_(float("-inf"))
    else:
        for i in sparse:
            scores[rows[i]].fill_(float("-inf"))
    view[flat] = kept


class GrammarLogitsProcessor:
    """A ``model.generate`` logits processor keeping every row inside its own compiled grammar.

    One instance serves one ``generate`` call (it holds each row's matcher state); make it with
    :func:`logits_processor`. Greedy and sampling only: beam search reorders rows behind its back.
    Work per step: accept each live row's last token, fill the live rows of one preallocated
    bitmask, mask the live rows' logits in place. Rows that have ended (their matcher accepted
    ``<|im_end|>``) cost nothing more: transformers pads them and their logits are left alone.
    """

    def __init__(self, compiled: Sequence[Any], vocab_size: int) -> None:
        self.compiled = list(compiled)
        self.vocab_size = vocab_size
        self._matchers: list[Any] | None = None
        self._live: list[int] = []
        self._length = -1

    def _start(self, rows: int) -> None:
        import xgrammar

        if len(self.compiled) == 1:
            self.compiled *= rows
        if len(self.compiled) != rows:
            raise UserError(f"{len(self.compiled)} constraints for a batch of {rows} rows: give one, or one per row")
        self._matchers = [xgrammar.GrammarMatcher(compiled) for compiled in self.compiled]
        self._bitmask = xgrammar.allocate_token_bitmask(rows, self.vocab_size)
        self._batch = xgrammar.BatchGrammarMatcher()
        # a matcher terminates exactly when it accepts a stop token: checking the token is cheaper
        self._stops = {t for compiled in self.compiled for t in compiled.tokenizer_info.stop_token_ids}
        self._live = list(range(rows))

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        if scores.shape[1] != self.vocab_size:
            raise RuntimeError(f"logits are {scores.shape[1]} wide but the grammar was compiled for "
                               f"{self.vocab_size} tokens; pass model_vocab_size(model)")
        length = input_ids.shape[1]
        if self._matchers is None:
            self._start(input_ids.shape[0])
        elif length != self._length + 1:
            raise RuntimeError("a GrammarLogitsProcessor serves one generate call; make a new one per call")
        else:
            self._advance(input_ids[:, -1].tolist())
        self._length = length
        if not self._live:
            return scores
        live_matchers = [self._matchers[i] for i in self._live]
        self._batch.batch_fill_next_token_bitmask(live_matchers, self._bitmask, self._live)
        if scores.device.type == "cpu":
            _mask_rows_cpu(scores, self._bitmask, self._live)
        else:
            import xgrammar

            xgrammar.apply_token_bitmask_inplace(scores, self._bitmask.to(scores.device),
                                                 vocab_size=self.vocab_size, indices=self._live)
        return scores

    def _advance(self, last_tokens: list[int]) -> None:
        import xgrammar

        assert self._matchers is not None
        tokens = [last_tokens[i] for i in self._live]
        accepted = xgrammar.BatchGrammarMatcher.batch_accept_token([self._matchers[i] for i in self._live], tokens)
        for i, token, ok in zip(self._live, tokens, accepted):
            if not ok:
                raise RuntimeError(f"row {i}: token {token} is outside its grammar; another logits "
                                   "processor or stopping rule changed the sampled token")
        self._live = [i for i, token in zip(self._live, tokens) if token not in self._stops]


def logits_processor(tokenizer: Any, vocab_size: int,
                     constraints: Constraint | Sequence[Constraint]) -> GrammarLogitsProcessor:
    """A fresh processor for one ``model.generate(..., logits_processor=[...])`` call.

    ``constraints``: one for every row, or a list with one per row of the batch.
    """
    listed = [constraints] if isinstance(constraints, Constraint) else list(constraints)
    if not listed:
        raise UserError("no constraint given: pass one Constraint, or one per row")
    return GrammarLogitsProcessor([compile_constraint(tokenizer, vocab_size, c) for c in listed], vocab_size)


def generate_constrained(model: Any, processor: Any, batch: dict[str, Any],
                         constraint: Constraint | Sequence[Constraint], max_new_tokens: int,
                         **generate_kwargs: Any) -> list[str]:
    """New text of each row of a :func:`qvl.chat.prompt_batch`, each inside its constraint.

    Greedy unless ``generate_kwargs`` say ``do_sample=True``. An answer still unfinished after
    ``max_new_tokens`` is cut there (a prefix of a valid answer): size the limit to the language.
    """
    from qvl import chat

    rows = int(batch["input_ids"].shape[0])
    if generate_kwargs.get("num_beams", 1) != 1 or generate_kwargs.get("num_return_sequences", 1) != 1:
        raise UserError("constrained decoding supports one greedy or sampled sequence per row "
                        "(num_beams = num_return_sequences = 1)")
    constraints = [constraint] if isinstance(constraint, Constraint) else list(constraint)
    if len(constraints) not in (1, rows):
        raise UserError(f"{len(constraints)} constraints for a batch of {rows} rows: give one, or one per row")
    grammar = logits_processor(processor.tokenizer, model_vocab_size(model), constraints)
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    eos = [] if eos is None else [eos] if isinstance(eos, int) else list(eos)
    if "eos_token_id" not in generate_kwargs and end_of_turn_id(processor.tokenizer) not in eos:
        # the grammar ends every answer with <|im_end|>; generate must stop the row there too
        generate_kwargs["eos_token_id"] = [*eos, end_of_turn_id(processor.tokenizer)]
    # last, so no processor after it can lift a masked logit back (warpers only rescale -inf)
    generate_kwargs["logits_processor"] = [*(generate_kwargs.get("logits_processor") or []), grammar]
    return chat.generate_text(model, processor, batch, max_new_tokens, **generate_kwargs)
