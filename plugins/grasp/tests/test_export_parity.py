"""An exported grasp run answers as ``qvl run grasp predict`` does, under plain transformers and xgrammar."""

import json
import shutil
import sys

import pytest
from PIL import Image

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def test_grasp_loads_under_a_core_without_the_answer_constraint_hook():
    """A core of hook API 4 knows no answer_constraint; grasp marks it optional, so check_pending keeps it."""
    import types

    import pluggy

    import qvl_grasp.plugin
    from qvl import hookspec

    older = types.SimpleNamespace(**{name: getattr(hookspec, name) for name in dir(hookspec)
                                     if hasattr(getattr(hookspec, name), "qvl_spec") and name != "answer_constraint"})
    pm = pluggy.PluginManager("qvl")
    pm.add_hookspecs(older)
    pm.register(qvl_grasp.plugin, name="grasp")
    pm.check_pending()  # an unknown hook not marked optional raises here, and the core leaves the plugin out
    assert qvl_grasp.plugin.QVL_HOOK_API == 4 and pm.is_registered(qvl_grasp.plugin)


def test_answer_constraint_is_the_grammar_decode_uses_unless_decoding_is_unconstrained(qvl_host):
    from qvl.config import load_config
    from qvl.export import answer_constraint
    from qvl_grasp.grammar import grasp_constraint

    task = qvl_host.task("grasp")
    assert answer_constraint(qvl_host, task, load_config(task)) == grasp_constraint()
    assert answer_constraint(qvl_host, task, load_config(task, [], ["task.constrained=false"])) is None


def card_code(card):
    return card.split("```python\n", 1)[1].split("```", 1)[0]


@pytest.mark.slow
def test_an_exported_run_answers_as_predict_under_plain_transformers_and_xgrammar(
        qvl_host, qvl_run_stage, qvl_run_dir, qvl_quick_run, tmp_path, monkeypatch):
    from qvl.export import export_run

    data = (f"task.data_dir={str(tmp_path / 'data')!r}", "task.synthetic.train=8", "task.synthetic.val=4",
            "task.synthetic.test=6", "task.synthetic.width=160", "task.synthetic.height=120",
            "task.model_image_size=[96, 64]")
    qvl_run_stage("grasp", "make-data", *data)
    # enough steps that the answers differ between images, and from unconstrained decoding
    qvl_run_stage("grasp", "train", *qvl_quick_run, *data, "train.steps=40", "train.batch_size=4")
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    for index, image in enumerate(sorted((tmp_path / "data").rglob("rgb/*.png"))[:5]):
        shutil.copyfile(image, inputs / f"{index}.png")
    Image.new("RGB", (200, 100), (30, 90, 160)).save(inputs / "odd.png")  # another size and aspect
    # one crop per image (the ensemble's crops are qvl's), one image per batch (as the card answers)
    predicted = qvl_run_stage("grasp", "predict", *data, "task.ensemble.predict=1", "predict.batch_size=1",
                              "predict.max_samples=6", predict_input=str(inputs))
    by_qvl = {p["id"]: p["answers"][0] for p in predicted.predictions}
    assert len(by_qvl) == 6 and all(p["valid"] for p in predicted.predictions)
    assert len(set(by_qvl.values())) >= 2

    out = export_run(qvl_host, qvl_run_dir, tmp_path / "exported")
    assert json.loads((out / "answer_constraint.json").read_text())["kind"] == "ebnf"
    # what a user without qvl has: the folder, its card's code, and the prompt's settings in qvl_config.toml
    monkeypatch.chdir(out)
    code = {}
    exec(card_code((out / "README.md").read_text()), code)
    settings = tomllib.loads((out / "qvl_config.toml").read_text())["task"]
    messages = [{"role": "system", "content": settings["system_prompt"]},
                {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": settings["instruction"]}]}]
    size = tuple(settings["model_image_size"])
    model, processor = code["model"], code["processor"]
    by_card, unconstrained = {}, {}
    for name in by_qvl:
        image = Image.open(inputs / name).convert("RGB").resize(size, Image.BILINEAR)  # as grasp resizes
        by_card[name] = code["answer"](messages, [image])
        text = processor.apply_chat_template(messages, add_generation_prompt=True)
        batch = processor(text=[text], images=[image], return_tensors="pt")
        new = model.generate(**batch, do_sample=False, max_new_tokens=32)[0, batch["input_ids"].shape[1]:]
        unconstrained[name] = processor.decode(new, skip_special_tokens=True)
    assert by_card == by_qvl
    # the grammar is what makes them equal: plain greedy decoding of the same prompts answers otherwise
    assert unconstrained != by_qvl
