"""Schema validity of the segment task's constrained JSON over many answers sampled from random weights.

Run: .venv/bin/python benchmarks/bench_segment_validity.py [--generations 1000] [--rows 100]

The sampler of plugins/segment/tests/test_inference.py (which checks 40 in CI): a one-layer
Qwen3 language model with random weights, the real tokenizer with <FRAME>, temperature 1, K
cycling over 0-4. Prints how many answers parse and validate against their schema, and the time.
"""

import argparse
import json
import sys
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generations", type=int, default=1000)
    parser.add_argument("--rows", type=int, default=100)
    args = parser.parse_args()

    import jsonschema

    from qvl.backbone.loading import load
    from qvl.config import BackboneConfig
    from qvl.decoding import model_vocab_size
    from qvl_segment.tokens import add_frame_token

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins" / "segment" / "tests"))
    from test_inference import random_answers

    backbone = load(BackboneConfig(name="embedded:qwen3-vl-tiny", finetune="frozen"), prepare=add_frame_token)
    start = time.perf_counter()
    answers = random_answers(backbone.tokenizer, backbone.processor, model_vocab_size(backbone.model),
                             args.generations, args.rows)
    seconds = time.perf_counter() - start
    invalid = 0
    for text, schema in answers:
        try:
            jsonschema.validate(json.loads(text), schema)
        except (ValueError, jsonschema.ValidationError):
            invalid += 1
    print(f"{len(answers)} answers sampled at temperature 1 from random weights: {invalid} invalid "
          f"({seconds:.0f} s)")


if __name__ == "__main__":
    main()
