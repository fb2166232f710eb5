"""The rows of a generated VQA data set: their Arrow schema, and the same as ``datasets`` features.

Every row has every field of :data:`ROW_SCHEMA` (None where unused): the seed lost fields to
schema inference from the first row.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pyarrow as pa

if TYPE_CHECKING:
    import datasets


def _video_fields(prefix: str) -> list[pa.Field]:
    return [pa.field(f"{prefix}npz_path", pa.string()), pa.field(f"{prefix}trajectory_id", pa.string()),
            pa.field(f"{prefix}frame_indices", pa.list_(pa.int32())),
            pa.field(f"{prefix}frames_shape", pa.list_(pa.int32())),
            pa.field(f"{prefix}target_progress", pa.list_(pa.float64()))]


# One schema, declared up front. Progress samples use the unprefixed video; preference samples
# first_/second_ (Video 1 and 2); similarity samples the unprefixed one for the reference and
# first_/second_ for the two candidates.
ROW_SCHEMA = pa.schema([
    pa.field("sample_type", pa.string()),
    pa.field("prompt", pa.string()),
    pa.field("answer", pa.string()),  # the assistant's whole reply: "1", "2" or "0".."100"
    pa.field("task", pa.string()),  # the task the prompt asks about
    pa.field("data_source", pa.string()),
    pa.field("data_gen_strategy", pa.string()),
    pa.field("resample_attempts", pa.int32()),
    pa.field("chosen_is_first", pa.bool_()),  # preference: the chosen video is Video 1; similarity: the match is
    *_video_fields(""),
    *_video_fields("first_"),
    *_video_fields("second_"),
    pa.field("sample_index", pa.int64()),
    pa.field("split", pa.string()),
])
EMPTY_ROW: dict[str, Any] = dict.fromkeys(ROW_SCHEMA.names)


def row_features() -> datasets.Features:
    """:data:`ROW_SCHEMA` as ``datasets`` features (what the saved DatasetDict declares)."""
    import datasets

    return datasets.Features.from_arrow_schema(ROW_SCHEMA)
