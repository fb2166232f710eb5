"""The built-in ``sft`` task end to end: the synthetic example, a user's own ShareGPT file, the scores."""

import json

import pytest
from PIL import Image

from qvl import UserError
from qvl.builtin.sft.scoring import evaluate, field_accuracy, scores

pytestmark = pytest.mark.slow
SMALL = ("task.synthetic.train_samples=12", "task.synthetic.val_samples=6", "task.synthetic.test_samples=6")


def test_scores_exact_match_fields_and_the_majority_baseline():
    references = ['{"color": "red", "shape": "circle"}', '{"color": "blue", "shape": "square"}', "red", "circle"]
    answers = ['{"color": "red", "shape": "square"}', "not json", " red ", "square"]
    assert field_accuracy(references, answers) == {"color": 0.5, "shape": 0.0}
    assert scores(references, answers) == {"exact_match": 0.25, "json_valid": 0.5,
                                           "field_accuracy": {"color": 0.5, "shape": 0.0}}
    result = evaluate(references, answers, majority="red", layouts=["sharegpt"]).to_dict()
    assert result["model"]["exact_match"] == 0.25
    assert result["baselines"]["majority_answer"] == {"answer": "red", "exact_match": 0.25, "json_valid": 0.0,
                                                      "field_accuracy": {"color": 0.0, "shape": 0.0}}
    assert result["samples"] == 4 and result["layouts"] == ["sharegpt"]


def test_training_labels_cover_every_assistant_turn(qvl_tiny_backbone, tmp_path):
    from qvl import chat
    from qvl.builtin.sft.collate import collator
    from qvl.builtin.sft.settings import SftConfig
    from qvl.data.conversations import read_conversations

    Image.new("RGB", (64, 64), "red").save(tmp_path / "a.png")
    path = tmp_path / "two.json"
    path.write_text(json.dumps([{"messages": [
        {"role": "user", "content": "<image>What colour?"}, {"role": "assistant", "content": "red"},
        {"role": "user", "content": "Which shape?"}, {"role": "assistant", "content": "square"}],
        "images": ["a.png"]}]))
    (row,) = read_conversations(path)
    batch = collator(SftConfig(), qvl_tiny_backbone.processor, training=True)([{"messages": row.messages}])
    tokenizer = qvl_tiny_backbone.processor.tokenizer
    labelled = batch["labels"][0][batch["labels"][0] != chat.IGNORE_INDEX]
    assert tokenizer.decode(labelled) == "red<|im_end|>square<|im_end|>"


def test_synthetic_example_trains_evaluates_and_predicts(qvl_run_stage, qvl_quick_run, qvl_run_dir, tmp_path):
    trained = qvl_run_stage("sft", "train", *qvl_quick_run, *SMALL, "train.eval_every=0")
    assert trained.steps == 2
    evaluated = qvl_run_stage("sft", "eval", *qvl_quick_run, *SMALL)
    metrics = evaluated.metrics
    assert metrics["samples"] == 4 and metrics["layouts"] == ["sharegpt"]  # val.jsonl is written as ShareGPT
    rows = [json.loads(line) for line in (qvl_run_dir / "eval" / "val" / "predictions.jsonl").read_text().splitlines()]
    from qvl.builtin.sft.data import split_rows
    from qvl.config import load_config
    from qvl.plugins import load_plugins

    config = load_config(load_plugins().task("sft"), [], list(SMALL))
    references = [row.messages[-1]["content"] for row in split_rows(config, "val")][:4]
    expected = sum(r["answer"] == ref for r, ref in zip(rows, references)) / 4
    assert metrics["model"]["exact_match"] == expected
    majority = metrics["baselines"]["majority_answer"]
    assert majority["exact_match"] == sum(ref == majority["answer"] for ref in references) / 4
    assert (qvl_run_dir / "eval" / "val" / "comparison.md").read_text().count("|") > 6

    folder = tmp_path / "pictures"
    folder.mkdir()
    Image.new("RGB", (64, 64), "blue").save(folder / "b.png")
    with pytest.raises(UserError, match="holds images: set the question to ask about each"):
        qvl_run_stage("sft", "predict", *SMALL, predict_input=str(folder))
    predicted = qvl_run_stage("sft", "predict", *SMALL, "task.question=What colour is it?",
                              "task.choices=['red', 'blue']", predict_input=str(folder))
    assert [p["id"] for p in predicted.predictions] == ["b.png"]
    assert predicted.predictions[0]["answer"] in ("red", "blue")  # inside the constraint, trained or not


def test_a_users_sharegpt_file_trains_and_evaluates_with_one_command(qvl_run_stage, qvl_quick_run, qvl_run_dir,
                                                                     tmp_path, monkeypatch, qvl_host):
    (tmp_path / "img").mkdir()
    rows = []
    for index in range(10):
        color = ["red", "blue"][index % 2]
        Image.new("RGB", (64, 64), color).save(tmp_path / "img" / f"{index}.png")
        rows.append({"conversations": [{"from": "human", "value": "<image>\nColour?"}, {"from": "gpt", "value": color}],
                     "images": [f"img/{index}.png"]})
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(rows))
    setting = f"task.train_file={str(path)!r}"
    monkeypatch.chdir(tmp_path)  # named relative to where training runs; saved absolute with the run
    qvl_run_stage("sft", "train", *qvl_quick_run, "task.train_file=mine.json", "task.val_fraction=0.3",
                  "train.eval_every=0")
    assert f'train_file = "{path}"' in (qvl_run_dir / "config.toml").read_text()
    monkeypatch.chdir(tmp_path / "img")
    metrics = qvl_run_stage("sft", "eval").metrics  # the run's saved settings, from another folder
    from qvl.builtin.sft.data import split_rows
    from qvl.config import load_config
    from qvl.plugins import load_plugins

    config = load_config(load_plugins().task("sft"), [], [setting, "task.val_fraction=0.3"])
    held_out = {row.id for row in split_rows(config, "val")}
    assert not held_out & {row.id for row in split_rows(config, "train")}  # by a hash of each row's id
    assert 1 <= metrics["samples"] == len(held_out) <= 5 and metrics["layouts"] == ["sharegpt"]
    assert metrics["baselines"]["majority_answer"]["answer"] in ("red", "blue")
    with pytest.raises(UserError, match=r"no test data: set task.test_file"):
        qvl_run_stage("sft", "eval", setting, "eval.split=test")

    asked = tmp_path / "ask.jsonl"
    asked.write_text(json.dumps({"messages": [{"role": "user", "content": [
        {"type": "image", "image": "img/0.png"}, {"type": "text", "text": "Colour?"}]}]}) + "\n"
        + json.dumps({"messages": [{"role": "user", "content": "<image>Colour?"},
                                   {"role": "assistant", "content": "blue"}], "images": ["img/1.png"]}) + "\n")
    predicted = qvl_run_stage("sft", "predict", setting, predict_input=str(asked))
    assert [p["id"] for p in predicted.predictions] == ["ask.jsonl:1", "ask.jsonl:2"]
    assert predicted.metrics["with_reference"] == 1 and predicted.metrics["samples"] == 2
    from qvl.export import export_run

    card = (export_run(qvl_host, qvl_run_dir, tmp_path / "exported") / "README.md").read_text()
    assert f"- data: `{path}`" in card


def test_at_most_one_answer_constraint_and_a_bad_schema_is_named(qvl_run_stage):
    with pytest.raises(UserError, match=r"task.regex: must be empty when 'choices' is set \(only one answer "
                                        r"constraint can hold\)"):
        qvl_run_stage("sft", "train", "task.choices=['a']", "task.regex=a+")
    from qvl.builtin.sft.settings import SftConfig, answer_constraint

    with pytest.raises(UserError, match=r"task.json_schema = '\{oops': invalid json_schema constraint: not JSON"):
        answer_constraint(SftConfig(json_schema="{oops"))
    with pytest.raises(UserError, match=r"task.json_schema = 'no/such.json': neither inline JSON nor a readable file"):
        answer_constraint(SftConfig(json_schema="no/such.json"))
    assert answer_constraint(SftConfig(json_schema='{"type": "object"}')).kind == "json_schema"
    assert answer_constraint(SftConfig()) is None


def readme_sft_commands() -> list[list[str]]:
    """The README's ``qvl run sft ... --run-dir runs/sft-example`` commands, continuation lines joined."""
    import shlex
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "README.md").read_text().replace("\\\n", " ")
    commands = [shlex.split(line.strip()) for line in text.splitlines() if line.strip().startswith("qvl run sft ")]
    return [words[1:] for words in commands if "runs/sft-example" in words]


def test_the_readme_commands_on_the_committed_example_run(tmp_path, monkeypatch, capsys):
    from pathlib import Path

    from qvl.cli import main

    commands = readme_sft_commands()
    assert [words[:3] for words in commands] == [["run", "sft", "train"], ["run", "sft", "eval"],
                                                 ["run", "sft", "predict"]]
    (tmp_path / "examples").symlink_to(Path(__file__).resolve().parents[2] / "examples")
    monkeypatch.chdir(tmp_path)
    for words in commands:
        assert main(words) == 0, words
    evaluated = json.loads((tmp_path / "runs" / "sft-example" / "eval" / "val" / "eval.json").read_text())
    assert evaluated["samples"] == 4 and evaluated["layouts"] == ["sharegpt"]
    (predictions,) = (tmp_path / "runs" / "sft-example" / "predict").glob("*/predictions.jsonl")
    assert [json.loads(line)["id"] for line in predictions.read_text().splitlines()] == [
        f"test.jsonl:{n}" for n in range(1, 5)]


def test_a_video_row_samples_frames_at_the_configured_rate(qvl_tiny_backbone, tmp_path):
    """LLaMA-Factory's mllm_video_demo layout: a <video> placeholder and a 'videos' path, read with PyAV."""
    import numpy as np

    from qvl.builtin.sft.collate import collator
    from qvl.builtin.sft.settings import SftConfig
    from qvl.data.conversations import read_conversations
    from qvl.data.video_frames import sample_frames
    from qvl.lerobot.video import encode_video

    encode_video(tmp_path / "clip.mp4", [np.full((64, 64, 3), 10 * i, np.uint8) for i in range(20)], fps=10)
    sampled = sample_frames(tmp_path / "clip.mp4", fps=2.0, max_frames=64)
    assert sampled.indices == [0, 6, 13, 19] and sampled.total == 20 and sampled.native_fps == 10
    assert [round(np.asarray(f).mean() / 10) for f in sampled.frames] == [0, 6, 13, 19]  # the frames at those indices
    assert len(sample_frames(tmp_path / "clip.mp4", fps=10.0, max_frames=6).indices) == 6

    path = tmp_path / "video.json"
    path.write_text(json.dumps([{"messages": [{"content": "<video>Why is this video funny?", "role": "user"},
                                              {"content": "It gets brighter.", "role": "assistant"}],
                                 "videos": ["clip.mp4"]}]))
    (row,) = read_conversations(path)
    batch = collator(SftConfig(), qvl_tiny_backbone.processor, training=True)([{"messages": row.messages}])
    assert batch["video_grid_thw"].tolist() == [[2, 4, 4]]  # 4 frames in 2 temporal pairs of 64x64
    text = qvl_tiny_backbone.processor.tokenizer.decode(batch["input_ids"][0])
    assert "<0.3 seconds>" in text and "<1.6 seconds>" in text  # the sampled frames' real times
    (broken := tmp_path / "broken.mp4").write_bytes(b"nope")
    with pytest.raises(UserError, match="broken.mp4: cannot read this video"):
        sample_frames(broken, fps=2.0, max_frames=8)


def test_a_bad_constraint_fails_before_training(qvl_run_stage, qvl_quick_run, qvl_run_dir):
    with pytest.raises(UserError, match=r"invalid regex constraint '\[0-9'"):
        qvl_run_stage("sft", "train", *qvl_quick_run, *SMALL, "task.regex=[0-9")
    assert not list(qvl_run_dir.glob("checkpoints/*"))
