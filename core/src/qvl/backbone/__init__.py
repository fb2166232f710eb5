"""The backbone: a Qwen-VL model and its processor, as ``load_backbone`` returns them."""

from __future__ import annotations

from typing import Any

import attrs


@attrs.define
class Backbone:
    """A loaded vision-language model.

    :ivar model: the transformers model (a peft ``PeftModel`` under LoRA / QLoRA).
    :ivar processor: the matching ``AutoProcessor`` (tokenizer, image and video processors,
        chat template).
    :ivar name: the configured ``backbone.name``.
    :ivar source: where the weights came from (a directory or hub id).
    :ivar quantized: whether the weights are bitsandbytes 4-bit.
    """

    model: Any
    processor: Any
    name: str
    source: str
    quantized: bool = False

    @property
    def tokenizer(self) -> Any:
        return self.processor.tokenizer

    @property
    def text_config(self) -> Any:
        config = self.base_model.config
        return getattr(config, "text_config", config)

    @property
    def hidden_size(self) -> int:
        return int(self.text_config.hidden_size)

    @property
    def family(self) -> str:
        return str(self.base_model.config.model_type)

    @property
    def base_model(self) -> Any:
        """The transformers model under any peft wrapper."""
        model = self.model
        get_base = getattr(model, "get_base_model", None)
        return get_base() if callable(get_base) else model

    @property
    def device(self) -> Any:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> Any:
        return self.base_model.get_input_embeddings().weight.dtype

    def trainable_parameters(self) -> tuple[int, int]:
        """(trainable, total) parameter counts."""
        trainable = total = 0
        for parameter in self.model.parameters():
            count = parameter.numel()
            total += count
            if parameter.requires_grad:
                trainable += count
        return trainable, total
