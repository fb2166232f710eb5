"""qvl.decoding: time per generated token, constrained vs unconstrained, and invalid answers.

Run: .venv/bin/python benchmarks/bench_decoding.py [--batch 8] [--tokens 32] [--rounds 8] [--generations 10000]

Model: the untrained embedded tiny Qwen3-VL, on whatever device ``load`` picks (the CPU here).

Timing: greedy, the same --batch text prompts, --tokens new tokens. The timed constraints cannot
finish within --tokens tokens (41 integers; a JSON string of at least 200 characters), so every
call generates the same number of tokens with and without a grammar; the tokens actually generated
(up to and including an end token) are counted and printed. Calls alternate between the modes for
--rounds rounds so that load from other processes falls on all of them alike; ms/token is the
median over calls of call time / tokens (a median, because on a shared machine a few calls land
in another process's burst), and the ratio is of those medians. "contrib" is xgrammar's own transformers processor, the previous engine.

Validity: --generations answers sampled at temperature 1 (top_k 0, the hardest case: without a
grammar the untrained model writes noise), rows cycling through grasp's five-integer grammar, a
JSON schema and a choice list; an answer is invalid unless it ended with <|im_end|> within
--validity-tokens tokens and passes a Python check of its language.
"""

import argparse
import json
import statistics
import time

import torch

INTEGERS = r"(0|[1-9][0-9]{0,3})( (0|[1-9][0-9]{0,3})){40}"
LONG_STRING = {"type": "object", "properties": {"text": {"type": "string", "minLength": 200}}, "required": ["text"]}
SCHEMA = {"type": "object", "required": ["object", "count", "graspable"], "properties": {
    "object": {"enum": ["cup", "bowl", "box", "bottle"]},
    "count": {"type": "integer", "minimum": 0, "maximum": 9},
    "graspable": {"type": "boolean"}}}
CHOICES = ["left", "right", "neither", "both hands"]


def schema_ok(text: str) -> bool:
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return False
    return (isinstance(value, dict) and set(value) == set(SCHEMA["required"])
            and value["object"] in SCHEMA["properties"]["object"]["enum"]
            and type(value["count"]) is int and 0 <= value["count"] <= 9 and type(value["graspable"]) is bool)


def time_modes(args: argparse.Namespace, batch: dict, timed_call, model) -> None:
    """Interleaved greedy calls per mode; prints median ms/token and the ratio to unconstrained."""
    modes = ["free", "digits", "json-string", "contrib"]
    for mode in modes:  # warm up: compile grammars, first-call allocations
        timed_call(batch, mode)
    calls: dict[str, list[tuple[float, int]]] = {mode: [] for mode in modes}
    for round_ in range(args.rounds):
        for mode in modes[round_ % len(modes):] + modes[: round_ % len(modes)]:
            calls[mode].append(timed_call(batch, mode))
    per_token = {mode: statistics.median(s / max(1, t) for s, t in calls[mode]) for mode in modes}
    tokens = {mode: sum(t for _, t in calls[mode]) for mode in modes}
    print(f"model: untrained embedded:qwen3-vl-tiny on {model.device}, {torch.get_num_threads()} threads; "
          f"greedy, batch {args.batch}, {args.tokens} new tokens, {args.rounds} calls per mode")
    for mode in modes:
        label = {"free": "unconstrained"}.get(mode, f"constrained {mode}")
        ratio = "" if mode == "free" else f", ratio {per_token[mode] / per_token['free']:.3f}x"
        print(f"{label:>26}: {tokens[mode]} tokens, {per_token[mode] * 1e3:.3f} ms/token{ratio}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=8, help="rows per timed generate call")
    parser.add_argument("--tokens", type=int, default=32, help="new tokens per timed call")
    parser.add_argument("--rounds", type=int, default=8, help="timed calls per mode")
    parser.add_argument("--generations", type=int, default=10000, help="sampled answers checked for validity")
    parser.add_argument("--validity-batch", type=int, default=64)
    parser.add_argument("--validity-tokens", type=int, default=48)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    import xgrammar
    from qvl import chat, decoding
    from qvl.backbone.loading import load
    from qvl.config import BackboneConfig
    from qvl.decoding import END_OF_TURN, Constraint
    from qvl_grasp.grammar import grasp_constraint
    from qvl_grasp.quantizer import parse_answer

    backbone = load(BackboneConfig(name="embedded:qwen3-vl-tiny", finetune="frozen"))
    model, processor, tokenizer = backbone.model, backbone.processor, backbone.tokenizer
    model.eval()
    vocab = decoding.model_vocab_size(model)
    ends = {tokenizer.convert_tokens_to_ids(END_OF_TURN), tokenizer.pad_token_id, tokenizer.eos_token_id}

    def prompts(rows: int) -> dict:
        questions = ["Where is the best grasp?", "Describe the scene.", "Which hand?", "Count the cups."]
        return chat.prompt_batch(processor, [[{"role": "user", "content": [
            {"type": "text", "text": questions[i % len(questions)]}]}] for i in range(rows)])

    timed = {"digits": Constraint.regex(INTEGERS), "json-string": Constraint.json_schema(LONG_STRING)}

    def generated(new: torch.Tensor) -> int:
        """New tokens up to and including each row's first end token."""
        count = 0
        for row in new.tolist():
            cut = next((i for i, t in enumerate(row) if t in ends), None)
            count += len(row) if cut is None else cut + 1
        return count

    def timed_call(batch: dict, mode: str) -> tuple[float, int]:
        kwargs: dict = {"do_sample": False}
        if mode == "contrib":
            kwargs["logits_processor"] = [xgrammar.contrib.hf.LogitsProcessor(
                decoding.compile_constraint(tokenizer, vocab, timed["digits"]))]
        elif mode != "free":
            kwargs["logits_processor"] = [decoding.logits_processor(tokenizer, vocab, timed[mode])]
        start = time.perf_counter()
        with torch.no_grad():
            output = model.generate(**batch, max_new_tokens=args.tokens, min_new_tokens=0, **kwargs)
        seconds = time.perf_counter() - start
        return seconds, generated(output[:, batch["input_ids"].shape[1]:])

    if args.rounds > 0:
        time_modes(args, prompts(args.batch), timed_call, model)

    if args.generations <= 0:
        return
    grasp = grasp_constraint()
    languages = [(grasp, lambda text: parse_answer(text) is not None),
                 (Constraint.json_schema(SCHEMA), schema_ok),
                 (Constraint.choices(CHOICES), lambda text: text in CHOICES)]
    torch.manual_seed(0)
    sampling = {"do_sample": True, "temperature": 1.0, "top_k": 0, "skip_special_tokens": False}

    def invalid_count(total: int, constrained: bool) -> int:
        invalid = done = 0
        while done < total:
            rows = min(args.validity_batch, total - done)
            checks = [languages[(done + i) % len(languages)] for i in range(rows)]
            batch = prompts(rows)
            with torch.no_grad():
                if constrained:
                    texts = decoding.generate_constrained(model, processor, batch, [c for c, _ in checks],
                                                          args.validity_tokens, **sampling)
                else:
                    texts = chat.generate_text(model, processor, batch, args.validity_tokens, **sampling)
            for text, (_, ok) in zip(texts, checks):
                invalid += not (END_OF_TURN in text and ok(text.split(END_OF_TURN)[0]))
            done += rows
        return invalid

    free_total = min(args.generations, 512)
    start = time.perf_counter()
    free_invalid = invalid_count(free_total, constrained=False)
    bound_invalid = invalid_count(args.generations, constrained=True)
    print(f"validity (sampled T=1, rows cycling grasp grammar / JSON schema / choices, "
          f"{time.perf_counter() - start:.0f} s): unconstrained invalid {free_invalid}/{free_total}, "
          f"constrained invalid {bound_invalid}/{args.generations}")


if __name__ == "__main__":
    main()
