"""Recipe: the language-model head learns to write the answer (masked-answer SFT).

Import the hooks into a plugin module of hook API 4 (see :mod:`qvl.recipes`). Reads from the task's
config, when it has them: ``answers`` (decoding can write only these, so every answer parses),
``question`` (for samples without one) and ``max_new_tokens`` (default: enough for the longest
listed answer, else 32).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qvl.markers import hookimpl
from qvl.recipes import majority_of, user_turn
from qvl.report import EvalResult, accuracy

UNCONSTRAINED_MAX_NEW_TOKENS = 32


@hookimpl
def build_collator(config: Any, backbone: Any, stage: str) -> Any:
    from qvl import chat

    training = stage == "train"

    def collate(samples: list[dict[str, Any]]) -> dict[str, Any]:
        conversations = [[user_turn(s, config.task)] for s in samples]
        if not training:
            return chat.prompt_batch(backbone.processor, conversations)  # ends with the assistant header
        for conversation, sample in zip(conversations, samples):
            conversation.append({"role": "assistant", "content": str(sample["answer"])})
        return chat.sft_batch(backbone.processor, conversations)  # labels -100 except on the answer

    return collate


@hookimpl
def loss(backbone: Any, batch: dict[str, Any]) -> dict[str, Any]:
    from qvl import chat

    return chat.lm_loss(backbone.model, batch)  # cross-entropy of the answer tokens and <|im_end|>


def max_new_tokens(task_config: Any, tokenizer: Any) -> int:
    configured = getattr(task_config, "max_new_tokens", None)
    if configured:
        return int(configured)
    answers = getattr(task_config, "answers", None)
    if not answers:
        return UNCONSTRAINED_MAX_NEW_TOKENS
    return 1 + max(len(tokenizer.encode(answer, add_special_tokens=False)) for answer in answers)


@hookimpl
def decode(config: Any, backbone: Any, batch: dict[str, Any]) -> list[dict[str, Any]]:
    from qvl import chat
    from qvl.decoding import Constraint, generate_constrained

    limit = max_new_tokens(config.task, backbone.processor.tokenizer)
    answers = getattr(config.task, "answers", None)
    if answers:
        texts = generate_constrained(backbone.model, backbone.processor, batch, Constraint.choices(answers),
                                     max_new_tokens=limit)
    else:
        texts = [text.strip() for text in chat.generate_text(backbone.model, backbone.processor, batch, limit)]
    return [{"answer": text} for text in texts]


@hookimpl
def evaluate(config: Any, predictions: list[dict[str, Any]], dataset: Any, out_dir: Path, info: Any) -> EvalResult:
    truth = [str(sample["answer"]) for sample in dataset]
    answers = [p["answer"] for p in predictions]
    model: dict[str, Any] = {"accuracy": accuracy(truth, answers)}
    allowed = getattr(config.task, "answers", None)
    if allowed:
        model["invalid_rate"] = sum(a not in allowed for a in answers) / max(1, len(answers))
    baselines = {}
    majority = majority_of(info)
    if majority is not None:
        answer = str(majority)
        baselines["majority_class"] = {"answer": answer, "accuracy": accuracy(truth, [answer] * len(truth))}
    return EvalResult(model=model, baselines=baselines, extra={"samples": len(truth)})
