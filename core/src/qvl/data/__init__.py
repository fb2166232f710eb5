"""Data chores every task has, done once: splits, digests, image-folder inputs, JSON Lines, atomic writes.

* splits (:mod:`qvl.data.splits`): :func:`assign_split` puts an id into train / val / test by a
  hash of the id alone; :func:`split_items` splits a collection (by hash, or by evenly spread
  positions of an order the caller chose); :func:`hash_position`, :func:`held_out_counts`,
  :func:`check_fractions`.
* digests (:mod:`qvl.data.digest`): :func:`digest` of settings (cache folder names),
  :func:`files_fingerprint` of files.
* image-folder inputs (:mod:`qvl.data.images`): :data:`IMAGE_SUFFIXES`, :func:`image_files`,
  :func:`image_folder`, :func:`load_rgb`, :func:`is_image_file`.
* JSON Lines (:mod:`qvl.data.jsonl`): :func:`read_objects`, :func:`read_lines` and
  :class:`JsonLine`, whose errors name the file, the line and the field.
* conversation files (:mod:`qvl.data.conversations`): :func:`read_conversations` of LLaMA-Factory,
  ShareGPT and OpenAI-style JSON / JSON Lines into :class:`ConversationRow` s in Qwen-VL's format.
* atomic writes (:mod:`qvl.data.atomic`): :func:`write_json`, :func:`write_jsonl`, :func:`write_text`.
* synthetic data sets (:mod:`qvl.data.synthetic`): :func:`settings_fingerprint` of the task's
  ``[task.synthetic]`` config class, which is the generator's spec.

Importing it imports neither torch nor numpy.
"""

from qvl.data.atomic import write_json, write_jsonl, write_text
from qvl.data.conversations import ConversationRow, read_conversations
from qvl.data.digest import digest, files_fingerprint
from qvl.data.images import IMAGE_SUFFIXES, image_files, image_folder, is_image_file, load_rgb
from qvl.data.jsonl import JsonLine, read_lines, read_objects
from qvl.data.splits import SPLITS, assign_split, check_fractions, hash_position, held_out_counts, split_items
from qvl.data.synthetic import settings_fingerprint

__all__ = [
    "IMAGE_SUFFIXES",
    "SPLITS",
    "ConversationRow",
    "JsonLine",
    "assign_split",
    "check_fractions",
    "digest",
    "files_fingerprint",
    "hash_position",
    "held_out_counts",
    "image_files",
    "image_folder",
    "is_image_file",
    "load_rgb",
    "read_conversations",
    "read_lines",
    "read_objects",
    "settings_fingerprint",
    "split_items",
    "write_json",
    "write_jsonl",
    "write_text",
]
