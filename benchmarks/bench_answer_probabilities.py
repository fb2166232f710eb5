"""qvl.answer_probabilities: one prefill and cached branches, against greedy constrained decoding.

Run: .venv/bin/python benchmarks/bench_answer_probabilities.py [--batch 16] [--rounds 5]

Model: the untrained embedded tiny Qwen3-VL on the CPU. Prompts as vqa's default eval writes them:
two 4-frame 64x64 videos and a question per row, left-padded; the answer set is a progress value
"0".."100" (9 branching paths). Three ways to get an answer for the batch, timed in alternating
rounds (median seconds per batch):

* greedy: ``qvl.decoding.generate_constrained`` with the 0-100 grammar (the mode only);
* answer_probabilities: the whole distribution (this implementation: the prompt once, then every
  path continued from its key/value cache);
* whole prompt per path: what answer_probabilities did before, the prompt and each path run as one
  forward of 9 copies of the batch (reproduced here for the comparison).

Prints each time and the ratios to greedy.
"""

import argparse
import statistics
import time

import torch
from PIL import Image

PROGRESS = [str(n) for n in range(101)]
PROGRESS_REGEX = r"(100|[1-9]?[0-9])"


def conversations(rows: int) -> list:
    result = []
    for row in range(rows):
        videos = [{"type": "video", "video": [Image.new("RGB", (64, 64), (20 * row % 255, 40 + 30 * k, 90 + v * 60))
                                              for k in range(4)],
                   "resized_width": 64, "resized_height": 64, "raw_fps": 10.0, "frames_indices": [0, 3, 6, 9]}
                  for v in range(2)]
        text = {"type": "text", "text": "Task: stack the blocks. How much progress does the second video show, "
                                        "0-100?" + " Answer with a number." * (row % 3)}
        result.append([{"role": "user", "content": [text, *videos]}])
    return result


def whole_prompt_per_path(model, tokenizer, batch, answers) -> None:
    """The previous implementation's forward: the batch once per branching path, each with its path appended."""
    from qvl.answer_probabilities import _children, _paths_to_run, answer_token_ids
    from qvl.chat import language_model_parts

    children = _children(answer_token_ids(tokenizer, answers))
    paths = _paths_to_run({node for node, following in children.items() if len(following) > 1})
    ids = batch["input_ids"]
    rows, width = ids.shape
    longest = max(len(path) for path in paths)
    tail = torch.zeros(len(paths), longest, dtype=ids.dtype)
    real = torch.zeros(len(paths), longest, dtype=torch.bool)
    for k, path in enumerate(paths):
        tail[k, : len(path)] = torch.tensor(path)
        real[k, : len(path)] = True
    stacked = {}
    for key, value in batch.items():
        if not torch.is_tensor(value):
            stacked[key] = value * len(paths) if isinstance(value, list) else value
        elif key == "input_ids" or tuple(value.shape) == (rows, width):
            extra = tail if key == "input_ids" else real if key == "attention_mask" else torch.zeros_like(tail)
            stacked[key] = torch.cat([value.repeat(len(paths), 1),
                                      extra.to(value.dtype).repeat_interleave(rows, dim=0)], dim=1)
        else:
            stacked[key] = torch.cat([value] * len(paths), dim=0)
    trunk, _ = language_model_parts(model)
    with torch.no_grad():
        trunk(**stacked)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    from qvl import chat
    from qvl.answer_probabilities import answer_probabilities
    from qvl.backbone.loading import load
    from qvl.config import BackboneConfig
    from qvl.decoding import Constraint, generate_constrained

    backbone = load(BackboneConfig(name="embedded:qwen3-vl-tiny", finetune="frozen"))
    model, processor = backbone.model, backbone.processor
    tokenizer = processor.tokenizer
    batch = chat.prompt_batch(processor, conversations(args.batch))
    constraint = Constraint.regex(PROGRESS_REGEX)
    modes = {
        "greedy": lambda: generate_constrained(model, processor, batch, constraint, max_new_tokens=4),
        "answer_probabilities": lambda: answer_probabilities(model, tokenizer, batch, [PROGRESS] * args.batch),
        "whole prompt per path": lambda: whole_prompt_per_path(model, tokenizer, batch, PROGRESS),
    }
    for call in modes.values():  # warm up: grammar compilation, first allocations
        call()
    seconds: dict[str, list[float]] = {name: [] for name in modes}
    names = list(modes)
    for round_ in range(args.rounds):
        for name in names[round_ % len(names):] + names[: round_ % len(names)]:
            start = time.perf_counter()
            modes[name]()
            seconds[name].append(time.perf_counter() - start)
    median = {name: statistics.median(values) for name, values in seconds.items()}
    print(f"untrained embedded:qwen3-vl-tiny on cpu, {torch.get_num_threads()} threads; batch {args.batch} of "
          f"{batch['input_ids'].shape[1]} tokens (two 4-frame videos each); answers 0-100; {args.rounds} rounds")
    for name, value in median.items():
        print(f"  {name:24s} {value:7.3f} s/batch   {value / median['greedy']:5.2f}x greedy")
    print(f"answer_probabilities is {median['whole prompt per path'] / median['answer_probabilities']:.2f}x "
          "faster than the whole prompt per path")


if __name__ == "__main__":
    main()
