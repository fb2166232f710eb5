"""Static VQA data set generation: prompts, answers and frame indices from trajectory records.

The seed's ``generate_vqa_dataset.py`` with its future items done: several strategies per sample
type, similarity samples, splits by trajectory. Only :class:`~qvl_vqa.trajectory.Trajectory`
records are read, never frames; a row names its videos (``.npz`` path, trajectory id) and the
frame indices to show.

The parts, one module each: the settings and fingerprint (:mod:`qvl_vqa.generation_settings`),
the splits by trajectory (:mod:`qvl_vqa.trajectory_splits`), the sampling plan
(:mod:`qvl_vqa.generation_plan`), one sample's row (:mod:`qvl_vqa.sample_builders`) of the
declared schema (:mod:`qvl_vqa.row_schema`), the resumable shard writer (:mod:`qvl_vqa.shard_writer`).
Here: the whole generation. The DatasetDict's metadata is written at the end, around the shard
files, so no row is ever copied.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qvl.data import SPLITS, digest

from qvl_vqa.generation_plan import GenerationPlan
from qvl_vqa.generation_settings import GENERATOR_VERSION, generation_fingerprint, generation_settings, strategy_weights
from qvl_vqa.row_schema import row_features
from qvl_vqa.sample_builders import PROMPTS
from qvl_vqa.shard_writer import (SHARD_RECORDS, Shard, ShardJob, finished_record, produce_shards, remove_strays,
                                  shards_of, write_sorted_json)
from qvl_vqa.trajectory import Trajectory

if TYPE_CHECKING:
    from qvl_vqa.config import VqaConfig


def generate(trajectories: Sequence[Trajectory], task: VqaConfig, seed: int, out: Path, *, store_root: str,
             store_fingerprint: Mapping[str, Any], progress: bool = True) -> dict[str, Any]:
    """Write the VQA DatasetDict (train/val/test) and ``generation_config.json`` into ``out``, as
    the ``[task]`` section ``task`` and the run's ``seed`` say.

    Shards already finished in ``out`` by an interrupted run of the same generation are kept.

    :returns: the counts (per split, sample type and strategy) and notes on what could not be made.
    """
    from tqdm.auto import tqdm

    out = Path(out)
    plan = GenerationPlan.of(trajectories, task, seed)
    for note in plan.notes:
        print(f"qvl-vqa: warning: {note}", file=sys.stderr)
    fingerprint = generation_fingerprint(task, seed, store_root, store_fingerprint)
    key = digest(fingerprint)
    job = ShardJob(plan=plan, out=out, key=key)
    shards = shards_of(plan)
    for folder in (*SPLITS, SHARD_RECORDS):
        (out / folder).mkdir(parents=True, exist_ok=True)
    remove_strays(out, shards)

    records: dict[Shard, dict[str, Any]] = {}
    for shard in shards:
        record = finished_record(job, shard)
        if record is not None:
            records[shard] = record
    reused = len(records)
    pending = [shard for shard in shards if shard not in records]
    workers = (os.cpu_count() or 1) if task.num_workers == -1 else task.num_workers
    workers = min(workers, len(pending))
    with tqdm(total=task.num_samples, initial=sum(s.stop - s.start for s in records), unit="sample",
              desc="vqa samples", disable=not progress, dynamic_ncols=True) as bar:
        for shard, record in produce_shards(job, pending, workers):
            records[shard] = record
            bar.update(shard.stop - shard.start)
    summary = _summary(plan, shards, records, reused, key)
    _finish(out, plan, shards, summary, store_root, store_fingerprint)
    print(f"qvl-vqa: generated {task.num_samples} samples (" + ", ".join(
        f"{split} {summary['counts'][split]['samples']}" for split in SPLITS) + f"; {reused} of {len(shards)} "
        f"shards kept from an interrupted run)", file=sys.stderr)
    return summary


def _finish(out: Path, plan: GenerationPlan, shards: Sequence[Shard], summary: dict[str, Any], store_root: str,
            store_fingerprint: Mapping[str, Any]) -> None:
    """The DatasetDict's metadata around the shard files (what save_to_disk writes), the generation's
    record, and a check that it all reads back; then the shard records go."""
    import datasets

    key = summary["fingerprint_digest"]
    features = row_features()
    for split in SPLITS:
        mine = [s for s in shards if s.split == split]
        write_sorted_json(out / split / "state.json", {
            "_data_files": [{"filename": s.filename} for s in mine],
            "_fingerprint": digest(f"{key}/{split}".encode()),
            "_format_columns": None, "_format_kwargs": {}, "_format_type": None,
            "_output_all_columns": False, "_split": split})
        datasets.DatasetInfo(features=features, description="qvl-vqa generated samples").write_to_directory(
            str(out / split))
    write_sorted_json(out / "dataset_dict.json", {"splits": list(SPLITS)})
    write_sorted_json(out / "trajectory_splits.json",
                {split: [t.id for t in plan.pools[split].trajectories] for split in SPLITS})
    write_sorted_json(out / "generation_config.json", {
        "generator": GENERATOR_VERSION, "seed": plan.seed, "settings": generation_settings(plan.task, plan.seed),
        "strategy_weights": strategy_weights(plan.task), "prompts": PROMPTS, "store_root": str(store_root),
        "store_fingerprint": dict(store_fingerprint), **summary})
    # check the result reads back as the DatasetDict it claims to be (memory-mapped: cheap)
    loaded = datasets.load_from_disk(str(out))
    for split in SPLITS:
        if len(loaded[split]) != summary["counts"][split]["samples"]:
            raise RuntimeError(f"{out}/{split}: {len(loaded[split])} rows read back, "
                               f"{summary['counts'][split]['samples']} written")
    del loaded
    for path in (out / SHARD_RECORDS).glob("*"):
        path.unlink()
    (out / SHARD_RECORDS).rmdir()


def _summary(plan: GenerationPlan, shards: Sequence[Shard], records: Mapping[Shard, Mapping[str, Any]],
             reused: int, key: str) -> dict[str, Any]:
    counts: dict[str, Any] = {}
    for split in SPLITS:
        types: dict[str, dict[str, int]] = {}
        for shard in shards:
            if shard.split != split:
                continue
            for kind, by_strategy in records[shard]["counts"].items():
                mine = types.setdefault(kind, {})
                for strategy, n in by_strategy.items():
                    mine[strategy] = mine.get(strategy, 0) + n
        pools = plan.pools[split]
        counts[split] = {
            "samples": plan.ranges[split][1] - plan.ranges[split][0],
            "sample_range": list(plan.ranges[split]),
            "trajectories": len(pools.trajectories),
            "trajectories_per_task": {task: len(members) for task, members in pools.by_task.items()},
            "types": {kind: dict(sorted(by.items())) for kind, by in sorted(types.items())},
        }
    return {"num_samples": plan.task.num_samples, "counts": counts, "notes": list(plan.notes),
            "shards": len(shards), "shards_reused": reused, "fingerprint_digest": key}


def build_vqa_dataset(target: Path, trajectories: Sequence[Trajectory], task: VqaConfig, seed: int,
                      store_root: str, store_fingerprint: Mapping[str, Any], *, force: bool = False,
                      progress: bool = True) -> Path:
    """Generate the data set into ``target`` once (reused while the fingerprint holds; an
    interrupted generation resumes from its finished shards). A user's non-empty folder is refused."""
    from qvl.build import build_directory

    fingerprint = generation_fingerprint(task, seed, store_root, store_fingerprint)

    def build(out: Path) -> None:
        generate(trajectories, task, seed, out, store_root=store_root, store_fingerprint=store_fingerprint,
                 progress=progress)

    return build_directory(target, build, kind="vqa-dataset", fingerprint=fingerprint, force=force, resume=True,
                           hint="choose another task.output_path", info={"samples": task.num_samples},
                           announce=f"qvl-vqa: generating {task.num_samples} VQA samples into {target}")
