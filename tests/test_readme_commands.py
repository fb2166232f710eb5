"""The READMEs (and the docs/ beside them) say only what the CLI and the config classes accept.

Every ``qvl ...`` command in a shell code block or an inline code span is parsed by the CLI's own
parser (``qvl.cli._parser``): the subcommand, each option, the task and its stage must exist, a
stage's own options must be in the task's ``stage_options``, and every ``--set KEY=VALUE`` key must
be a field of the config classes (``qvl.config.RunConfig`` and its tables, ``[task]`` being the
task's ``config_class``, nested attrs classes followed, any key under a dict-valued field). Every
``task.*`` / ``train.*`` / ``eval.*`` / ``predict.*`` / ``backbone.*`` key named in backticks in the
prose, and every key of a TOML config block, must exist too. Relative links must reach a file and,
with ``#anchor``, one of its headings. The committed examples stay small, and the settings of each
README's example commands give every split of the example data samples.
"""

from __future__ import annotations

import contextlib
import io
import re
import shlex
import tomllib
import typing
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = sorted([ROOT / "README.md", *ROOT.glob("docs/*.md"), *ROOT.glob("plugins/*/README.md"),
                    *ROOT.glob("plugins/*/docs/*.md")])
SHELL_BLOCKS = {"", "bash", "sh", "shell", "console"}
PLACEHOLDERS = {"TASK", "STAGE", "NAME"}  # a command's task or stage written as a placeholder
FILE_SUFFIXES = {"json", "jsonl", "png", "md", "toml", "txt", "py", "pt", "safetensors", "mp4", "npz"}
SECTIONS = ("task", "train", "eval", "predict", "backbone")
PROSE_KEY = re.compile(r"(?<![\w./$-])((?:task|train|eval|predict|backbone)(?:\.[A-Za-z_][\w-]*)+)")
CODE_LIKE = ("!=", "==", "(", "if ")  # an inline span that is Python, not a setting (`if task.name != ...`)
EXAMPLES_LIMIT = 200_000  # bytes of committed example data per plugin


# -- reading markdown ------------------------------------------------------------------------


def fenced_blocks(text: str) -> Iterator[tuple[str, str]]:
    """``(language, code)`` of every fenced code block."""
    for match in re.finditer(r"^```([\w-]*)[^\n]*\n(.*?)^```", text, re.M | re.S):
        yield match.group(1).lower(), match.group(2)


def prose(text: str) -> str:
    """The text outside fenced code blocks."""
    return re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)


def inline_spans(text: str) -> list[str]:
    """Inline code spans (one may run across a line break) with their whitespace collapsed."""
    spans = re.findall(r"(?<!`)`([^`]+?)`(?!`)", re.sub(r"\n\s*\n", "\n\n\x00", prose(text)))
    return [" ".join(span.split()) for span in spans if "\x00" not in span]


def command_lines(text: str) -> list[str]:
    """Shell lines that run ``qvl`` (continuations joined), from shell blocks and inline spans."""
    lines = []
    for language, code in fenced_blocks(text):
        if language in SHELL_BLOCKS:
            lines += [line for line in code.replace("\\\n", " ").splitlines() if re.search(r"(^|[\s/])qvl\s", line)]
    lines += [span for span in inline_spans(text) if re.match(r"qvl\s", span)]
    return lines


def qvl_invocations(line: str) -> list[list[str]]:
    """The arguments of each ``qvl`` invocation on a shell line (``&&``, ``;``, ``|`` split it).

    A usage line (``qvl run TASK STAGE [--resume] [--checkpoint best|last]``) is read as the
    command with every optional part given and the first of each alternative.
    """
    if re.search(r"\[-", line):
        line = re.sub(r"(?<=\s)([^\s|]+)\|\S+", r"\1", line.replace("...", "")).replace("[", "").replace("]", "")
    lexer = shlex.shlex(line, posix=True, punctuation_chars="&;|")
    lexer.whitespace_split = True
    lexer.commenters = "#"
    tokens = list(lexer)
    found, command = [], []
    for token in [*tokens, ";"]:
        if token and set(token) <= set("&;|"):
            if command:
                found.append(command)
            command = []
        else:
            command.append(token)
    invocations = []
    for command in found:
        for i, token in enumerate(command):
            if token == "qvl" or token.endswith("/qvl"):
                invocations.append(command[i + 1:])
                break
    return invocations


# -- checking --------------------------------------------------------------------------------


def _tasks() -> dict[str, typing.Any]:
    from qvl.plugins import load_plugins

    return dict(load_plugins().tasks)


TASKS = _tasks()


def key_problem(dotted: str, tasks: list[typing.Any]) -> str | None:
    """None when ``dotted`` (``task.synthetic.scene``) is a key of the run config for one of
    ``tasks``, else what is wrong with it."""
    from qvl.config import RunConfig

    problems = []
    for task in tasks:
        problem = _key_problem(dotted, task, RunConfig)
        if problem is None:
            return None
        problems.append(problem)
    return problems[0] if problems else f"{dotted}: no task to look it up in"


def _key_problem(dotted: str, task: typing.Any, cls: type) -> str | None:
    parts = dotted.split(".")
    for i, part in enumerate(parts):
        if cls is dict:
            return None  # a dict-valued field takes any key
        if cls is None or not attrs.has(cls):
            return f"{dotted}: {'.'.join(parts[:i])} is a value, not a table"
        fields = attrs.fields_dict(cls)
        if part not in fields:
            known = ", ".join(sorted(fields))
            where = f"{task.name}'s " if parts[0] == "task" else ""
            return f"{dotted}: {where}{'.'.join(parts[:i]) or 'the run config'} has no key {part!r} (it has {known})"
        if cls.__name__ == "RunConfig" and part == "task":
            cls = task.config_class
            continue
        hint = typing.get_type_hints(cls).get(part)
        origin = typing.get_origin(hint)
        if attrs.has(hint):
            cls = hint
        elif origin in (dict, typing.Mapping) or hint is dict:
            cls = dict
        else:
            cls = None
    return None


def command_problems(argv: list[str], tasks: dict[str, typing.Any], defined: set[str] = frozenset()) -> list[str]:
    """What the CLI would refuse in ``qvl ARGV`` (empty: nothing); ``defined``: tasks the document
    itself defines (a plugin example to install first), of which only the options are checked."""
    from qvl.cli import _parser
    from qvl.task import STANDARD_STAGES, stage_option_overrides

    shown = "qvl " + " ".join(argv)
    if argv in (["run"], ["config"]):
        return []  # the command named in prose
    parser = _parser()
    errors = io.StringIO()
    try:
        with contextlib.redirect_stderr(errors), contextlib.redirect_stdout(io.StringIO()):
            args, extra = parser.parse_known_args(argv)
    except SystemExit as exc:
        return [] if exc.code == 0 else [f"{shown}: {errors.getvalue().strip().splitlines()[-1]}"]
    if args.command is None:
        return [f"{shown}: no command"]
    if extra and args.command != "run":
        return [f"{shown}: unrecognized arguments {extra}"]
    if args.command not in ("run", "config"):
        return []
    if args.task in defined:
        if args.command == "run" and args.stage not in STANDARD_STAGES:
            return [f"{shown}: a task defined here has only the stages {', '.join(STANDARD_STAGES)}"]
        return [f"{shown}: options {extra} of a task defined here"] if extra else []
    if args.task in PLACEHOLDERS:
        candidates = list(tasks.values())
    elif args.task not in tasks:
        return [f"{shown}: no task {args.task!r} (installed: {', '.join(sorted(tasks))})"]
    else:
        candidates = [tasks[args.task]]
    overrides = list(args.overrides)
    problems = []
    if args.command == "run" and args.task not in PLACEHOLDERS and args.stage not in PLACEHOLDERS:
        task = candidates[0]
        if args.stage not in task.all_stages:
            return [f"{shown}: task {task.name!r} has no stage {args.stage!r} ({', '.join(task.all_stages)})"]
        try:
            overrides += stage_option_overrides(task, args.stage, extra)
        except ValueError as exc:
            problems.append(f"{shown}: {exc}")
    elif extra:
        problems.append(f"{shown}: options {extra} of a placeholder stage")
    for override in overrides:
        key, has_value, _ = override.partition("=")
        if not has_value:
            problems.append(f"{shown}: --set {override!r} has no '='")
        elif key.isupper():
            continue  # a placeholder: --set KEY=VALUE
        elif (problem := key_problem(key.strip(), candidates)) is not None:
            problems.append(f"{shown}: --set {problem}")
    return problems


def _toml_keys(table: dict, prefix: str = "") -> Iterator[str]:
    for key, value in table.items():
        if isinstance(value, dict) and value:
            yield from _toml_keys(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}"


def document_problems(text: str, tasks: dict[str, typing.Any], own_task: str | None = None) -> list[str]:
    """Every problem of one markdown text; ``own_task``: the task a plugin's README and docs are
    about (its ``task.*`` keys are looked up there; elsewhere in any task)."""
    problems = []
    defined = {name for language, code in fenced_blocks(text) if language == "python"
               for name in re.findall(r"qvl\.Task\(\s*name=\"([\w-]+)\"", code)}
    for line in command_lines(text):
        try:
            invocations = qvl_invocations(line)
        except ValueError as exc:  # unbalanced quotes
            problems.append(f"{line}: {exc}")
            continue
        for argv in invocations:
            problems += command_problems(argv, tasks, defined)
    scope = [tasks[own_task]] if own_task else list(tasks.values())
    for span in inline_spans(text):
        if re.match(r"qvl\s", span) or any(mark in span for mark in CODE_LIKE):
            continue
        for key in PROSE_KEY.findall(span):
            if key.rsplit(".", 1)[-1] in FILE_SUFFIXES:
                continue  # a file name: `eval.json`
            if (problem := key_problem(key.rstrip("."), scope)) is not None:
                problems.append(f"`{span}`: {problem}")
    for language, code in fenced_blocks(text):
        if language != "toml":
            continue
        table = tomllib.loads(code)
        if set(table) & set(SECTIONS) - {"task"} and not set(table) - {"seed", "output_dir", "run_name", *SECTIONS}:
            for key in _toml_keys(table):
                if key.split(".")[0] in SECTIONS and (problem := key_problem(key, scope)) is not None:
                    problems.append(f"TOML block: {problem}")
    return problems


def own_task(path: Path) -> str | None:
    parts = path.relative_to(ROOT).parts
    return parts[1] if parts[0] == "plugins" else None


# -- the documents ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_command_option_and_key_exists(path):
    text = path.read_text(encoding="utf-8")
    assert document_problems(text, TASKS, own_task(path)) == []


def test_the_documents_are_read_and_hold_commands():
    """The checks above see the commands (a parser that found none would pass everything)."""
    readmes = [ROOT / "README.md", *sorted(ROOT.glob("plugins/*/README.md"))]
    assert len(readmes) == 6
    for readme in readmes:
        invocations = [argv for line in command_lines(readme.read_text()) for argv in qvl_invocations(line)]
        assert len(invocations) >= 4, readme
        assert any("--set" in argv for argv in invocations), readme


def test_misspelt_commands_options_and_keys_are_caught():
    made_up = """
```bash
qvl run grasp train --set task.dta_dir=/data                 # a misspelt task key
qvl run grasp train --run-dri R                              # a misspelt core option
qvl run grasp trian                                          # a misspelt stage
qvl run grsp train                                           # a misspelt task
qvl run vla_flow rollout --sever ws://127.0.0.1:8765         # a misspelt stage option
qvl run vla_flow serve --set task.serve.prot=9000            # a misspelt nested key
qvl run grasp train --set train.stpes=2 && qvl run grasp eval --checkpoint last
qvl conifg grasp                                             # a misspelt command
qvl run reward train --set task.synthetic.train_episodes.x=1 # a value used as a table
```

Prose: `task.synthetic.scnee`, and `--set backbone.finetun=lora` in a span: `qvl run grasp train --set backbone.finetun=lora`.

```toml
[train]
stpes = 2
```
"""
    problems = "\n".join(document_problems(made_up, TASKS, "grasp"))
    for wrong in ("dta_dir", "--run-dri", "'trian'", "'grsp'", "--sever", "prot", "stpes", "conifg",
                  "train_episodes is a value", "scnee", "finetun", "TOML block: train.stpes"):
        assert wrong in problems, f"{wrong!r} not caught in:\n{problems}"
    assert "--checkpoint" not in problems  # the second command of the && line is fine

    fine = """
```bash
qvl run grasp train --set task.data_dir=/data --set task.split_files.test=validation_0.txt --run-dir R
qvl run vla_flow rollout --server ws://127.0.0.1:8765 --episodes 5 --set 'task.rollout.policies=["model"]'
qvl run vla_flow train --set task.loss_weights.key_UP=2.0    # a dict-valued field takes any key
qvl config TASK --set train.lr=1e-4
accelerate launch --num_processes 2 -m qvl run grasp train --set train.batch_size=4
.venv/bin/qvl tasks
```

Prose: `task.synthetic.scene`, `train.best_metric`, `if task.name != "mine"`.
"""
    assert document_problems(fine, TASKS, "grasp") == []


# -- links -----------------------------------------------------------------------------------


def slug(heading: str) -> str:
    """GitHub's anchor of a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    return {slug(match) for match in re.findall(r"^#{1,6} (.+)$", prose(path.read_text(encoding="utf-8")), re.M)}


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_reach_a_file_and_heading(path):
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", prose(path.read_text(encoding="utf-8"))):
        if re.match(r"[a-z]+:", target):
            continue
        file, _, anchor = target.partition("#")
        linked = (path.parent / file).resolve() if file else path
        if not linked.exists():
            broken.append(f"{target}: no such file")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            broken.append(f"{target}: no heading #{anchor} in {linked.relative_to(ROOT)}")
    assert broken == []


def test_slug_is_githubs():
    assert slug("Cached frozen features (`task.features = \"cached\"`)") == "cached-frozen-features-taskfeatures--cached"
    assert slug("qvl — fine-tune Qwen-VL models") == "qvl--fine-tune-qwen-vl-models"


# -- the committed examples ------------------------------------------------------------------


PLUGINS = sorted(p.name for p in (ROOT / "plugins").iterdir() if (p / "README.md").is_file())


@pytest.mark.parametrize("plugin", PLUGINS)
def test_each_plugin_commits_a_small_example_its_readme_trains_on(plugin):
    examples = ROOT / "plugins" / plugin / "examples"
    files = [p for p in examples.rglob("*") if p.is_file()]
    assert files, f"plugins/{plugin}/examples/ holds no example data"
    assert sum(p.stat().st_size for p in files) < EXAMPLES_LIMIT
    assert not [p for p in files if p.name == ".qvl.json" or p.name.endswith(".qvl-lock")], \
        "an example is a user's folder: no qvl marker or lock file"
    trained = [argv for line in command_lines((ROOT / "plugins" / plugin / "README.md").read_text())
               for argv in qvl_invocations(line)
               if argv[:3] == ["run", plugin, "train"] and any(f"plugins/{plugin}/examples/" in a for a in argv)]
    assert trained, f"plugins/{plugin}/README.md has no train command on its committed example"


def example_settings(plugin: str) -> list[str]:
    """The ``--set`` overrides of the README's train command on the committed example."""
    from qvl.cli import _parser

    readme = (ROOT / "plugins" / plugin / "README.md").read_text()
    (argv,) = [argv for line in command_lines(readme) for argv in qvl_invocations(line)
               if argv[:3] == ["run", plugin, "train"] and any(f"plugins/{plugin}/examples/" in a for a in argv)]
    args, _ = _parser().parse_known_args(argv)
    return [override.replace(f"plugins/{plugin}/", str(ROOT / "plugins" / plugin) + "/") for override in args.overrides]


@pytest.mark.slow
@pytest.mark.parametrize("plugin", PLUGINS)
def test_the_example_commands_give_every_split_samples(plugin):
    """The README's settings on the committed example data: every split the train and eval commands
    read has samples, and train at least one batch (training itself is checked by each plugin's
    pipeline test; the examples' train, eval and predict commands were run as written)."""
    from qvl.config import load_config
    from qvl.plugins import load_plugins

    host = load_plugins()  # the tests' qvl cache (tests/conftest.py): converted data and features are reused
    task = host.tasks[plugin]
    config = load_config(task, overrides=example_settings(plugin))
    train = host.call("build_dataset", task=task, config=config, split="train")
    assert len(train) >= config.train.batch_size
    for split in {config.train.eval_split, config.eval.split}:
        assert len(host.call("build_dataset", task=task, config=config, split=split)) > 0, split
