"""Training rows tokenized once, through the core's prepared-sample cache.

Without augmentation a training row's text never changes: the chat template, the tokenizer, the
processor's expansion of each clip into its video tokens and timestamps, the answer labels. Done
for every batch, that was about two thirds of a vqa collate, and the collate ran in the main process
(no DataLoader worker pays on 2 cores). :func:`encoded_rows` does it once per row into a
:func:`qvl.prepared.prepare_samples` folder (about 3 KB a row), keyed by the generated data set,
the task settings and the processor. A step then reads each row's token arrays, pads them, and runs
only the video processor on the batch's frames (:mod:`qvl_vqa.row_batches`): batches equal to
:class:`~qvl_vqa.collate.TrainCollator`'s without the cache, tensor for tensor (tested on both Qwen-VL families).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import attrs

from qvl_vqa.row_batches import ROW_KEYS, VIDEO_KEYS

VERSION = 1  # of the encoding below: bump when it changes


def processor_identity(processor: Any, backbone_name: str) -> dict[str, Any]:
    """What a row's tokens depend on besides the row: the backbone, its vocabulary, template and patching."""
    tokenizer = processor.tokenizer
    video = processor.video_processor
    return {"backbone": backbone_name, "vocabulary": len(tokenizer), "template": processor.chat_template,
            "video_processor": type(video).__name__, "patch": [getattr(video, "patch_size", None),
                                                               getattr(video, "merge_size", None),
                                                               getattr(video, "temporal_patch_size", None)]}


def encoded_rows(samples: Sequence[dict[str, Any]], config: Any, processor: Any, *, dataset_fingerprint: Any,
                 backbone_name: str, name: str) -> Any:
    """The :class:`~qvl.prepared.PreparedSamples` of ``samples`` (a training split), one row each, by id."""
    from qvl import chat
    from qvl.prepared import prepare_samples
    from qvl_vqa.collate import conversation

    def prepare(index: int) -> tuple[dict[str, Any], dict[str, Any]]:
        sample = samples[index]
        batch = chat.sft_batch(processor, [conversation(sample["item"], config, with_answer=True)])
        arrays = {key: batch[key][0].numpy() for key in ROW_KEYS if key in batch}
        arrays.update({key: batch[key].numpy() for key in VIDEO_KEYS if key in batch})
        return arrays, {"id": sample["id"]}

    fingerprint = {"version": VERSION, "dataset": dataset_fingerprint,
                   "task": json.dumps(attrs.asdict(config), sort_keys=True, default=str),
                   "processor": processor_identity(processor, backbone_name)}
    return prepare_samples(len(samples), prepare, fingerprint=fingerprint, name=name)


def training_rows(config: Any, processor: Any) -> Any:
    """The encoded rows of the run's training split (None without ``train.prepared_cache``, with
    augmentation, which changes the clips every step, or with ``multi_image``)."""
    augment = config.task.augment
    if (not config.train.prepared_cache or augment.frame_drop > 0 or augment.color_jitter > 0
            or config.task.multi_image):
        return None
    from qvl_vqa.data import dataset_fingerprint, generated_dataset
    from qvl_vqa.samples import VqaSamples

    folder, store = generated_dataset(config)
    return encoded_rows(VqaSamples(folder, "train", store), config.task, processor,
                        dataset_fingerprint=dataset_fingerprint(config, store), backbone_name=config.backbone.name,
                        name="vqa-train-rows")
