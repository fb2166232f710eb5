"""The run configuration's schema: the attrs config classes and the validators tasks use for their own."""

from __future__ import annotations

from typing import Any, Literal

import attrs


def positive(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value is not None and not value > 0:
        raise ValueError(f"'{attribute.name}' must be > 0, got {value!r}")


def non_negative(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value is not None and value < 0:
        raise ValueError(f"'{attribute.name}' must be >= 0, got {value!r}")


def not_with(other: str, why: str = "both say where the data comes from") -> Any:
    """A validator: this setting and ``other`` exclude each other (both set is refused, naming both and ``why``)."""

    def check(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
        if value and getattr(instance, other):
            raise ValueError(f"'{attribute.name}' must be empty when '{other}' is set ({why}): set one of them")

    return check


def even(instance: Any, attribute: attrs.Attribute, value: int) -> None:
    """A side of H.264 (yuv420p) video frames, which must be even: said when the config is read, not by
    the encoder once the first video is being written."""
    if value % 2:
        raise ValueError(f"'{attribute.name}' must be even (a side of H.264 video frames), got {value!r}")


def model_image_size(instance: Any, attribute: attrs.Attribute, value: list[int]) -> None:
    """``[width, height]`` the model sees: multiples of 32 (Qwen-VL's 2x2-merged patches of 14 or 16
    pixels come out whole after qwen-vl-utils rounds), at least 32."""
    if len(value) != 2 or any(v < 32 or v % 32 for v in value):
        raise ValueError(f"'{attribute.name}' must be [width, height], multiples of 32, at least 32; got {value}")


def fraction(instance: Any, attribute: attrs.Attribute, value: float) -> None:
    if not 0.0 <= value < 1.0:
        raise ValueError(f"'{attribute.name}' must be in [0, 1), got {value!r}")


REPORT_TO = ("tensorboard", "mlflow", "wandb", "trackio", "none")


def _report_to(instance: Any, attribute: attrs.Attribute, value: list[str]) -> None:
    unknown = [name for name in value if name not in REPORT_TO]
    if unknown or ("none" in value and len(value) > 1):
        raise ValueError(f"'{attribute.name}' must list some of {', '.join(REPORT_TO[:-1])}, or be [\"none\"]; "
                         f"got {value}")


def _workers(instance: Any, attribute: attrs.Attribute, value: int | str) -> None:
    if value != "auto":
        non_negative(instance, attribute, value)


@attrs.define
class LoraConfig:
    r: int = attrs.field(default=16, validator=positive)
    alpha: int = attrs.field(default=32, validator=positive)
    dropout: float = attrs.field(default=0.05, validator=fraction)
    target_modules: list[str] = attrs.field(
        factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )
    bias: Literal["none", "all", "lora_only"] = "none"
    modules_to_save: list[str] = attrs.field(factory=list)
    # tokens (by their text) whose embedding rows train beside the adapters: the special tokens a
    # task adds in prepare_backbone (peft's trainable_token_indices; cheaper than modules_to_save,
    # which trains a copy of the whole embedding)
    trainable_tokens: list[str] = attrs.field(factory=list)


@attrs.define
class QuantizationConfig:
    """bitsandbytes 4-bit settings, used when ``finetune = "qlora"`` (or ``quantize = true``)."""

    quant_type: Literal["nf4", "fp4"] = "nf4"
    double_quant: bool = True
    compute_dtype: Literal["bfloat16", "float16", "float32"] = "bfloat16"


@attrs.define
class BackboneConfig:
    """Which Qwen-VL model to load and how to train it.

    ``name``: ``embedded:qwen3-vl-tiny`` / ``embedded:qwen2.5-vl-tiny`` (built locally, no
    download), ``preset:qwen3-vl-2b`` etc. (real shapes, random weights, for benchmarks), a hub id
    such as ``Qwen/Qwen3-VL-2B-Instruct``, or a local directory.
    """

    name: str = "embedded:qwen3-vl-tiny"
    finetune: Literal["full", "lora", "qlora", "frozen"] = "lora"
    quantize: bool = False
    adapter: str | None = None
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    lora: LoraConfig = attrs.field(factory=LoraConfig)
    quantization: QuantizationConfig = attrs.field(factory=QuantizationConfig)
    freeze_vision: bool = False
    freeze_embeddings: bool = False  # full fine-tune: keep the token embedding (and a tied LM head) fixed
    gradient_checkpointing: bool = False
    trust_remote_code: bool = False
    attn_implementation: str | None = None
    revision: str | None = None


@attrs.define
class TrainConfig:
    steps: int = attrs.field(default=100, validator=positive)
    epochs: int | None = attrs.field(default=None, validator=positive)  # when set, replaces steps
    batch_size: int = attrs.field(default=8, validator=positive)
    grad_accum: int = attrs.field(default=1, validator=positive)
    lr: float = attrs.field(default=2e-4, validator=positive)
    weight_decay: float = attrs.field(default=0.0, validator=non_negative)
    # transformers' get_scheduler names
    scheduler: Literal["cosine", "linear", "constant", "constant_with_warmup", "cosine_with_restarts",
                       "polynomial"] = "cosine"
    warmup_steps: int = attrs.field(default=10, validator=non_negative)
    warmup_ratio: float | None = attrs.field(default=None, validator=attrs.validators.optional(fraction))
    max_grad_norm: float = attrs.field(default=1.0, validator=non_negative)
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = "auto"
    log_every: int = attrs.field(default=10, validator=positive)
    save_every: int = attrs.field(default=0, validator=non_negative)
    keep_checkpoints: int = attrs.field(default=2, validator=positive)
    # tasks that support it read decoded, resized training samples from qvl.prepared's cache, and
    # tokenize rows or prompts once (qvl.encoded_rows)
    prepared_cache: bool = True
    # DataLoader worker processes (persistent, prefetching); "auto": measured best for this machine
    num_workers: int | Literal["auto"] = attrs.field(default="auto", validator=_workers)
    ddp_find_unused_parameters: bool = False
    # SFT rows packed into one, without padding, in the tasks that support it (vqa, sft): "auto" packs
    # where the attention has a variable-length kernel (flash attention); on CPU / sdpa it costs more
    # than the padding it saves (docs/benchmarks.md)
    padding_free: bool | Literal["auto"] = "auto"
    # the backbone's repeated blocks (decoder layers, vision blocks) through torch.compile, and the
    # fused AdamW; the first steps pay the compilation (docs/benchmarks.md: on CPU it barely pays)
    compile: bool = False
    # validation during training (0: off); the best checkpoint is kept as checkpoints/best
    eval_every: int = attrs.field(default=0, validator=non_negative)
    eval_split: str = "val"
    eval_samples: int = attrs.field(default=64, validator=positive)
    best_metric: str = "val/loss"
    best_mode: Literal["auto", "min", "max"] = "auto"  # auto: min for losses and errors, else max
    patience: int = attrs.field(default=0, validator=non_negative)  # evaluations without improvement; 0: off
    # where metrics go beside metrics.jsonl: tensorboard (qvl's own, cut back on --resume), mlflow, wandb,
    # trackio (through accelerate's trackers; each reads its own env settings), or ["none"]
    report_to: list[str] = attrs.field(factory=lambda: ["tensorboard"], validator=_report_to)


@attrs.define
class EvalConfig:
    split: str = "val"
    batch_size: int = attrs.field(default=8, validator=positive)
    max_samples: int | None = attrs.field(default=None, validator=positive)
    save_vis: bool = False  # tasks that draw their metrics (curves, confusion matrices) do so


@attrs.define
class PredictConfig:
    input: str | None = None
    split: str = "test"
    batch_size: int = attrs.field(default=8, validator=positive)
    max_samples: int | None = attrs.field(default=None, validator=positive)
    save_vis: bool = False


@attrs.define
class RunConfig:
    """Everything one run needs. ``task`` holds the task's own config instance."""

    task: Any = None
    task_name: str = ""
    seed: int = 0
    output_dir: str = "runs"
    run_name: str | None = None
    backbone: BackboneConfig = attrs.field(factory=BackboneConfig)
    train: TrainConfig = attrs.field(factory=TrainConfig)
    eval: EvalConfig = attrs.field(factory=EvalConfig)
    predict: PredictConfig = attrs.field(factory=PredictConfig)
