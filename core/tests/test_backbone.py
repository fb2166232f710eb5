import warnings

import pytest
import torch
from PIL import Image

from qvl.backbone import embedded
from qvl.backbone.loading import BackboneLoadError, load
from qvl.config import BackboneConfig, LoraConfig


@pytest.fixture(scope="module")
def tokenizer(qvl_tiny_backbone):
    return qvl_tiny_backbone.tokenizer


def test_tokenizer_has_the_real_qwen_vocabulary_and_special_ids(tokenizer):
    assert tokenizer("Hello world").input_ids == [9707, 1879]  # as Qwen2.5 / Qwen3 tokenize it
    assert tokenizer("123").input_ids == [16, 17, 18]  # digits one by one
    ids = {text: tokenizer.convert_tokens_to_ids(text) for text, _ in embedded.SPECIAL_TOKENS}
    assert ids["<|endoftext|>"] == 151643
    assert ids["<|im_start|>"] == 151644 and ids["<|im_end|>"] == 151645
    assert ids["<|vision_start|>"] == 151652 and ids["<|vision_end|>"] == 151653
    assert ids["<|image_pad|>"] == 151655 and ids["<|video_pad|>"] == 151656
    assert ids["</think>"] == 151668
    assert tokenizer.decode([151644, 9707, 151645], skip_special_tokens=True) == "Hello"


def test_qwen3_chat_template_is_the_real_one(qvl_tiny_backbone):
    template = embedded.chat_template("qwen3_vl")
    assert len(template.encode()) == 5292  # byte size of Qwen3-VL-Instruct's chat_template
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Hi"}]}]
    text = qvl_tiny_backbone.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text == "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>Hi<|im_end|>\n<|im_start|>assistant\n"


def test_processor_expands_image_tokens_to_the_patch_grid(qvl_tiny_backbone):
    processor = qvl_tiny_backbone.processor
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Hi"}]}]
    text = processor.apply_chat_template(messages, tokenize=False)
    encoded = processor(text=[text], images=[Image.new("RGB", (96, 64))], return_tensors="pt")
    t, h, w = encoded["image_grid_thw"][0].tolist()
    assert (t, h, w) == (1, 4, 6)  # 64x96 pixels in 16-pixel patches
    assert (encoded["input_ids"] == 151655).sum().item() == h * w // 4  # 2x2 merge


def test_tiny_qwen3_forward_and_generate(qvl_tiny_backbone):
    processor = qvl_tiny_backbone.processor
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Hi"}]}]
    text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    encoded = processor(text=[text], images=[Image.new("RGB", (64, 64), "blue")], return_tensors="pt")
    with torch.no_grad():
        out = qvl_tiny_backbone.model(**encoded)
        generated = qvl_tiny_backbone.model.generate(**encoded, max_new_tokens=4, do_sample=False)
    assert out.logits.shape == (1, encoded["input_ids"].shape[1], embedded.VOCAB_SIZE)
    assert generated.shape[1] == encoded["input_ids"].shape[1] + 4 or generated[0, -1].item() in (151645, 151643)
    assert qvl_tiny_backbone.family == "qwen3_vl" and qvl_tiny_backbone.hidden_size == 128


def test_tiny_qwen25_loads_with_its_own_template_and_processor():
    backbone = load(BackboneConfig(name="embedded:qwen2.5-vl-tiny", finetune="frozen"))
    assert backbone.family == "qwen2_5_vl"
    processor = backbone.processor
    text = processor.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False)
    assert text.startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n")
    encoded = processor(text=[processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Hi"}]}], tokenize=False)],
        images=[Image.new("RGB", (56, 56))], return_tensors="pt")
    assert encoded["image_grid_thw"][0].tolist() == [1, 4, 4]  # 14-pixel patches
    with torch.no_grad():
        assert backbone.model(**encoded).logits.shape[-1] == embedded.VOCAB_SIZE


def test_embedded_model_is_materialised_once_and_loaded_from_disk():
    first = embedded.resolve("embedded:qwen3-vl-tiny")
    assert embedded.resolve("embedded:qwen3-vl-tiny") == first
    assert {"config.json", "model.safetensors", "chat_template.jinja", "tokenizer.json"} <= {
        p.name for p in __import__("pathlib").Path(first).iterdir()}


def test_lora_trains_adapters_of_the_language_model_only():
    backbone = load(BackboneConfig(finetune="lora", lora=LoraConfig(r=4, alpha=8)))
    trainable = [n for n, p in backbone.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert not any("visual" in n for n in trainable)
    # 4 layers x 7 projections x (A + B)
    assert len(trainable) == 4 * 7 * 2


def test_full_finetune_can_freeze_the_vision_tower():
    backbone = load(BackboneConfig(finetune="full", freeze_vision=True))
    frozen = {n for n, p in backbone.model.named_parameters() if not p.requires_grad}
    assert frozen and all("visual" in n for n in frozen)
    assert any(p.requires_grad for n, p in backbone.model.named_parameters() if "language_model" in n)


def test_full_finetune_can_freeze_the_token_embeddings():
    backbone = load(BackboneConfig(finetune="full", freeze_embeddings=True))
    embedding = backbone.model.get_input_embeddings().weight
    assert not embedding.requires_grad
    trainable, total = backbone.trainable_parameters()
    assert trainable == total - embedding.numel()
    assert any(p.requires_grad for n, p in backbone.model.named_parameters() if "visual" in n)


def test_frozen_backbone_has_no_trainable_parameters():
    backbone = load(BackboneConfig(finetune="frozen"))
    assert backbone.trainable_parameters()[0] == 0


def test_qlora_loads_the_language_model_in_4bit_and_trains_lora():
    import bitsandbytes as bnb

    from qvl.config import QuantizationConfig

    backbone = load(BackboneConfig(finetune="qlora", lora=LoraConfig(r=4),
                                   quantization=QuantizationConfig(compute_dtype="float32")))
    assert backbone.quantized
    four_bit = [n for n, m in backbone.model.named_modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert len(four_bit) == 4 * 7  # every projection of the 4 text layers
    assert not any("visual" in n or "lm_head" in n for n in four_bit)
    trainable = [n for n, p in backbone.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    ids = torch.tensor([[151644, 9707, 1879, 151645]])
    backbone.model(input_ids=ids, labels=ids).loss.backward()
    assert all(p.grad is not None for p in backbone.model.parameters() if p.requires_grad)


def test_qlora_without_usable_bitsandbytes_warns_once_and_loads_unquantized(monkeypatch):
    from qvl.backbone import loading

    monkeypatch.setattr(loading, "bitsandbytes_problem", lambda: "bitsandbytes is not usable (ImportError: x)")
    loading._warn_once.cache_clear()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        backbone = load(BackboneConfig(finetune="qlora", lora=LoraConfig(r=4)))
        load(BackboneConfig(finetune="qlora", lora=LoraConfig(r=4)))
    assert not backbone.quantized
    messages = [str(w.message) for w in caught if "unquantized" in str(w.message)]
    assert messages == ["bitsandbytes is not usable (ImportError: x); loading embedded:qwen3-vl-tiny unquantized instead"]
    assert any(p.requires_grad for p in backbone.model.parameters())


def test_bad_backbone_names_are_clear_errors():
    with pytest.raises(embedded.UnknownBackboneError, match="embedded:qwen3-vl-tiny"):
        embedded.resolve("embedded:qwen9-vl-huge")
    with pytest.raises(BackboneLoadError, match="not a directory, a hub id"):
        load(BackboneConfig(name="/no/such/model/dir"))


@pytest.mark.parametrize(("preset", "billions"), [("qwen3-vl-2b", 2.1), ("qwen3-vl-4b", 4.4),
                                                 ("qwen3-vl-8b", 8.8), ("qwen2.5-vl-3b", 3.8)])
def test_shape_presets_have_the_published_sizes(preset, billions):
    from transformers import AutoModelForImageTextToText

    config = embedded.build_config(embedded.PRESETS[preset])
    with torch.device("meta"):
        model = AutoModelForImageTextToText.from_config(config)
    total = sum(p.numel() for p in model.parameters()) / 1e9
    assert total == pytest.approx(billions, rel=0.06)


def test_a_local_checkpoint_directory_loads_through_the_same_code(tmp_path):
    import shutil

    local = tmp_path / "my-qwen3-vl"
    shutil.copytree(embedded.resolve("embedded:qwen3-vl-tiny"), local)
    backbone = load(BackboneConfig(name=str(local), finetune="frozen"))
    assert backbone.source == str(local) and backbone.family == "qwen3_vl"
    reference = load(BackboneConfig(finetune="frozen"))
    for (name, mine), (_, theirs) in zip(backbone.model.named_parameters(), reference.model.named_parameters()):
        assert torch.equal(mine, theirs), name


def test_dtype_and_gradient_checkpointing_options():
    backbone = load(BackboneConfig(finetune="lora", dtype="bfloat16", gradient_checkpointing=True,
                                   lora=LoraConfig(r=4)))
    assert backbone.dtype == torch.bfloat16
    assert backbone.base_model.is_gradient_checkpointing
    backbone.model.train()
    ids = torch.tensor([[151644, 9707, 1879, 151645]])
    backbone.model(input_ids=ids, labels=ids).loss.backward()
    assert all(p.grad is not None for p in backbone.model.parameters() if p.requires_grad)


def test_a_lora_adapter_directory_is_loaded_instead_of_a_fresh_one(tmp_path):
    first = load(BackboneConfig(finetune="lora", lora=LoraConfig(r=4)))
    with torch.no_grad():
        for name, parameter in first.model.named_parameters():
            if "lora_B" in name:
                parameter.fill_(0.5)
    first.model.save_pretrained(tmp_path / "adapter")
    again = load(BackboneConfig(finetune="lora", adapter=str(tmp_path / "adapter")))
    values = [p for n, p in again.model.named_parameters() if "lora_B" in n]
    assert values and all(torch.all(p == 0.5) for p in values) and all(p.requires_grad for p in values)
    with pytest.raises(BackboneLoadError, match="no adapter_config.json"):
        load(BackboneConfig(finetune="lora", adapter=str(tmp_path)))


def test_full_fine_tuning_trains_fp32_master_weights_under_half_precision():
    from qvl.backbone.loading import load
    from qvl.config import BackboneConfig

    config = BackboneConfig(name="embedded:qwen3-vl-tiny", finetune="full", dtype="bfloat16")
    assert {p.dtype for p in load(config, stage="train").model.parameters()} == {torch.float32}
    assert {p.dtype for p in load(config, stage="eval").model.parameters()} == {torch.bfloat16}
