"""Config errors a person can read: cattrs' nested errors as one line per problem, with file and line."""

from __future__ import annotations

import re

import attrs
from cattrs.errors import (
    AttributeValidationNote,
    ClassValidationError,
    ForbiddenExtraKeysError,
    IterableValidationError,
    IterableValidationNote,
)

from qvl.config.conversion import _IndexNote
from qvl.errors import UserError


class ConfigError(UserError, ValueError):
    """Bad configuration; ``str()`` is meant for a person, one problem a line."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


_ATTRS_MESSAGE = re.compile(r"^'(?P<name>\w+)' (?P<rest>.*)$", re.S)


def _flatten(exc: BaseException, path: tuple[str, ...]) -> list[tuple[tuple[str, ...], str]]:
    """(key path, message) pairs from cattrs' nested exception groups."""
    if isinstance(exc, ForbiddenExtraKeysError):
        return [(path + (key,), "unknown key") for key in sorted(exc.extra_fields)]
    if isinstance(exc, (ClassValidationError, IterableValidationError)):
        found = []
        for sub in exc.exceptions:
            sub_path = path
            for note in getattr(sub, "__notes__", []):
                if isinstance(note, (_IndexNote, IterableValidationNote)):
                    sub_path = path + (f"[{note.index}]",)
                elif isinstance(note, AttributeValidationNote):
                    sub_path = path + (note.name,)
            found.extend(_flatten(sub, sub_path))
        return found
    message = str(exc)
    match = _ATTRS_MESSAGE.match(message)
    if isinstance(exc, ValueError) and match:  # an attrs validator: name the attribute
        return [(path + (match["name"],), match["rest"])]
    if isinstance(exc, KeyError):
        return [(path + (str(exc.args[0]),), "required key is missing")]
    return [(path, message)]


# ---------------------------------------------------------------------------------------------
# Sources: where each key came from, to point at the file and line in errors.


@attrs.define
class _Source:
    label: str
    text: str | None = None

    def where(self, dotted: str) -> str:
        line = _find_line(self.text, dotted) if self.text is not None else None
        return f"{self.label}, line {line}" if line else self.label


_TABLE = re.compile(r"^\s*\[\s*([^\[\]]+?)\s*\]\s*(#.*)?$")
_KEY = re.compile(r"^\s*([A-Za-z0-9_\-\.\"' ]+?)\s*=")


def _find_line(text: str, dotted: str) -> int | None:
    """Best-effort line of a dotted key in a TOML text (tomllib keeps no positions)."""
    table = ""
    header_line = None
    for number, line in enumerate(text.splitlines(), start=1):
        table_match = _TABLE.match(line)
        if table_match:
            table = table_match.group(1).replace('"', "").replace(" ", "")
            if table == dotted:
                header_line = number
            continue
        key_match = _KEY.match(line)
        if key_match:
            key = key_match.group(1).replace('"', "").replace("'", "").replace(" ", "")
            full = f"{table}.{key}" if table else key
            if full == dotted:
                return number
    return header_line


def _render(path: tuple[str, ...], message: str, sources: dict[str, _Source]) -> str:
    dotted = ".".join(path).replace(".[", "[")
    lookup = dotted.split("[")[0]
    source = None
    probe = lookup
    while probe:
        if probe in sources:
            source = sources[probe]
            break
        probe = probe.rpartition(".")[0]
    where = source.where(lookup) + ": " if source else ""
    if message == "unknown key":
        parent, _, leaf = lookup.rpartition(".")
        return f"{where}unknown key {leaf!r} in [{parent}]" if parent else f"{where}unknown key {leaf!r}"
    return f"{where}{dotted}: {message}"
