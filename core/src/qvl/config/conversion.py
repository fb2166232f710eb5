"""The strict cattrs converter of config data: no "x" -> ["x"], no 1.5 -> 1."""

from __future__ import annotations

import types
import typing
from typing import Any, Literal

import cattrs
from cattrs.errors import IterableValidationError


def _type_name(tp: Any) -> str:
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}
    if tp in names:
        return names[tp]
    origin = typing.get_origin(tp)
    if origin is list:
        return f"a list of {_type_name(typing.get_args(tp)[0]).removeprefix('a ').removeprefix('an ')}s"
    return getattr(tp, "__name__", str(tp))


def _make_converter() -> cattrs.Converter:
    conv = cattrs.Converter(forbid_extra_keys=True)

    def struct_int(value: Any, _: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"expected an integer, got {value!r}")
        return value

    def struct_float(value: Any, _: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"expected a number, got {value!r}")
        return float(value)

    def struct_str(value: Any, _: Any) -> str:
        if not isinstance(value, str):
            raise TypeError(f"expected a string, got {value!r}")
        return value

    def struct_bool(value: Any, _: Any) -> bool:
        if not isinstance(value, bool):
            raise TypeError(f"expected true or false, got {value!r}")
        return value

    conv.register_structure_hook(int, struct_int)
    conv.register_structure_hook(float, struct_float)
    conv.register_structure_hook(str, struct_str)
    conv.register_structure_hook(bool, struct_bool)
    conv.register_structure_hook(Any, lambda value, _: value)

    def is_list(tp: Any) -> bool:
        return typing.get_origin(tp) is list

    def struct_list(value: Any, tp: Any) -> list:
        if not isinstance(value, list):
            raise TypeError(f"expected {_type_name(tp)}, got {value!r}")
        (item_type,) = typing.get_args(tp) or (Any,)
        errors, items = [], []
        for index, item in enumerate(value):
            try:
                items.append(conv.structure(item, item_type))
            except Exception as exc:
                exc.__notes__ = [*getattr(exc, "__notes__", []), _IndexNote(index)]
                errors.append(exc)
        if errors:
            raise IterableValidationError("list items", errors, tp)
        return items

    conv.register_structure_hook_func(is_list, struct_list)

    def is_literal(tp: Any) -> bool:
        return typing.get_origin(tp) is Literal

    def struct_literal(value: Any, tp: Any) -> Any:
        allowed = typing.get_args(tp)
        if value not in allowed or isinstance(value, bool) != isinstance(allowed[0], bool):
            raise ValueError(f"expected one of {', '.join(repr(a) for a in allowed)}, got {value!r}")
        return value

    conv.register_structure_hook_func(is_literal, struct_literal)

    def is_int_or_choice(tp: Any) -> bool:  # int | Literal["auto"], bool | Literal["auto"]
        args = typing.get_args(tp)
        scalars = [a for a in args if a in (int, bool)]
        return (typing.get_origin(tp) in (typing.Union, types.UnionType) and len(scalars) == 1
                and all(a in (int, bool) or typing.get_origin(a) is Literal for a in args))

    def struct_int_or_choice(value: Any, tp: Any) -> Any:
        scalar = next(a for a in typing.get_args(tp) if a in (int, bool))
        choices = [c for a in typing.get_args(tp) if a is not scalar for c in typing.get_args(a)]
        is_bool = isinstance(value, bool)
        of_scalar = is_bool if scalar is bool else isinstance(value, int) and not is_bool
        if (value in choices and not is_bool) or of_scalar:
            return value
        kind = "true or false" if scalar is bool else "an integer"
        raise ValueError(f"expected {kind} or one of {', '.join(repr(c) for c in choices)}, got {value!r}")

    conv.register_structure_hook_func(is_int_or_choice, struct_int_or_choice)
    return conv


class _IndexNote(str):
    def __new__(cls, index: int) -> _IndexNote:
        note = super().__new__(cls, f"list item {index}")
        note.index = index
        return note


converter = _make_converter()
