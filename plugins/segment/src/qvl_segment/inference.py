"""One-pass inference: one prefill feeds the heads and the constrained JSON generation.

1. Prefill the prompt (all but its last token) with ``output_hidden_states``: the per-frame
   features give K and the start/end heatmaps, and the KV cache is kept.
2. Post-process the heatmaps into exactly K segments (peaks, NMS, greedy pairing, monotonic,
   minimum length).
3. Generate the JSON from that cache, each row constrained by a schema of exactly its K segments
   (``qvl.decoding``), so the text and the heads agree on the count and every answer parses.
4. Fill each ``<FRAME>`` with the post-processed frame, mapped back to the user's frame numbers.

The prefill leaves the last prompt token out so that ``generate`` has one uncached token to start
from (it computes the logits of the first answer token there); the vision tower and the prompt
run once. :func:`decode_two_pass` is the plain alternative (heads forward, then a full
``generate``), kept for the benchmark and the equality test.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from qvl_segment.answers import answer_schema, fill_frames, parse_answer
from qvl_segment.episodes import to_original
from qvl_segment.model import SAMPLES_KEY, frame_features, model_inputs
from qvl_segment.postprocess import segments_from_heads

CACHE_MASKED = ("pixel_values", "pixel_values_videos")  # already encoded into the cache


def _prefix(inputs: dict[str, Any]) -> dict[str, Any]:
    """The prompt minus its last token, for every per-token tensor."""
    length = inputs["input_ids"].shape[1]
    return {key: value[:, :-1] if torch.is_tensor(value) and value.dim() == 2 and value.shape[1] == length
            else value for key, value in inputs.items()}


def head_segments(config: Any, heads: Any, features: torch.Tensor) -> tuple[list[int], np.ndarray, list[list]]:
    """K, the start/end probabilities ``[B, 2, T]`` and each row's post-processed segments (sampled indices)."""
    task = config.task
    out = heads(features.float())
    counts = out["count_logits"].argmax(dim=1).tolist()
    probabilities = torch.sigmoid(out["boundary_logits"]).float().cpu().numpy()
    placed = [segments_from_heads(p[0], p[1], k, threshold=task.peak_threshold, nms_radius=task.nms_radius,
                                  min_length=task.min_length) for p, k in zip(probabilities, counts)]
    return counts, probabilities, placed


def decode_batch(config: Any, backbone: Any, heads: Any, batch: dict[str, Any], skills: Sequence[str]
                 ) -> list[dict[str, Any]]:
    """Predictions of one prompt batch (see the module docstring)."""
    task = config.task
    samples = batch[SAMPLES_KEY]
    inputs = model_inputs(batch)
    model = backbone.model
    if task.mode == "lm":
        texts = _generate(config, backbone, inputs, [None] * len(samples), skills, samples)
        return [_lm_prediction(text, sample) for text, sample in zip(texts, samples)]
    from qvl.features import resolve_layer

    prefix = _prefix(inputs)
    output = model(**prefix, use_cache=task.mode == "both", output_hidden_states=True, logits_to_keep=1)
    hidden = output.hidden_states[resolve_layer(backbone, task.feature_layer)]
    counts, probabilities, placed = head_segments(config, heads, frame_features(backbone, prefix, hidden,
                                                                                task.num_frames))
    texts: list[str | None] = [None] * len(samples)
    if task.mode == "both":
        rest = {key: value for key, value in inputs.items() if key not in CACHE_MASKED}
        texts = _generate(config, backbone, rest, [len(p) for p in placed], skills, samples, cache=_kv_cache(output))
    return [_head_prediction(text, k, heat, segments, sample)
            for text, k, heat, segments, sample in zip(texts, counts, probabilities, placed, samples)]


def decode_two_pass(config: Any, backbone: Any, heads: Any, batch: dict[str, Any], skills: Sequence[str]
                    ) -> list[dict[str, Any]]:
    """The same predictions as :func:`decode_batch` in ``both`` mode, from a heads forward and then a
    separate full ``generate`` (the vision tower and the prompt run twice)."""
    from qvl.features import resolve_layer

    task = config.task
    samples = batch[SAMPLES_KEY]
    inputs = model_inputs(batch)
    output = backbone.model(**inputs, use_cache=False, output_hidden_states=True, logits_to_keep=1)
    hidden = output.hidden_states[resolve_layer(backbone, task.feature_layer)]
    counts, probabilities, placed = head_segments(config, heads, frame_features(backbone, inputs, hidden,
                                                                                task.num_frames))
    texts = _generate(config, backbone, inputs, [len(p) for p in placed], skills, samples)
    return [_head_prediction(text, k, heat, segments, sample)
            for text, k, heat, segments, sample in zip(texts, counts, probabilities, placed, samples)]


def _generate(config: Any, backbone: Any, inputs: dict[str, Any], counts: Sequence[int | None],
              skills: Sequence[str], samples: Sequence[dict[str, Any]], cache: Any = None) -> list[str]:
    from qvl.decoding import Constraint, generate_constrained

    task = config.task
    digits = task.mode == "lm"
    constraints = [Constraint.json_schema(answer_schema(skills, count=count, k_max=task.k_max, frames_as_digits=digits,
                                                        num_frames=sample["num_frames"]))
                   for count, sample in zip(counts, samples)]
    # transformers renamed generate's past_key_values to cache (5.x); both take the same object
    kwargs = {} if cache is None else {"cache" if _new_cache_name() else "past_key_values": cache}
    return generate_constrained(backbone.model, backbone.processor, inputs, constraints,
                                max_new_tokens=task.max_new_tokens, **kwargs)


def _kv_cache(output: Any) -> Any:
    cache = getattr(output, "cache", None)
    return cache if cache is not None else output.past_key_values


def _new_cache_name() -> bool:
    from transformers.generation import utils

    return "cache" in getattr(utils, "ALL_CACHE_NAMES", ())


def _head_prediction(text: str | None, count: int, heat: np.ndarray, placed: list, sample: dict[str, Any]
                     ) -> dict[str, Any]:
    numbers = sample["frame_numbers"]
    frames = to_original([(start, end) for start, end, _ in placed], numbers)
    rows = [{"start_frame": int(start), "end_frame": int(end), "action_text": None, "skill": None}
            for start, end in frames]
    parsed = None if text is None else parse_answer(text)
    if parsed is not None and len(parsed) == len(frames):
        rows = fill_frames(parsed, frames)
    for row, (_, _, score) in zip(rows, placed):
        row["score"] = round(float(score), 4)
    return {"episode_id": sample["episode_id"], "k": int(count), "segments": rows, "text": text,
            "valid": text is None or parsed is not None,
            "start_curve": [round(float(v), 4) for v in heat[0]],
            "end_curve": [round(float(v), 4) for v in heat[1]], "frame_numbers": numbers}


def _lm_prediction(text: str, sample: dict[str, Any]) -> dict[str, Any]:
    parsed = parse_answer(text)
    rows = []
    for row in parsed or []:
        if isinstance(row.get("start_frame"), int) and isinstance(row.get("end_frame"), int):
            start, end = sorted((row["start_frame"], row["end_frame"]))
            rows.append({**row, "start_frame": start, "end_frame": end, "score": 1.0})
    return {"episode_id": sample["episode_id"], "k": len(rows), "segments": rows, "text": text,
            "valid": parsed is not None, "frame_numbers": sample["frame_numbers"]}
