import attrs
import pytest

from qvl.config import ConfigError, RunConfig, load_config, parse_override, to_toml
from qvl.task import Task


def problems(task, text=None, overrides=(), tmp_path=None):
    files = []
    if text is not None:
        path = tmp_path / "run.toml"
        path.write_text(text)
        files.append(path)
    with pytest.raises(ConfigError) as info:
        load_config(task, files, overrides)
    return info.value.problems


def test_defaults_then_task_defaults_then_file_then_set(colors_task, tmp_path):
    plain = load_config(colors_task)
    assert isinstance(plain, RunConfig)
    assert plain.backbone.finetune == "full"  # the task's default beats the core's "lora"
    assert plain.train.steps == colors_task.defaults["train"]["steps"]
    path = tmp_path / "run.toml"
    path.write_text('[train]\nlr = 5e-4\nsteps = 7\n[backbone.lora]\nr = 4\n[task]\nimage_size = 48\n')
    config = load_config(colors_task, [path], ["train.steps=9", "backbone.lora.r=32"])
    assert config.train.lr == pytest.approx(5e-4)
    assert config.train.steps == 9
    assert config.backbone.lora.r == 32
    assert config.task.image_size == 48
    assert config.task_name == "colors"


def test_round_trip_through_saved_toml(colors_task, tmp_path):
    config = load_config(colors_task, overrides=["train.lr=3e-4", "eval.max_samples=5"])
    path = tmp_path / "saved.toml"
    path.write_text(to_toml(config))
    again = load_config(colors_task, [path])
    assert again == config


def test_unknown_key_names_file_line_and_table(colors_task, tmp_path):
    found = problems(colors_task, "[train]\nsteps = 3\nlearning_rate = 1e-3\n", tmp_path=tmp_path)
    assert found == [f"{tmp_path / 'run.toml'}, line 3: unknown key 'learning_rate' in [train]"]


def test_wrong_type_names_key_and_expectation(colors_task, tmp_path):
    found = problems(colors_task, '[train]\nsteps = "many"\n', tmp_path=tmp_path)
    assert found == [f"{tmp_path / 'run.toml'}, line 2: train.steps: expected an integer, got 'many'"]


def test_float_is_not_silently_truncated_to_int(colors_task):
    (problem,) = problems(colors_task, overrides=["train.batch_size=2.5"])
    assert "train.batch_size: expected an integer, got 2.5" in problem
    assert problem.startswith("--set train.batch_size=2.5")


def test_string_is_not_silently_a_list(colors_task, tmp_path):
    (problem,) = problems(colors_task, '[backbone.lora]\ntarget_modules = "q_proj"\n', tmp_path=tmp_path)
    assert "backbone.lora.target_modules: expected a list of strings, got 'q_proj'" in problem
    assert ", line 2:" in problem


def test_bad_choice_lists_the_choices(colors_task):
    (problem,) = problems(colors_task, overrides=["backbone.finetune=lore"])
    assert "backbone.finetune: expected one of 'full', 'lora', 'qlora', 'frozen', got 'lore'" in problem


def test_bad_value_from_validator_names_the_key(colors_task, tmp_path):
    (problem,) = problems(colors_task, "[train]\nlr = -0.1\n", tmp_path=tmp_path)
    assert problem == f"{tmp_path / 'run.toml'}, line 2: train.lr: must be > 0, got -0.1"


def test_task_section_is_checked_by_the_task_config_class(colors_task, tmp_path):
    (unknown,) = problems(colors_task, "[task]\nwidth = 3\n", tmp_path=tmp_path)
    assert unknown == f"{tmp_path / 'run.toml'}, line 2: unknown key 'width' in [task]"
    (bad,) = problems(colors_task, '[task]\ncolors = ["red", "teal"]\n', tmp_path=tmp_path)
    assert "line 2: task.colors: must list at least two of" in bad and "'teal'" in bad


def test_several_problems_are_all_reported(colors_task, tmp_path):
    found = problems(colors_task, '[train]\nsteps = 1.5\nbatch_size = "x"\n[evaluation]\n', tmp_path=tmp_path)
    assert [p.split(": ", 1)[1] for p in found] == [
        "train.steps: expected an integer, got 1.5",
        "train.batch_size: expected an integer, got 'x'",
        "unknown key 'evaluation'",
    ]


def test_toml_syntax_error_names_file_and_line(colors_task, tmp_path):
    (problem,) = problems(colors_task, "[train]\nsteps = = 3\n", tmp_path=tmp_path)
    assert str(tmp_path / "run.toml") in problem and "line 2" in problem


def test_missing_config_file(colors_task, tmp_path):
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(colors_task, [tmp_path / "nope.toml"])


def test_parse_override_values_are_toml():
    assert parse_override("train.lr=2e-4") == (["train", "lr"], 2e-4)
    assert parse_override("backbone.name=Qwen/Qwen3-VL-2B-Instruct") == (["backbone", "name"],
                                                                         "Qwen/Qwen3-VL-2B-Instruct")
    assert parse_override('backbone.lora.target_modules=["q_proj"]') == (["backbone", "lora", "target_modules"],
                                                                         ["q_proj"])
    assert parse_override("backbone.freeze_vision=true") == (["backbone", "freeze_vision"], True)
    with pytest.raises(ConfigError, match="expected KEY.PATH=VALUE"):
        parse_override("train.lr")
    with pytest.raises(ConfigError, match="not a dotted key path"):
        parse_override("train..lr=1")


def test_a_bad_list_item_is_named_by_its_index(colors_task, tmp_path):
    (problem,) = problems(colors_task, '[backbone.lora]\ntarget_modules = ["q_proj", 3]\n', tmp_path=tmp_path)
    assert problem == f"{tmp_path / 'run.toml'}, line 2: backbone.lora.target_modules[1]: expected a string, got 3"


@attrs.define
class _MapConfig:
    files: dict[str, str] = attrs.field(factory=lambda: {"train": "a.txt", "val": "b.txt"})
    limit: int | None = 10


MAP_TASK = Task(name="maps", config_class=_MapConfig)


def test_set_merges_into_a_dict_valued_key_instead_of_replacing_it(tmp_path):
    config = load_config(MAP_TASK, overrides=["task.files.train=x.txt"])
    assert config.task.files == {"train": "x.txt", "val": "b.txt"}
    path = tmp_path / "run.toml"
    path.write_text('[task.files]\ntest = "c.txt"\n')
    assert load_config(MAP_TASK, [path]).task.files == {"train": "a.txt", "val": "b.txt", "test": "c.txt"}


def test_a_value_that_looks_like_a_date_stays_a_string():
    assert parse_override("run_name=2024-06-01") == (["run_name"], "2024-06-01")
    assert load_config(MAP_TASK, overrides=["run_name=2024-06-01"]).run_name == "2024-06-01"
    assert parse_override("run_name=12:30:00")[1] == "12:30:00"


def test_none_survives_the_saved_toml_round_trip(tmp_path):
    config = attrs.evolve(load_config(MAP_TASK), task=_MapConfig(limit=None))
    text = to_toml(config)
    assert 'unset = [\n    "task.limit",\n]' in text or 'unset = ["task.limit"]' in text
    path = tmp_path / "config.toml"
    path.write_text(text)
    from qvl.config import read_toml

    again = load_config(MAP_TASK, base=read_toml(path)[0])
    assert again.task.limit is None and again == config
    assert load_config(MAP_TASK).task.limit == 10


def test_padding_free_is_true_false_or_auto(colors_task):
    assert load_config(colors_task).train.padding_free == "auto"
    assert load_config(colors_task, overrides=["train.padding_free=true"]).train.padding_free is True
    assert load_config(colors_task, overrides=["train.num_workers=2"]).train.num_workers == 2
    (problem,) = problems(colors_task, overrides=["train.padding_free=yes"])
    assert "train.padding_free" in str(problem) and "true or false or one of 'auto'" in str(problem)
    (problem,) = problems(colors_task, overrides=["train.num_workers=true"])
    assert "an integer or one of 'auto'" in str(problem)
