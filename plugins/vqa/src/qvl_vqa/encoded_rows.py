"""Training rows tokenized once, through the core's prepared-sample cache.

Without augmentation a training row's text never changes: the chat template, the tokenizer, the
processor's expansion of each clip into its video tokens and timestamps, the answer labels. Done
for every batch, that was about two thirds of a vqa collate, and the collate ran in the main process
(no DataLoader worker pays on 2 cores). :func:`encoded_rows` does it once per row
(:func:`qvl.encoded_rows.encode_row`) into a :func:`qvl.prepared.prepare_samples` folder (about 3
KB a row), keyed by the generated data set, the task settings and the processor. A step then pads
each row's token arrays and runs only the video processor on the batch's frames
(:func:`qvl.encoded_rows.batch_from_rows`): batches equal to :class:`~qvl_vqa.collate.TrainCollator`'s
without the cache, tensor for tensor (tested on both Qwen-VL families).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import attrs


VERSION = 1  # of the encoding below: bump when it changes


def encoded_rows(samples: Sequence[dict[str, Any]], config: Any, processor: Any, *, dataset_fingerprint: Any,
                 backbone_name: str, name: str, shown: Any = None) -> Any:
    """The :class:`~qvl.prepared.PreparedSamples` of ``samples`` (a training split), one row each, by id
    (``shown``: the clips as the model sees them, which give the same tokens without resizing them)."""
    from qvl.encoded_rows import encode_row, processor_fingerprint
    from qvl.prepared import prepare_samples
    from qvl_vqa.collate import conversation

    def prepare(index: int) -> tuple[dict[str, Any], dict[str, Any]]:
        sample = samples[index]
        row = encode_row(processor, conversation(sample["item"], config, with_answer=True, shown=shown))
        return row, {"id": sample["id"]}

    fingerprint = {"version": VERSION, "dataset": dataset_fingerprint,
                   "task": json.dumps(attrs.asdict(config), sort_keys=True, default=str),
                   "processor": processor_fingerprint(processor, backbone_name)}
    return prepare_samples(len(samples), prepare, fingerprint=fingerprint, name=name)


def training_rows(config: Any, processor: Any, shown: Any = None) -> Any:
    """The encoded rows of the run's training split (None without ``train.prepared_cache`` or with
    augmentation, which changes the clips every step)."""
    augment = config.task.augment
    if not config.train.prepared_cache or augment.frame_drop > 0 or augment.color_jitter > 0:
        return None
    from qvl_vqa.data import dataset_fingerprint, generated_dataset
    from qvl_vqa.samples import VqaSamples

    folder, store = generated_dataset(config)
    return encoded_rows(VqaSamples(folder, "train", store), config.task, processor,
                        dataset_fingerprint=dataset_fingerprint(config, store), backbone_name=config.backbone.name,
                        name="vqa-train-rows", shown=shown)
