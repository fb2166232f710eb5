"""qvl.recipes: the pieces of the two ready task shapes that do not need a model."""

import attrs
import pytest

from qvl.recipes import Majority, user_turn
from qvl.recipes import answers as answers_recipe
from qvl.recipes import labels as labels_recipe


@attrs.define
class TaskConfig:
    labels: list = attrs.field(factory=lambda: ["no", "yes"])
    answers: list = attrs.field(factory=lambda: ["1", "22", "333"])
    question: str = "How many?"


class Config:
    task = TaskConfig()


def test_the_user_turn_holds_every_image_then_the_samples_or_the_configs_question():
    turn = user_turn({"images": ["a.png", "b.png"], "question": "Which?"}, TaskConfig())
    assert [part["type"] for part in turn["content"]] == ["image", "image", "text"]
    assert turn["content"][-1]["text"] == "Which?"
    assert user_turn({"image": "a.png"}, TaskConfig())["content"][-1]["text"] == "How many?"
    with pytest.raises(ValueError, match="sample 's1': no 'question', and the task's config has none"):
        user_turn({"id": "s1", "image": "a.png"}, object())


def test_labels_are_names_or_indices_and_bad_ones_name_the_sample():
    assert labels_recipe.label_index({"label": "yes"}, ["no", "yes"]) == 1
    assert labels_recipe.label_index({"label": 0}, ["no", "yes"]) == 0
    with pytest.raises(ValueError, match="sample 'x': label 'maybe' is not one of"):
        labels_recipe.label_index({"id": "x", "label": "maybe"}, ["no", "yes"])
    with pytest.raises(ValueError, match=r"label index 2 outside 0\.\.1"):
        labels_recipe.label_index({"label": 2}, ["no", "yes"])


def test_answer_length_limit_fits_the_longest_listed_answer(qvl_tiny_backbone):
    tokenizer = qvl_tiny_backbone.processor.tokenizer
    longest = max(len(tokenizer.encode(a, add_special_tokens=False)) for a in TaskConfig().answers)
    assert answers_recipe.max_new_tokens(TaskConfig(), tokenizer) == longest + 1
    assert answers_recipe.max_new_tokens(object(), tokenizer) == answers_recipe.UNCONSTRAINED_MAX_NEW_TOKENS


def test_scoring_with_and_without_a_majority_baseline(tmp_path):
    dataset = [{"answer": "1"}, {"answer": "22"}, {"answer": "1"}, {"answer": "333"}]
    predictions = [{"answer": "1"}, {"answer": "1"}, {"answer": "1"}, {"answer": "nonsense"}]
    result = answers_recipe.evaluate(Config(), predictions, dataset, tmp_path, Majority.of(["22", "22", "1"]))
    assert result.model == {"accuracy": 0.5, "invalid_rate": 0.25}
    assert result.baselines == {"majority_class": {"answer": "22", "accuracy": 0.25}}
    assert answers_recipe.evaluate(Config(), predictions, dataset, tmp_path, None).baselines == {}
    labelled = labels_recipe.evaluate(Config(), [{"label": "yes"}, {"label": "yes"}],
                                      [{"label": 1}, {"label": "no"}], tmp_path, Majority(0))
    assert labelled.to_dict() == {"model": {"accuracy": 0.5},
                                  "baselines": {"majority_class": {"label": "no", "accuracy": 0.5}}, "samples": 2}
