"""Load a Qwen-VL backbone with transformers and set it up for training (full, LoRA, QLoRA)."""

from __future__ import annotations

import functools
import re
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from qvl.backbone import Backbone
from qvl.backbone.embedded import resolve
from qvl.config import BackboneConfig
from qvl.errors import UserError

SUPPORTED_FAMILIES = ("qwen3_vl", "qwen3_vl_moe", "qwen2_5_vl", "qwen2_vl")


class BackboneLoadError(UserError, RuntimeError):
    pass


@functools.cache
def _warn_once(message: str) -> None:
    warnings.warn(message, RuntimeWarning, stacklevel=3)


def bitsandbytes_problem() -> str | None:
    """Why 4-bit loading cannot work here, or None if it can."""
    try:
        import bitsandbytes  # noqa: F401
    except Exception as exc:  # ImportError, or a broken native library
        return f"bitsandbytes is not usable ({type(exc).__name__}: {exc})"
    return None


def resolve_dtype(name: str) -> Any:
    import torch

    if name == "auto":
        if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    return getattr(torch, name)


def _device() -> Any:
    from accelerate import PartialState

    return PartialState().device


def lora_target_pattern(names: list[str]) -> str:
    """LoRA on the language model only: the vision tower's MLP reuses names like ``up_proj``."""
    alternatives = "|".join(re.escape(name) for name in names)
    return rf"^(?!.*\bvisual\b).*\.({alternatives})$"


def load(config: BackboneConfig, prepare: Callable[[Any, Any], None] | None = None,
         stage: str = "train") -> Backbone:
    """Load the configured backbone on this process's device and prepare its trainable parts.

    ``prepare(model, processor)`` runs right after loading, before freezing, k-bit preparation
    and LoRA (the ``prepare_backbone`` hook). Full fine-tuning trains fp32 master weights: with a
    bf16/fp16 ``dtype`` the weights are loaded in fp32 for ``stage == "train"`` and mixed precision
    computes in half precision under autocast (bf16 weights would lose small updates to rounding).
    """
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    source = resolve(config.name)
    looks_like_hub_id = re.fullmatch(r"[\w.-]+/[\w.-]+", source) is not None
    if not Path(source).is_dir() and not looks_like_hub_id:
        raise BackboneLoadError(
            f"backbone.name = {config.name!r}: not a directory, a hub id (owner/name), "
            "'embedded:qwen3-vl-tiny', 'embedded:qwen2.5-vl-tiny' or a 'preset:...'"
        )
    dtype = resolve_dtype(config.dtype)
    if stage == "train" and config.finetune == "full" and dtype in (torch.bfloat16, torch.float16):
        dtype = torch.float32
    want_4bit = config.finetune == "qlora" or config.quantize
    quantization = None
    if want_4bit:
        problem = bitsandbytes_problem()
        if problem:
            _warn_once(f"{problem}; loading {config.name} unquantized instead")
        else:
            from transformers import BitsAndBytesConfig

            quantization = BitsAndBytesConfig(
                load_in_4bit=True,
                bnb_4bit_quant_type=config.quantization.quant_type,
                bnb_4bit_use_double_quant=config.quantization.double_quant,
                bnb_4bit_compute_dtype=getattr(torch, config.quantization.compute_dtype),
                # the vision tower and the output layer stay in full precision, as in QLoRA
                llm_int8_skip_modules=[r".*\bvisual", "lm_head"],
            )
    kwargs: dict[str, Any] = dict(dtype=dtype, trust_remote_code=config.trust_remote_code)
    if config.revision:
        kwargs["revision"] = config.revision
    if config.attn_implementation:
        kwargs["attn_implementation"] = config.attn_implementation
    if quantization is not None:
        kwargs["quantization_config"] = quantization
        kwargs["device_map"] = {"": _device()}
    try:
        model = AutoModelForImageTextToText.from_pretrained(source, **kwargs)
        processor = AutoProcessor.from_pretrained(source, trust_remote_code=config.trust_remote_code)
    except OSError as exc:
        raise BackboneLoadError(f"backbone.name = {config.name!r}: cannot load ({exc})") from exc
    if prepare is not None:
        prepare(model, processor)
    family = model.config.model_type
    if family not in SUPPORTED_FAMILIES:
        _warn_once(f"backbone {config.name!r} is a {family!r} model; qvl is tested on {SUPPORTED_FAMILIES}")

    model = _prepare_for_training(model, config, quantized=quantization is not None,
                                  token_ids=_trainable_token_ids(processor, config))
    return Backbone(model=model, processor=processor, name=config.name, source=source,
                    quantized=quantization is not None)


def _trainable_token_ids(processor: Any, config: BackboneConfig) -> list[int]:
    tokenizer = getattr(processor, "tokenizer", processor)
    ids = []
    for token in config.lora.trainable_tokens:
        token_id = tokenizer.convert_tokens_to_ids(token)
        if token_id is None or token_id == tokenizer.unk_token_id:
            raise BackboneLoadError(f"backbone.lora.trainable_tokens: {token!r} is not a token of {config.name!r} "
                                    "(a task adds its special tokens in prepare_backbone)")
        ids.append(int(token_id))
    return ids


def _prepare_for_training(model: Any, config: BackboneConfig, quantized: bool, token_ids: list[int] = ()) -> Any:
    mode = config.finetune
    if mode == "frozen":
        model.requires_grad_(False)
        model.eval()
        return model
    if mode == "full":
        if quantized:
            raise BackboneLoadError("backbone.finetune = 'full' cannot train 4-bit weights; use 'qlora'")
        model.requires_grad_(True)
        if config.freeze_vision:
            _visual(model).requires_grad_(False)
        if config.freeze_embeddings:
            # 151,936 rows: on a small model their optimizer update is most of a step's time
            model.get_input_embeddings().requires_grad_(False)
        if config.gradient_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        return model

    from peft import LoraConfig, PeftModel, get_peft_model, prepare_model_for_kbit_training

    if quantized:
        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=config.gradient_checkpointing,
            gradient_checkpointing_kwargs={"use_reentrant": False},
        )
    elif config.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    if config.adapter:
        if not Path(config.adapter, "adapter_config.json").is_file():
            raise BackboneLoadError(f"backbone.adapter = {config.adapter!r}: no adapter_config.json there")
        return PeftModel.from_pretrained(model, config.adapter, is_trainable=True)
    lora = LoraConfig(
        r=config.lora.r,
        lora_alpha=config.lora.alpha,
        lora_dropout=config.lora.dropout,
        bias=config.lora.bias,
        target_modules=lora_target_pattern(config.lora.target_modules),
        modules_to_save=config.lora.modules_to_save or None,
        trainable_token_indices=list(token_ids) or None,
        # a trained copy of a tied embedding must stay tied to the output layer (peft ties trained
        # token rows by itself)
        ensure_weight_tying=bool(config.lora.modules_to_save),
    )
    try:
        return get_peft_model(model, lora)
    except ValueError as exc:
        raise BackboneLoadError(f"backbone.lora.target_modules = {config.lora.target_modules}: {exc}") from exc


def _visual(model: Any) -> Any:
    for path in ("model.visual", "visual"):
        module = model
        for part in path.split("."):
            module = getattr(module, part, None)
            if module is None:
                break
        if module is not None:
            return module
    raise BackboneLoadError(f"cannot find the vision tower of {type(model).__name__} to freeze it")
