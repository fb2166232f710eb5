"""qvl export: a trained run as a folder that plain transformers (and peft) load and answer with."""

import json

import pytest
from PIL import Image

from qvl import UserError

pytestmark = pytest.mark.slow

COLORS = [("a.png", "red"), ("b.png", "blue"), ("c.png", "green"), ("d.png", "yellow")]


def plain_transformers_answers(model, processor, folder, question):
    """What a user without qvl writes: the processor's chat template, greedy generate."""
    import torch

    answers = []
    for name, _ in COLORS:
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
        text = processor.apply_chat_template(messages, add_generation_prompt=True)
        inputs = processor(text=[text], images=[Image.open(folder / name).convert("RGB")], return_tensors="pt")
        with torch.no_grad():
            out = model.generate(**inputs, max_new_tokens=4, do_sample=False)
        new = out[:, inputs["input_ids"].shape[1]:]
        answers.append(processor.batch_decode(new, skip_special_tokens=True)[0].strip().lower())
    return answers


@pytest.fixture
def trained_lora_run(qvl_run_stage, qvl_run_dir, qvl_quick_run, tmp_path):
    # a high rate so that two steps move the adapter well away from zero
    qvl_run_stage("colors", "train", *qvl_quick_run, "task.train_samples=8", "backbone.finetune=lora",
                  "train.lr=0.05", "eval.max_samples=4")
    qvl_run_stage("colors", "eval", *qvl_quick_run)
    images = tmp_path / "images"
    images.mkdir()
    for name, color in COLORS:
        Image.new("RGB", (64, 64), color).save(images / name)
    predicted = qvl_run_stage("colors", "predict", "predict.batch_size=1", predict_input=str(images))
    return qvl_run_dir, images, [p["answer"] for p in predicted.predictions]


def test_export_merges_lora_and_plain_transformers_answers_as_qvl_predict(trained_lora_run, qvl_host, tmp_path):
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from qvl.config import load_config
    from qvl.export import export_run

    run_dir, images, qvl_answers = trained_lora_run
    out = export_run(qvl_host, run_dir, tmp_path / "exported")
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "model.safetensors", "generation_config.json", "README.md", "qvl_config.toml",
            "chat_template.jinja"} <= names and "adapter_config.json" not in names
    model = AutoModelForImageTextToText.from_pretrained(out)
    processor = AutoProcessor.from_pretrained(out)
    question = load_config(qvl_host.task("colors")).task.question
    assert plain_transformers_answers(model, processor, images, question) == qvl_answers
    # the adapter was merged: the weights are not the base model's
    base = qvl_host.call("load_backbone", task=qvl_host.task("colors"),
                         config=load_config(qvl_host.task("colors"), [], ["backbone.finetune=frozen"]), stage="predict")
    differs = [name for name, tensor in model.state_dict().items()
               if name in base.model.state_dict() and not torch.equal(tensor, base.model.state_dict()[name])]
    assert any("q_proj" in name for name in differs)
    card = (out / "README.md").read_text()
    assert "# colors: embedded:qwen3-vl-tiny fine-tuned with qvl" in card
    assert "LoRA (r=" in card and "merged into the weights" in card and "| accuracy |" in card
    assert "AutoModelForImageTextToText.from_pretrained(\".\")" in card


def test_export_keeps_an_adapter_with_its_embedded_base_beside_it(trained_lora_run, qvl_host, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from qvl.config import load_config
    from qvl.export import export_run

    run_dir, images, qvl_answers = trained_lora_run
    out = export_run(qvl_host, run_dir, tmp_path / "adapter", adapter=True)
    assert (out / "adapter_config.json").is_file() and (out / "base_model" / "config.json").is_file()
    assert not (out / "model.safetensors").exists()
    base = AutoModelForImageTextToText.from_pretrained(out / "base_model")
    model = PeftModel.from_pretrained(base, out)
    processor = AutoProcessor.from_pretrained(out)
    question = load_config(qvl_host.task("colors")).task.question
    assert plain_transformers_answers(model, processor, images, question) == qvl_answers
    assert "from peft import PeftModel" in (out / "README.md").read_text()


def test_export_refuses_a_users_folder_and_replaces_its_own(trained_lora_run, qvl_host, tmp_path):
    from qvl.export import export_run

    run_dir, _, _ = trained_lora_run
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(UserError, match="choose another --out"):
        export_run(qvl_host, run_dir, mine)
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]
    out = export_run(qvl_host, run_dir, tmp_path / "again", checkpoint="last")
    first = json.loads((out / ".qvl.json").read_text())
    out = export_run(qvl_host, run_dir, tmp_path / "again", checkpoint="last")  # an earlier export: replaced
    assert json.loads((out / ".qvl.json").read_text())["created"] > first["created"]
    with pytest.raises(UserError, match="no LoRA adapter"):
        export_run(qvl_host, run_dir, tmp_path / "x", adapter=True, overrides=["backbone.finetune=full"])
    with pytest.raises(UserError, match="not a qvl run folder"):
        export_run(qvl_host, tmp_path, tmp_path / "y")


def test_a_checkpoints_sampling_settings_give_way_to_greedy_decoding(tmp_path):
    from transformers import GenerationConfig

    from qvl.export import greedy

    shipped = GenerationConfig(do_sample=True, temperature=0.7, top_p=0.8, top_k=20)  # as Qwen3-VL ships it
    greedy(shipped)
    shipped.save_pretrained(tmp_path)  # transformers refuses do_sample=False beside a temperature
    saved = GenerationConfig.from_pretrained(tmp_path)
    assert saved.do_sample is False and saved.temperature is None and saved.top_k is None


def card_code(card):
    """The model card's first Python block, the one that loads the model (and decodes under the grammar)."""
    return card.split("```python\n", 1)[1].split("```", 1)[0]


def test_hook_answer_constraint_is_written_by_export_with_a_card_whose_code_decodes_as_qvl(
        qvl_host, qvl_run_stage, qvl_quick_run, qvl_run_dir, tmp_path, monkeypatch):
    import types

    from qvl import hookimpl
    from qvl.config import load_config
    from qvl.decoding import Constraint, generate_constrained
    from qvl.export import export_run

    qvl_run_stage("colors", "train", *qvl_quick_run, "train.steps=1", "task.train_samples=4")
    plain = export_run(qvl_host, qvl_run_dir, tmp_path / "plain")  # colors answers no answer_constraint
    assert not (plain / "answer_constraint.json").exists() and "xgrammar" not in (plain / "README.md").read_text()

    settings = load_config(qvl_host.task("colors")).task
    constraint = Constraint.choices(settings.colors)
    answers = {"constraint": constraint}

    @hookimpl
    def answer_constraint(task, config):
        return answers["constraint"] if task.name == "colors" else None

    name = qvl_host.pm.register(types.SimpleNamespace(answer_constraint=answer_constraint), name="constrains")
    try:
        out = export_run(qvl_host, qvl_run_dir, tmp_path / "constrained")
        answers["constraint"] = "red|blue"
        with pytest.raises(TypeError, match="returned str, not a qvl.decoding.Constraint"):
            export_run(qvl_host, qvl_run_dir, tmp_path / "bad")
    finally:
        qvl_host.pm.unregister(name=name)
    assert json.loads((out / "answer_constraint.json").read_text()) == {"kind": "choices",
                                                                         "source": constraint.source}
    card = (out / "README.md").read_text()
    assert "from xgrammar.contrib.hf import LogitsProcessor" in card
    assert 'grammar = xgrammar.Grammar.from_ebnf(spec["source"])' in card and "def answer(messages, images):" in card

    # the card's code as printed, run in the folder: qvl's grammar, and qvl's constrained greedy answers
    monkeypatch.chdir(out)
    code = {}
    exec(card_code(card), code)
    assert str(code["grammar"]) == str(constraint.grammar())
    model, processor = code["model"], code["processor"]
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": settings.question}]}]
    for color in ("red", "blue", "white", "black"):
        image = Image.new("RGB", (64, 64), color)
        by_card = code["answer"](messages, [image])
        text = processor.apply_chat_template(messages, add_generation_prompt=True)
        batch = dict(processor(text=[text], images=[image], return_tensors="pt"))
        assert by_card in settings.colors
        assert [by_card] == generate_constrained(model, processor, batch, constraint, max_new_tokens=256)
