"""pyarrow, which every LeRobot table needs, comes with qvl-core's ``[lerobot]`` extra: without it,
importing :mod:`qvl.lerobot` says how to install it instead of failing on the first parquet file."""

import importlib.util

from qvl.errors import MissingExtraError

if importlib.util.find_spec("pyarrow") is None:  # looks for it, does not import it
    raise MissingExtraError("qvl.lerobot", "lerobot", "pyarrow")
