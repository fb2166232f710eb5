"""JSON Lines tables read with errors that name the file and the line: now :mod:`qvl.data.jsonl`,
re-exported here so that ``from qvl.jsonl import read_objects`` keeps working."""

from qvl.data.jsonl import JsonLine, read_lines, read_objects

__all__ = ["JsonLine", "read_lines", "read_objects"]
