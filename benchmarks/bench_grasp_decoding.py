"""Constrained (xgrammar) vs unconstrained grasp decoding: time per generated token and invalid rates.

Run: .venv/bin/python benchmarks/bench_grasp_decoding.py [--generations 10000] [--batch 64] [--run-dir RUN]
Without --run-dir the model is the untrained embedded tiny Qwen3-VL, sampled at temperature 1:
the hardest case for validity. With --run-dir it is that run's last checkpoint, decoded greedily.
"""

import argparse
import time

import torch


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--generations", type=int, default=10000)
    parser.add_argument("--unconstrained", type=int, default=512, help="generations without the grammar")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--run-dir", default=None)
    args = parser.parse_args()

    from PIL import Image

    from qvl import chat
    from qvl_grasp.constrained import logits_processor, model_vocab_size
    from qvl_grasp.prompting import conversation
    from qvl_grasp.quantizer import parse_answer

    if args.run_dir:
        from pathlib import Path

        from qvl.config import load_config
        from qvl.plugins import load_plugins
        from qvl.runner.assembly import load_parts
        from qvl.runner.rundir import RunDir

        host = load_plugins()
        task = host.task("grasp")
        run = RunDir(Path(args.run_dir))
        config = load_config(task, [], [], base=run.saved_config())
        backbone = load_parts(host, task, config, run.last_checkpoint()).backbone
        sampling = {"do_sample": False}
        size = tuple(config.task.model_image_size)
    else:
        from qvl.backbone.loading import load
        from qvl.config import BackboneConfig

        backbone = load(BackboneConfig(finetune="frozen"))
        sampling = {"do_sample": True, "temperature": 1.0, "top_k": 0}
        size = (256, 192)
    backbone.model.eval()
    torch.manual_seed(0)
    images = [Image.effect_noise(size, 40 + 5 * i).convert("RGB") for i in range(args.batch)]
    batch = chat.prompt_batch(backbone.processor, [conversation(im, None, size) for im in images])
    vocab = model_vocab_size(backbone.model)
    logits_processor(backbone.tokenizer, vocab)  # compile the grammar outside the timing

    def run(total: int, constrained: bool) -> tuple[float, int, int]:
        tokens = invalid = 0
        start = time.perf_counter()
        done = 0
        with torch.no_grad():
            while done < total:
                kwargs = dict(sampling)
                if constrained:
                    kwargs["logits_processor"] = [logits_processor(backbone.tokenizer, vocab)]
                output = backbone.model.generate(**batch, max_new_tokens=32, **kwargs)
                new = output[:, batch["input_ids"].shape[1]:]
                pad = backbone.tokenizer.pad_token_id
                tokens += int((new != pad).sum())
                texts = backbone.tokenizer.batch_decode(new, skip_special_tokens=True)
                invalid += sum(parse_answer(t) is None for t in texts[: total - done])
                done += len(texts)
        return time.perf_counter() - start, tokens, invalid

    free_s, free_tokens, free_invalid = run(args.unconstrained, constrained=False)
    bound_s, bound_tokens, bound_invalid = run(args.generations, constrained=True)
    free_per_token = free_s / max(1, free_tokens)
    bound_per_token = bound_s / max(1, bound_tokens)
    model = args.run_dir or "untrained embedded:qwen3-vl-tiny (sampled, T=1)"
    print(f"model: {model}; batch {args.batch}")
    print(f"unconstrained: {args.unconstrained} generations, {free_tokens} tokens, "
          f"{free_per_token * 1e3:.2f} ms/token, invalid {free_invalid}/{args.unconstrained} "
          f"({free_invalid / args.unconstrained:.1%})")
    print(f"constrained:   {args.generations} generations, {bound_tokens} tokens, "
          f"{bound_per_token * 1e3:.2f} ms/token, invalid {bound_invalid}/{args.generations} "
          f"({bound_invalid / args.generations:.1%})")
    print(f"ratio constrained/unconstrained time per token: {bound_per_token / free_per_token:.2f}x")


if __name__ == "__main__":
    main()
