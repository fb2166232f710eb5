"""Wire format of the policy server: one msgpack map per websocket message, numpy arrays as plain maps.

As in openpi's ``msgpack_numpy``, an array travels as ``{"__ndarray__": raw bytes, "dtype": name,
"shape": [dims]}``; unlike pickle (what LeRobot's first async server sent, and why it later grew a
``safe_serialization.py``), decoding can only ever build dicts, lists, str, bytes, numbers, bools,
None and numpy arrays of a few plain dtypes, whatever the peer sends:

* ``raw=False`` (str is UTF-8), ``strict_map_key`` (keys are str or bytes), an ``ext_hook`` that
  refuses every extension type, and a walk over the decoded value that refuses anything else
  (msgpack's built-in Timestamp extension included);
* arrays: the dtype must be one of :data:`DTYPES` (no ``object``, no structured dtypes), the shape
  a list of non-negative ints and the byte count exactly ``prod(shape) * itemsize``; bool arrays
  must hold only 0 and 1 bytes. Arrays are always little-endian on the wire.

Every rejection is a :class:`TransportError` (a ``ValueError``) whose message says what was wrong.
"""

from __future__ import annotations

import math
from typing import Any

import msgpack
import numpy as np

# name on the wire -> the exact (little-endian) dtype; a whitelist, so no object or structured dtypes
DTYPES: dict[str, np.dtype] = {
    "uint8": np.dtype("|u1"),
    "float32": np.dtype("<f4"),
    "float64": np.dtype("<f8"),
    "int64": np.dtype("<i8"),
    "bool": np.dtype("|b1"),
}
ARRAY_KEY = "__ndarray__"
MAX_DIMS = 8
DEFAULT_MAX_BYTES = 8 * 1024 * 1024


class TransportError(ValueError):
    """A message that cannot be encoded or decoded: the text says why."""


def pack(message: dict[str, Any]) -> bytes:
    """``message`` (a dict of plain values and numpy arrays) as msgpack bytes."""
    if not isinstance(message, dict):
        raise TransportError(f"a message must be a dict, got {type(message).__name__}")
    try:
        return msgpack.packb(message, default=_encode, use_bin_type=True, strict_types=False)
    except TransportError:
        raise
    except (TypeError, ValueError, OverflowError) as exc:
        raise TransportError(f"cannot encode message: {exc}") from exc


def unpack(data: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> dict[str, Any]:
    """The message encoded in ``data``; arrays come back as writable numpy arrays."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TransportError(f"expected a binary message, got {type(data).__name__}")
    if len(data) > max_bytes:
        raise TransportError(f"message of {len(data)} bytes is over the limit of {max_bytes} bytes")
    try:
        # msgpack bounds every str/bin/array/map length by len(data), so a short message cannot make it allocate much
        value = msgpack.unpackb(bytes(data), raw=False, strict_map_key=True, ext_hook=_refuse_ext, use_list=True)
    except TransportError:
        raise
    except Exception as exc:  # msgpack raises several unrelated types (ExtraData, FormatError, StackError, ...)
        raise TransportError(f"not a valid msgpack message ({type(exc).__name__}: {exc})") from exc
    if not isinstance(value, dict):
        raise TransportError(f"a message must be a map at the top level, got {type(value).__name__}")
    return _decode(value)


def _encode(value: Any) -> Any:
    """msgpack's ``default``: numpy arrays and scalars; anything else cannot travel."""
    if isinstance(value, np.ndarray):
        name = value.dtype.name
        if name not in DTYPES:
            raise TransportError(f"arrays of dtype {name} cannot be sent (allowed: {', '.join(DTYPES)})")
        if value.ndim > MAX_DIMS:
            raise TransportError(f"arrays of more than {MAX_DIMS} dimensions cannot be sent, got {value.ndim}")
        array = np.ascontiguousarray(value, dtype=DTYPES[name])
        return {ARRAY_KEY: array.tobytes(), "dtype": name, "shape": list(array.shape)}
    if isinstance(value, np.generic) and value.dtype.name in DTYPES:
        return value.item()
    raise TransportError(f"values of type {type(value).__name__} cannot be sent")


def _refuse_ext(code: int, data: bytes) -> Any:
    raise TransportError(f"msgpack extension type {code} is not accepted")


MAX_DEPTH = 16  # no message of the protocol nests deeper; msgpack's own limit (1024) is past Python's recursion limit
MAX_DIM = 2**31  # one array dimension (bytes are checked too; this keeps reshape from overflowing)


def _decode(value: Any, depth: int = 0) -> Any:
    """Checks every value is plain and turns array maps back into arrays."""
    if depth > MAX_DEPTH:
        raise TransportError(f"values nest deeper than {MAX_DEPTH} levels")
    if isinstance(value, dict):
        if ARRAY_KEY in value:
            return _decode_array(value)
        return {key: _decode(item, depth + 1) for key, item in value.items()}
    if isinstance(value, list):
        return [_decode(item, depth + 1) for item in value]
    if value is None or isinstance(value, (str, bytes, bool, int, float)):
        return value
    raise TransportError(f"values of type {type(value).__name__} are not accepted")


def _decode_array(value: dict[str, Any]) -> np.ndarray:
    if set(value) != {ARRAY_KEY, "dtype", "shape"}:
        raise TransportError(f"an array must have exactly the keys {ARRAY_KEY}, dtype, shape; got {sorted(value)}")
    raw, name, shape = value[ARRAY_KEY], value["dtype"], value["shape"]
    if not isinstance(raw, bytes):
        raise TransportError(f"array data must be bytes, got {type(raw).__name__}")
    if not isinstance(name, str) or name not in DTYPES:
        raise TransportError(f"array dtype {name!r} is not accepted (allowed: {', '.join(DTYPES)})")
    if (not isinstance(shape, list) or len(shape) > MAX_DIMS
            or not all(isinstance(dim, int) and not isinstance(dim, bool) and 0 <= dim < MAX_DIM for dim in shape)):
        raise TransportError(f"array shape must be a list of at most {MAX_DIMS} non-negative ints, got {shape!r}")
    dtype = DTYPES[name]
    expected = math.prod(shape) * dtype.itemsize  # Python ints: no overflow
    if len(raw) != expected:
        raise TransportError(f"array of shape {shape} and dtype {name} needs {expected} bytes, got {len(raw)}")
    if name == "bool" and raw and np.frombuffer(raw, np.uint8).max() > 1:
        raise TransportError("bool array holds bytes other than 0 and 1")
    # a copy: np.frombuffer over the message bytes would be read-only
    return np.frombuffer(raw, dtype=dtype).reshape(shape).copy()
