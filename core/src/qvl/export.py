"""``qvl export``: a trained run as a standalone Hugging Face model folder.

The backbone comes out as plain transformers weights (a LoRA adapter merged with peft's
``merge_and_unload``, or kept as a PEFT adapter with ``adapter=True``) with its processor, chat
template and generation config, so that ``AutoModelForImageTextToText.from_pretrained(DIR)`` and
``AutoProcessor.from_pretrained(DIR)`` answer as ``qvl run TASK predict`` does, without qvl. A task
that trains a head (reward, segment, vla_flow) gets it beside the model as ``head.safetensors`` with
the run's settings in ``qvl_config.toml``; :func:`load_exported` rebuilds the model and the head (the
head's module comes from the task's plugin, which must be installed). A task that decodes its answers
under one grammar (the ``answer_constraint`` hook: grasp) gets it as ``answer_constraint.json``, and
the card shows how plain transformers decode under it with xgrammar's own transformers integration.
``README.md`` is a model card: the task, the base model, the data, the run's evaluation and how to
load it.

The folder is written beside its destination and renamed into place (:func:`qvl.build.build_directory`):
an existing non-empty folder that qvl did not write is refused, an earlier export replaced.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import attrs

from qvl.errors import UserError

CONFIG_NAME = "qvl_config.toml"
HEAD_WEIGHTS = "head.safetensors"
HEAD_INFO = "head.json"
BASE_MODEL = "base_model"  # with adapter=True, the base when it is not a hub id or a folder of its own
CONSTRAINT_FILE = "answer_constraint.json"  # {"kind": ..., "source": ...} of a qvl.decoding.Constraint
# xgrammar's grammar of each kind of constraint, built as qvl.decoding.Constraint.grammar builds it
GRAMMAR_CALLS = {
    "regex": 'xgrammar.Grammar.from_regex(spec["source"])',
    "json_schema": 'xgrammar.Grammar.from_json_schema(spec["source"], any_whitespace=False, strict_mode=True)',
    "choices": 'xgrammar.Grammar.from_ebnf(spec["source"])',
    "ebnf": 'xgrammar.Grammar.from_ebnf(spec["source"])',
}


def export_run(host: Any, run_dir: str | Path, out: str | Path, *, checkpoint: str | None = None,
               adapter: bool = False, overrides: Iterable[str] = ()) -> Path:
    """Write the run in ``run_dir`` (its ``checkpoint``: best, last or step-N; default best, else
    last) into ``out`` as a Hugging Face model folder; returns ``out``.

    :param adapter: keep a LoRA backbone as a PEFT adapter instead of merging it (the base model is
        written into ``base_model/`` when it is built locally, ``embedded:...`` or ``preset:...``).
    :param overrides: ``--set`` settings on top of the run's own (``backbone.dtype=bfloat16``).
    :raises UserError: not a run folder, no complete checkpoint, ``adapter`` without LoRA, or
        ``out`` is a non-empty folder that qvl did not write.
    """
    from qvl.build import build_directory
    from qvl.config import load_config
    from qvl.runner.rundir import RunDir

    overrides = list(overrides)
    run = RunDir(Path(run_dir))
    if not run.config_path.is_file():
        raise UserError(f"{run.path}: not a qvl run folder (no config.toml); pass the folder 'qvl run TASK train' made")
    task_name = run.task_name()
    if task_name is None:
        raise UserError(f"{run.path}: cannot tell which task trained this run (no task_name in config.toml)")
    task = host.task(task_name)
    config = load_config(task, [], overrides, base=run.saved_config())
    chosen = run.checkpoint(checkpoint)
    if chosen is None:
        raise UserError(f"{run.path}: no complete checkpoint; run 'qvl run {task.name} train' first")
    if adapter and config.backbone.finetune not in ("lora", "qlora"):
        raise UserError(f"--adapter: {run.path} fine-tuned its backbone {config.backbone.finetune!r}, so it has no "
                        "LoRA adapter to keep; export without --adapter")
    step = json.loads((chosen / "trainer_state.json").read_text()).get("step")
    fingerprint = {"run": str(run.path.resolve()), "checkpoint": chosen.name, "step": step, "adapter": adapter,
                   "overrides": overrides}
    return build_directory(
        out, lambda folder: _write(host, task, config, run, chosen, folder, adapter, step),
        kind="export", fingerprint=fingerprint, force=True, hint="choose another --out",
        info={"task": task.name, "run": str(run.path), "checkpoint": chosen.name},
        announce=f"qvl: exporting {chosen} into {out}",
    )


def _write(host: Any, task: Any, config: Any, run: Any, checkpoint: Path, folder: Path, adapter: bool,
           step: int | None) -> None:
    import shutil

    from qvl.config import to_toml
    from qvl.runner.checkpoint import restore_config

    constraint = answer_constraint(host, task, config)
    settings = config.backbone
    if settings.finetune == "qlora" or settings.quantize:
        # a 4-bit base cannot take merged weights: the export holds them in the compute dtype
        settings = attrs.evolve(settings, quantize=False,
                                finetune="lora" if settings.finetune == "qlora" else settings.finetune)
    loading = restore_config(attrs.evolve(config, backbone=settings), checkpoint)
    backbone = host.call("load_backbone", task=task, config=loading, stage="predict")
    backbone.model.eval()

    model = backbone.model
    is_peft = hasattr(model, "merge_and_unload")
    if is_peft and adapter:
        model.save_pretrained(folder, safe_serialization=True)  # adapter_config.json + adapter_model.safetensors
        base = model.unload()  # the base without the LoRA layers, unmerged
        if not _loadable_elsewhere(settings.name):
            base.save_pretrained(folder / BASE_MODEL, safe_serialization=True)
            backbone.processor.save_pretrained(folder / BASE_MODEL)
    else:
        if is_peft:
            model = model.merge_and_unload()
        greedy(model.generation_config)
        model.save_pretrained(folder, safe_serialization=True)
    backbone.processor.save_pretrained(folder)
    (folder / CONFIG_NAME).write_text(to_toml(config), encoding="utf-8")
    head = (checkpoint / HEAD_WEIGHTS).is_file()  # the checkpoint holds the head's weights as they are exported
    if head:
        shutil.copyfile(checkpoint / HEAD_WEIGHTS, folder / HEAD_WEIGHTS)
        (folder / HEAD_INFO).write_text(json.dumps({"task": task.name, "plugin": task.plugin,
                                                    "config": CONFIG_NAME}, indent=1), encoding="utf-8")
    if constraint is not None:
        (folder / CONSTRAINT_FILE).write_text(json.dumps({"kind": constraint.kind, "source": constraint.source},
                                                         indent=1), encoding="utf-8")
    (folder / "README.md").write_text(model_card(task, config, run.path, checkpoint, step, adapter=adapter and is_peft,
                                                 head=head, base_in_folder=(folder / BASE_MODEL).is_dir(),
                                                 constraint=constraint),
                                      encoding="utf-8")


def answer_constraint(host: Any, task: Any, config: Any) -> Any:
    """The task's answer to the ``answer_constraint`` hook: a :class:`qvl.decoding.Constraint`, or None."""
    from qvl.decoding import Constraint

    found = host.call("answer_constraint", task=task, config=config, required=False)
    if found is not None and not isinstance(found, Constraint):
        raise TypeError(f"hook 'answer_constraint' of task {task.name!r} returned {type(found).__name__}, "
                        "not a qvl.decoding.Constraint")
    return found


def greedy(generation_config: Any) -> None:
    """Make ``generate()`` without arguments decode as qvl does: greedily. The sampling settings a
    checkpoint ships (Qwen's temperature 0.7, top_p 0.8, top_k 20) go, or transformers refuses to
    save a config that has them with ``do_sample=False``."""
    generation_config.do_sample = False
    for name in ("temperature", "top_p", "top_k", "min_p", "typical_p"):
        if hasattr(generation_config, name):
            setattr(generation_config, name, None)


def _loadable_elsewhere(name: str) -> bool:
    """A hub id or a folder: from_pretrained finds the base without a copy in the export."""
    return not name.startswith(("embedded:", "preset:"))


def load_exported(folder: str | Path, host: Any = None) -> tuple[Any, Any]:
    """``(backbone, head)`` of an exported folder: the model and processor as the run trained them
    (a :class:`qvl.backbone.Backbone`, frozen) and the task's head with its weights, in eval mode (or
    ``None`` when the task has none). The task's plugin must be installed: it builds the head.
    """
    from safetensors.torch import load_file

    from qvl.config import load_config
    from qvl.plugins import load_plugins

    folder = Path(folder).expanduser()
    if not (folder / CONFIG_NAME).is_file():
        raise UserError(f"{folder}: not a folder 'qvl export' wrote (no {CONFIG_NAME})")
    host = host or load_plugins()
    task = host.task(_task_name(folder))
    config = load_config(task, [folder / CONFIG_NAME])
    if (folder / "adapter_config.json").is_file():
        base = folder / BASE_MODEL if (folder / BASE_MODEL).is_dir() else config.backbone.name
        backbone_settings = attrs.evolve(config.backbone, name=str(base), adapter=str(folder), finetune="lora",
                                         quantize=False)
    else:
        backbone_settings = attrs.evolve(config.backbone, name=str(folder), adapter=None, finetune="frozen",
                                         quantize=False)
    config = attrs.evolve(config, backbone=backbone_settings)
    backbone = host.call("load_backbone", task=task, config=config, stage="predict")
    backbone.model.requires_grad_(False)
    backbone.model.eval()
    head = None
    if (folder / HEAD_WEIGHTS).is_file():
        head = host.call("build_head", task=task, config=config, backbone=backbone, required=False)
        if head is None:
            raise UserError(f"{folder / HEAD_WEIGHTS}: task {task.name!r} builds no head (another plugin version?)")
        head.float().load_state_dict(load_file(str(folder / HEAD_WEIGHTS)))
        head.eval()
    return backbone, head


def _task_name(folder: Path) -> str:
    from qvl.config import read_toml

    data, _ = read_toml(folder / CONFIG_NAME)
    name = data.get("task_name")
    if not isinstance(name, str) or not name:
        raise UserError(f"{folder / CONFIG_NAME}: no task_name")
    return name


def model_card(task: Any, config: Any, run_path: Path, checkpoint: Path, step: int | None, *, adapter: bool,
               head: bool, base_in_folder: bool, constraint: Any = None) -> str:
    """README.md of an export: what the model does, what it was trained from, how it scored, how to load it
    (and with ``constraint``, the task's :class:`qvl.decoding.Constraint`, how to decode under it)."""
    backbone = config.backbone
    tuned = {"lora": "LoRA", "qlora": "QLoRA", "full": "full fine-tuning",
             "frozen": "frozen backbone"}[backbone.finetune]
    if backbone.finetune in ("lora", "qlora"):
        tuned += f" (r={backbone.lora.r}, alpha={backbone.lora.alpha}), " + ("kept as a PEFT adapter" if adapter
                                                                           else "merged into the weights")
    task_settings = config.task
    data_dir = (getattr(task_settings, "repo_id", "") or getattr(task_settings, "train_file", "")
                or getattr(task_settings, "data_dir", "") or "the task's synthetic data set (qvl make-data)")
    lines = [
        "---",
        "library_name: " + ("peft" if adapter else "transformers"),
        "pipeline_tag: image-text-to-text",
        "tags: [qvl, qvl-" + task.name.replace("_", "-") + "]",
        "---",
        "",
        f"# {task.name}: {backbone.name} fine-tuned with qvl",
        "",
        task.description or f"The qvl task {task.name!r}.",
        "",
        f"- base model: `{backbone.name}`; {tuned}",
        f"- data: `{data_dir}`",
        f"- trained: {step} steps, checkpoint `{checkpoint.name}` of `{run_path}`",
        f"- settings: `{CONFIG_NAME}` (the run's effective config; `qvl run {task.name} train --config "
        f"{CONFIG_NAME}` trains it again)",
        "",
    ]
    evaluation = _evaluation_table(run_path)
    if evaluation:
        lines += ["## Evaluation", "", *evaluation, ""]
    lines += ["## Use", "", "```python"]
    if constraint is not None:
        lines += ["import json", "from pathlib import Path", "", "import torch", "import xgrammar"]
    lines.append("from transformers import AutoModelForImageTextToText, AutoProcessor")
    if constraint is not None:
        lines.append("from xgrammar.contrib.hf import LogitsProcessor")
    lines.append("")
    if adapter:
        base = f'"./{BASE_MODEL}"' if base_in_folder else f'"{backbone.name}"'
        lines += ["from peft import PeftModel", "",
                  f"base = AutoModelForImageTextToText.from_pretrained({base})  # relative to this folder",
                  'model = PeftModel.from_pretrained(base, ".")',
                  'processor = AutoProcessor.from_pretrained(".")']
    else:
        lines += ['model = AutoModelForImageTextToText.from_pretrained(".")  # this folder',
                  'processor = AutoProcessor.from_pretrained(".")']
    if constraint is not None:
        lines += _constrained_answer_lines(constraint)
    lines += ["```", "", "Prompts are built with the processor's chat template (`processor.apply_chat_template`), as "
              "qvl builds them; qvl decodes greedily."]
    if constraint is not None:
        lines += ["", f"qvl decodes this task's answers under a grammar, `{CONSTRAINT_FILE}` (`kind`: regex, "
                  "json_schema, choices or ebnf, as `qvl.decoding.Constraint`; `source`: its text for xgrammar). "
                  "Without it greedy answers can leave the task's answer language and differ from qvl's. "
                  "`answer(messages, images)` decodes under it with xgrammar's transformers integration "
                  "(`pip install xgrammar`) and stops at `<|im_end|>`, as `qvl run "
                  f"{task.name} predict` does; build `messages` as the task builds its prompts (their "
                  f"settings are in `{CONFIG_NAME}`)."]
    if head:
        lines += ["", f"The task's head is `{HEAD_WEIGHTS}` (safetensors); with qvl-core and the task's plugin "
                  "installed:", "", "```python", "from qvl.export import load_exported", "",
                  'backbone, head = load_exported(".")  # backbone.model, backbone.processor; head in eval mode',
                  "```"]
    lines += ["", "Written by `qvl export`."]
    return "\n".join(lines) + "\n"


def _constrained_answer_lines(constraint: Any) -> list[str]:
    """The card's code that compiles the task's grammar and decodes under it (mirrors qvl.decoding)."""
    return [
        "",
        f"# the grammar qvl decodes this task's answers under ({CONSTRAINT_FILE})",
        f'spec = json.loads(Path("{CONSTRAINT_FILE}").read_text())  # {{"kind": "{constraint.kind}", "source": ...}}',
        f"grammar = {GRAMMAR_CALLS[constraint.kind]}",
        'im_end = processor.tokenizer.convert_tokens_to_ids("<|im_end|>")  # every answer ends with it',
        "tokenizer_info = xgrammar.TokenizerInfo.from_huggingface(",
        "    processor.tokenizer, vocab_size=model.get_output_embeddings().weight.shape[0],  # the logits' width",
        "    stop_token_ids=[im_end])",
        "compiled = xgrammar.GrammarCompiler(tokenizer_info).compile_grammar(grammar)",
        "",
        "",
        "def answer(messages, images):",
        '    """The greedy answer to one chat, inside the grammar."""',
        "    text = processor.apply_chat_template(messages, add_generation_prompt=True)",
        '    inputs = processor(text=[text], images=images, return_tensors="pt").to(model.device)',
        "    with torch.no_grad():",
        "        out = model.generate(**inputs, do_sample=False, max_new_tokens=256, eos_token_id=im_end,",
        "                             logits_processor=[LogitsProcessor(compiled)])  # a new one per call",
        '    return processor.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)',
    ]


def _evaluation_table(run_path: Path) -> list[str]:
    """A markdown table of the newest ``eval/SPLIT/eval.json`` of the run (numbers only, nested keys joined)."""
    found = sorted(run_path.glob("eval/*/eval.json"), key=lambda p: p.stat().st_mtime)
    if not found:
        return []
    try:
        metrics = json.loads(found[-1].read_text())
    except (OSError, ValueError):
        return []
    from qvl.runner.evaluation import flatten_metrics

    if not isinstance(metrics, dict):
        return []
    rows = [(name.removeprefix("eval/"), value) for name, value in flatten_metrics(metrics, "eval").items()]
    if not rows:
        return []
    table = [f"Split `{found[-1].parent.name}` (`{found[-1].relative_to(run_path)}`):", "", "| metric | value |",
             "| --- | --- |"]
    table += [f"| {name} | {value:.4g} |" for name, value in rows[:40]]
    if len(rows) > 40:
        table.append(f"| ... | {len(rows) - 40} more in eval.json |")
    return table
