"""Resumable shard writing: a generation's rows, shard by shard, in one or more processes.

Shards of ``save_batch_size`` rows are written as Arrow files straight into the final
``save_to_disk`` layout (``{split}/data-0000k-of-0000n.arrow``), each atomically, with a small
JSON record beside them saying it is complete; a restarted generation keeps the finished ones.
No row is ever held in memory twice or copied: peak memory does not grow with ``num_samples``.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import pickle
import queue
from collections import deque
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import attrs
import pyarrow as pa
from qvl.data import SPLITS, write_json

from qvl_vqa.generation_plan import GenerationPlan
from qvl_vqa.row_schema import ROW_SCHEMA
from qvl_vqa.sample_builders import make_sample


@attrs.frozen
class Shard:
    split: str
    index: int
    count: int  # shards of the split
    start: int
    stop: int

    @property
    def filename(self) -> str:  # the name save_to_disk gives its data files
        return f"data-{self.index:05d}-of-{self.count:05d}.arrow"

    @property
    def record(self) -> str:
        return f"{self.split}-{self.index:05d}-of-{self.count:05d}.json"


SHARD_RECORDS = ".shards"  # completion records of the finished shards, removed once the data set is complete


def shards_of(plan: GenerationPlan) -> list[Shard]:
    size = plan.task.save_batch_size
    shards = []
    for split, (start, stop) in plan.ranges.items():
        step = (stop - start) if size == -1 else size
        bounds = list(range(start, stop, step)) if stop > start else [start]  # an empty split: one empty file
        for index, first in enumerate(bounds):
            shards.append(Shard(split, index, len(bounds), first, min(first + max(step, 1), stop)))
    return shards


@attrs.frozen
class ShardJob:
    """What a worker is given once: the plan and where and how to write."""

    plan: GenerationPlan
    out: Path
    key: str  # the generation's digest: a shard record of another generation is not reused


def _write_shard(job: ShardJob, shard: Shard) -> dict[str, Any]:
    """Generate a shard's rows and write them as an Arrow stream (what save_to_disk writes), then its
    completion record; both atomically."""
    rows = [make_sample(i, job.plan) for i in range(shard.start, shard.stop)]
    table = pa.Table.from_pydict({name: [row[name] for row in rows] for name in ROW_SCHEMA.names},
                                 schema=ROW_SCHEMA)
    counts: dict[str, dict[str, int]] = {}
    for row in rows:
        by_strategy = counts.setdefault(row["sample_type"], {})
        by_strategy[row["data_gen_strategy"]] = by_strategy.get(row["data_gen_strategy"], 0) + 1
    del rows
    path = job.out / shard.split / shard.filename
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_stream(sink, ROW_SCHEMA) as writer:
        writer.write_table(table)  # one record batch: few headers to touch when memory-mapped
    os.replace(tmp, path)
    record = {"key": job.key, "split": shard.split, "start": shard.start, "stop": shard.stop,
              "file": shard.filename, "bytes": path.stat().st_size, "counts": counts}
    write_sorted_json(job.out / SHARD_RECORDS / shard.record, record)
    return record


def finished_record(job: ShardJob, shard: Shard) -> dict[str, Any] | None:
    """The record of a shard an earlier, interrupted run of the same generation completed."""
    try:
        record = json.loads((job.out / SHARD_RECORDS / shard.record).read_text(encoding="utf-8"))
        size = (job.out / shard.split / shard.filename).stat().st_size
    except (OSError, ValueError):
        return None
    same = (record.get("key"), record.get("start"), record.get("stop"), record.get("bytes"))
    return record if same == (job.key, shard.start, shard.stop, size) else None


def write_sorted_json(path: Path, data: Any) -> None:
    write_json(path, data, indent=1, sort_keys=True, default=str)


_WORKER_JOB: list[ShardJob] = []


def _init_worker(job_file: str) -> None:
    with open(job_file, "rb") as f:
        _WORKER_JOB[:] = [pickle.load(f)]


def _run_shard(shard: Shard) -> tuple[Shard, dict[str, Any]]:
    return shard, _write_shard(_WORKER_JOB[0], shard)


def remove_strays(out: Path, shards: Sequence[Shard]) -> None:
    """Files of this layout that the plan does not name: shards of an interrupted run with another
    shard size, unfinished temporary files. Nothing else in ``out`` is touched."""
    wanted = {(s.split, s.filename) for s in shards} | {(SHARD_RECORDS, s.record) for s in shards}
    for folder in (*SPLITS, SHARD_RECORDS):
        for path in (out / folder).glob("*"):
            stray = (folder, path.name) not in wanted and (
                ".tmp-" in path.name or path.name.startswith("data-") or folder == SHARD_RECORDS)
            if stray and path.is_file():
                path.unlink()


def produce_shards(job: ShardJob, pending: Sequence[Shard], workers: int) -> Iterator[tuple[Shard, dict[str, Any]]]:
    """Write the pending shards with ``workers`` processes, this one included; yield each as it is done.

    Helper processes take shards from the front of the list as they finish one; this process takes
    them from the back meanwhile, so it works while the helpers start (spawn: no fork of a parent
    that may hold torch threads). The plan reaches each helper once, through a file: handed over
    a pipe, a large one would hold this process until the helper has started and read it.
    """
    todo = deque(pending)
    if workers <= 1:
        while todo:
            shard = todo.popleft()
            yield shard, _write_shard(job, shard)
        return
    finished: queue.SimpleQueue[Any] = queue.SimpleQueue()
    job_file = job.out / SHARD_RECORDS / "job.pickle"
    with open(job_file, "wb") as f:
        pickle.dump(job, f, protocol=pickle.HIGHEST_PROTOCOL)
    context = multiprocessing.get_context("spawn")
    with context.Pool(workers - 1, initializer=_init_worker, initargs=(str(job_file),)) as pool:

        def submit(result: Any = None) -> None:  # runs in the pool's result thread after each shard
            if result is not None:
                finished.put(result)
            try:
                shard = todo.popleft()  # deque pops are atomic: no shard is taken twice
            except IndexError:
                return
            pool.apply_async(_run_shard, (shard,), callback=submit, error_callback=finished.put)

        for _ in range(workers - 1):
            submit()

        def take(item: Any) -> tuple[Shard, dict[str, Any]]:
            if isinstance(item, BaseException):  # a helper's error, raised here
                raise item
            return item

        done = 0
        while True:
            while not finished.empty():
                done += 1
                yield take(finished.get())
            try:
                shard = todo.pop()
            except IndexError:
                break
            done += 1
            yield shard, _write_shard(job, shard)
        while done < len(pending):
            done += 1
            yield take(finished.get())

