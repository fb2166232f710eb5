"""Hook specifications: the whole contract between the qvl core and its plugins.

Conventions, as in pytest's ``hookspec.py``:

* A plugin implements a hook by defining a function of the same name decorated with
  ``@qvl.hookimpl``. It may accept any subset of the arguments listed here, so arguments can be
  added in later versions without breaking existing plugins (hooks are only ever added to, never
  removed or renamed; ``HOOK_API_VERSION`` counts additions).
* **Ownership (hook API 4).** A plugin says which hook API it was written for with a module-level
  ``QVL_HOOK_API = 4`` or later (an attribute of a plugin object works too; API 5 dispatches as 4
  does, it only adds a hook). For such a plugin the core calls a task-level hook (every hook
  with a ``task`` argument) only on the plugin that registered the task through
  :func:`register_tasks`, on the plugins that declared ``extend(task_name)`` there, and on the
  core's built-in defaults: no implementation needs to check ``task.name``.
  Every task-level hook but ``prepare_backbone`` is ``firstresult``; the first non-None answer
  wins. To *replace* one hook of someone else's task, ``extend("their-task")`` and implement the
  hook with ``@qvl.hookimpl(tryfirst=True)``; to *wrap* it, use ``@qvl.hookimpl(wrapper=True)``
  and ``result = yield``. ``extend("*")`` reaches every task. The core raises a clear error naming
  the task and hook if no plugin answers a required hook, and refuses to load a plugin whose
  ``QVL_HOOK_API`` is newer than :data:`HOOK_API_VERSION`.
* **Older plugins keep working.** A plugin without ``QVL_HOOK_API`` is treated as written for API 3:
  it is called for every task, and returns ``None`` for tasks it does not handle (API 3 asked every
  task-level implementation to start with ``if task.name != MY_TASK: return None``).
* **History.** API 1: the hooks up to :func:`evaluate`. API 2: :func:`report_predictions`. API 3:
  :func:`uses_backbone`, :func:`param_groups`, :func:`validate`, task stages and ``stage``
  values beyond train/eval/predict. API 4: owner-only dispatch (``QVL_HOOK_API``), the
  ``extend`` argument of :func:`register_tasks`, :class:`qvl.samples.Samples` and the ``info``
  argument of :func:`evaluate` and :func:`report_predictions`. API 5: :func:`answer_constraint`.
* **Hooks newer than a plugin's core.** A plugin that implements a hook its installed core does
  not know yet marks it ``@qvl.hookimpl(optionalhook=True)``: the core's loader runs pluggy's
  ``check_pending``, which reports any other unknown hook as a misspelling and leaves the plugin
  out. An older core then ignores the hook, and the plugin may keep the lower ``QVL_HOOK_API`` of
  everything else it uses (grasp implements :func:`answer_constraint` with ``QVL_HOOK_API = 4``).
* Heavy imports (torch, transformers) belong inside hook bodies, never at a plugin module's top
  level: ``qvl --help``, ``qvl tasks`` and ``qvl plugins`` import every plugin.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import torch

    from qvl.backbone import Backbone
    from qvl.config import RunConfig
    from qvl.decoding import Constraint
    from qvl.report import EvalResult
    from qvl.task import Task

HOOK_API_VERSION = 5

hookspec = pluggy.HookspecMarker("qvl")


@hookspec
def register_tasks(register: Callable[[Task], None], extend: Callable[[str], None]) -> None:
    """Declare the tasks this plugin owns, and the tasks of other plugins it extends.

    :param register: call ``register(qvl.Task(...))`` once per task. Registering a name another
        plugin already registered is reported as that plugin's load error; the first one stays.
    :param extend: call ``extend("task-name")`` to have this plugin's hooks called for a task it
        does not own (to replace or wrap them), or ``extend("*")`` for every task; only needed with
        ``QVL_HOOK_API = 4`` (added in API 4).
    :returns: nothing; every plugin's implementation is called.
    """


@hookspec(firstresult=True)
def load_backbone(task: Task, config: RunConfig, stage: str) -> Backbone | None:
    """Load the vision-language backbone (model and processor) for a run.

    The core's default implementation (registered ``trylast``) reads ``config.backbone``: the
    embedded tiny model, a shape preset, a hub id or a local directory; full fine-tune, LoRA,
    QLoRA or frozen. Implement it to load something else, or wrap it to change what it loads.
    For ``stage == "train"`` with full fine-tuning in half precision it loads fp32 master weights
    (mixed precision computes in bf16/fp16 under autocast).

    :param task: the task being run.
    :param config: the effective run configuration.
    :param stage: ``"train"``, ``"eval"``, ``"predict"`` or a task's own stage (added in API 3).
    :returns: a :class:`qvl.backbone.Backbone`. Stops at the first non-None result.
    """


@hookspec(firstresult=True)
def uses_backbone(task: Task, config: RunConfig, stage: str) -> bool | None:
    """Say whether ``stage`` needs the backbone at all (added in API version 3).

    A task whose head trains on precomputed features (a feature cache, see ``qvl.features``)
    returns ``False`` for ``"train"``: the runner then loads no backbone, and ``build_head``,
    ``build_collator``, ``loss`` and ``validate`` receive ``backbone=None``. Optional; without an
    answer the backbone is loaded.

    :param task: the task being run.
    :param config: the effective run configuration.
    :param stage: ``"train"``, ``"eval"`` or ``"predict"``.
    :returns: ``True``/``False``, or ``None`` to leave the decision to others (default: loaded).
        Stops at the first non-None result.
    """


@hookspec
def prepare_backbone(task: Task, config: RunConfig, model: Any, processor: Any) -> None:
    """Adjust a freshly loaded backbone before qvl freezes it, quantizes it for training or adds LoRA.

    Called by the core's default :func:`load_backbone` for every plugin that implements it: add
    special tokens to ``processor.tokenizer`` and resize the embeddings, register forward hooks
    that capture features from inside the model, and the like. Embedding rows a task adds under
    LoRA train only when ``backbone.lora.modules_to_save`` names them.

    :param task: the task being run.
    :param config: the effective run configuration.
    :param model: the transformers model as ``from_pretrained`` returned it.
    :param processor: its processor.
    :returns: nothing; every implementation is called, modifying ``model`` and ``processor`` in place.
    """


@hookspec(firstresult=True)
def build_dataset(task: Task, config: RunConfig, split: str) -> Sequence[dict[str, Any]] | None:
    """Build the samples of one split.

    :param task: the task being run.
    :param config: the effective run configuration; ``config.task`` is the task's own config.
    :param split: ``"train"``, ``"val"``, ``"test"``, or ``"predict"`` (for ``predict``, read
        ``config.predict.input`` when set).
    :returns: a map-style sequence (``len`` and integer indexing) of sample dicts, best a
        :class:`qvl.samples.Samples` whose ``info`` carries what :func:`evaluate` needs about the
        whole split (it arrives there as the ``info`` argument). A sample may carry an ``"id"`` key,
        which the runner records with each prediction. Stops at the first non-None result.
    """


@hookspec(firstresult=True)
def build_collator(
    task: Task, config: RunConfig, backbone: Backbone | None, stage: str
) -> Callable[[list[dict[str, Any]]], dict[str, Any]] | None:
    """Build the function that turns a list of samples into one model-ready batch.

    :param task: the task being run.
    :param config: the effective run configuration.
    :param backbone: the loaded backbone; use ``backbone.processor`` to tokenize and process images.
    :param stage: ``"train"`` (targets included, for the loss) or ``"eval"`` / ``"predict"``
        (prompts only, for :func:`decode`).
    :returns: ``collate(samples) -> dict`` whose tensors the runner moves to the device. If it
        accepts a keyword argument ``rng``, the runner passes a ``numpy.random.Generator`` seeded
        from the run's seed, the process rank and the batch's sample indices: augmentation drawn
        from it is the same with any number of DataLoader workers and after ``--resume``. Stops at
        the first non-None result.
    """


@hookspec(firstresult=True)
def build_head(task: Task, config: RunConfig, backbone: Backbone | None) -> torch.nn.Module | None:
    """Build the task's trainable head(s) beside the backbone.

    :param task: the task being run.
    :param config: the effective run configuration.
    :param backbone: the loaded backbone (for hidden size and dtype), or ``None`` when
        :func:`uses_backbone` said training needs none.
    :returns: a ``torch.nn.Module`` (an ``nn.ModuleDict`` for several heads), or ``None`` when the
        task uses the language-model head only. Saved as ``head.safetensors`` in every checkpoint
        and rebuilt through this hook before loading. Stops at the first non-None result.
    """


@hookspec(firstresult=True)
def loss(
    task: Task,
    config: RunConfig,
    backbone: Backbone | None,
    head: torch.nn.Module | None,
    batch: dict[str, Any],
    step: int,
    max_steps: int,
) -> dict[str, Any] | None:
    """Run the forward pass of one training batch and compute its loss.

    Called inside the runner's module forward, so gradients are synchronised across processes
    and mixed precision applies.

    :param task: the task being run.
    :param config: the effective run configuration.
    :param backbone: the backbone; call ``backbone.model`` (``None``: see :func:`uses_backbone`).
    :param head: what :func:`build_head` returned, or ``None``.
    :param batch: what the collator returned, on the device.
    :param step: the optimizer step about to be taken (0-based), for curricula.
    :param max_steps: the total number of optimizer steps of the run.
    :returns: a dict with ``"loss"`` (a scalar tensor to minimise) and optionally more scalar
        tensors or floats, logged under their keys. Stops at the first non-None result.
    """


@hookspec(firstresult=True)
def param_groups(
    task: Task, config: RunConfig, backbone: Backbone | None, head: torch.nn.Module | None
) -> list[dict[str, Any]] | None:
    """Choose the optimizer's parameter groups: per-module learning rates and weight decay (API 3).

    Optional. Without it the runner trains every parameter that requires grad at ``train.lr``,
    with ``train.weight_decay`` on matrices and none on biases and norms.

    :param task: the task being run.
    :param config: the effective run configuration.
    :param backbone: the loaded backbone, or ``None`` (see :func:`uses_backbone`).
    :param head: what :func:`build_head` returned, or ``None``.
    :returns: AdamW parameter groups (``{"params": [...], "lr": ..., "weight_decay": ...}``;
        missing keys take the config's values). Every trainable parameter must be in one group.
        Stops at the first non-None result.
    """


@hookspec(firstresult=True)
def validate(
    task: Task,
    config: RunConfig,
    backbone: Backbone | None,
    head: torch.nn.Module | None,
    step: int,
    accelerator: Any,
    out_dir: Path,
) -> dict[str, float] | None:
    """Measure the model during training, every ``train.eval_every`` steps (added in API 3).

    The core's default (registered ``trylast``) computes ``val/loss`` with the ``loss`` hook on
    the ``train.eval_split`` split, and the task's own metrics on up to ``train.eval_samples``
    samples of it through ``decode`` and ``evaluate``, flattened as ``val/KEY`` (nested dicts as
    ``val/KEY/SUBKEY``). Replace it for other measurements, or add to its numbers with a hook
    wrapper (``@qvl.hookimpl(wrapper=True)``: ``results = yield``, then return them with more;
    vla_flow adds simulator rollouts that way). Called on
    every process, with the model in eval mode under ``torch.no_grad()``; every process must
    return the same dict (the default gathers, scores on the main process and broadcasts).

    :param task: the task being run.
    :param config: the effective run configuration; ``config.train.best_metric`` names the key
        that picks the best checkpoint.
    :param backbone: the backbone, or ``None`` (see :func:`uses_backbone`).
    :param head: the head, or ``None``.
    :param step: optimizer steps taken so far.
    :param accelerator: the run's ``accelerate.Accelerator`` (device, process index, gathering).
    :param out_dir: a directory for plots or tables of this validation.
    :returns: a dict of metric name -> float, logged to ``metrics.jsonl`` and TensorBoard.
        Stops at the first non-None result.
    """


@hookspec(firstresult=True)
def decode(
    task: Task,
    config: RunConfig,
    backbone: Backbone,
    head: torch.nn.Module | None,
    batch: dict[str, Any],
) -> list[dict[str, Any]] | None:
    """Turn one evaluation or prediction batch into predictions (generation, argmax, sampling).

    Runs under ``torch.no_grad()`` with the model in eval mode.

    :param task: the task being run.
    :param config: the effective run configuration.
    :param backbone: the backbone.
    :param head: the head, or ``None``.
    :param batch: what the collator returned for stage ``"eval"`` or ``"predict"``.
    :returns: one JSON-serialisable dict per sample, in batch order. Stops at the first non-None
        result.
    """


@hookspec(firstresult=True)
def evaluate(
    task: Task,
    config: RunConfig,
    predictions: list[dict[str, Any]],
    dataset: Sequence[dict[str, Any]],
    out_dir: Path,
    info: Any,
) -> EvalResult | dict[str, Any] | None:
    """Score predictions against the references of the evaluated split.

    :param task: the task being run.
    :param config: the effective run configuration.
    :param predictions: :func:`decode`'s outputs, aligned with ``dataset`` (``predictions[i]``
        belongs to ``dataset[i]``).
    :param dataset: the evaluated split, as :func:`build_dataset` returned it (during training's
        validation: its first ``train.eval_samples`` samples).
    :param out_dir: a directory to write plots or tables into.
    :param info: the split's ``info`` when :func:`build_dataset` returned a
        :class:`qvl.samples.Samples`, else ``None``; the whole split's, also when ``dataset`` holds
        only its first samples (added in API 4).
    :returns: a :class:`qvl.report.EvalResult` (the model's metrics, its baselines', intervals: the
        runner writes ``eval.json`` from it and ``comparison.md`` / ``comparison.png`` beside it), or
        a JSON-serialisable dict of metrics (numbers, or nested dicts such as baselines);
        the runner writes it to ``eval.json`` and prints it. A metrics dict too large to read as a
        listing may carry a readable summary as a string under ``"report"``: ``qvl run TASK eval``
        prints that instead (``eval.json`` keeps everything). Stops at the first non-None result.
    """


@hookspec(firstresult=True)
def report_predictions(
    task: Task,
    config: RunConfig,
    predictions: list[dict[str, Any]],
    dataset: Sequence[dict[str, Any]],
    out_dir: Path,
    info: Any,
) -> dict[str, Any] | None:
    """Write what a person would rather look at than ``predictions.jsonl`` (added in API version 2).

    Called once by ``predict``, on the main process, after ``predictions.jsonl`` is written; optional
    (a task without it gets only the JSON lines). ``config.predict.save_vis`` (``--save-vis``) asks
    for pictures such as predictions drawn on the input images.

    :param task: the task being run.
    :param config: the effective run configuration.
    :param predictions: :func:`decode`'s outputs, aligned with ``dataset``.
    :param dataset: the predicted samples, as :func:`build_dataset` returned them for ``"predict"``.
    :param out_dir: the prediction directory to write files into.
    :param info: the split's ``info`` (see :func:`evaluate`; added in API 4).
    :returns: a JSON-serialisable summary, saved as ``summary.json`` and printed, or ``None``.
        Stops at the first non-None result.
    """


@hookspec(firstresult=True)
def answer_constraint(task: Task, config: RunConfig) -> Constraint | None:
    """The constraint the task's answers are decoded under, when it is the same for every prompt
    (added in API 5).

    ``qvl export`` writes it beside the model as ``answer_constraint.json`` (``{"kind": ...,
    "source": ...}``) and the model card shows how plain transformers decode under it with
    xgrammar, so that the exported model answers as ``qvl run TASK predict`` does. Optional: a task
    that decodes without a constraint, or with one per prompt, leaves it unanswered, and the export
    carries no constraint.

    :param task: the task being exported.
    :param config: the run's effective configuration (a task may constrain only when its
        settings say so).
    :returns: a :class:`qvl.decoding.Constraint` (the one the task's ``decode`` passes to
        :func:`qvl.decoding.generate_constrained`), or ``None``. Stops at the first non-None result.
    """
