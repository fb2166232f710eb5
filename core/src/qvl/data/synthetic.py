"""One declaration of a synthetic data set's settings: the task config's section is the spec.

A plugin's ``[task.synthetic]`` config class (attrs, with the defaults users get) is what its
generator reads, together with the run's seed; there is no second "spec" class to keep in step.
:func:`settings_fingerprint` derives what the written files depend on from every field of it,
so a setting added to the config class changes the fingerprint without anyone listing it again.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import attrs


def settings_fingerprint(settings: Any, *, format: str, seed: int | None = None, version: int | str | None = None,
                         exclude: Iterable[str] = (), **extra: Any) -> dict[str, Any]:
    """``{"format": ..., "version": ..., "seed": ..., **fields, **extra}`` of an attrs settings object.

    :param format: what is written (``"segment-synthetic"``), so two generators never share a fingerprint.
    :param seed: the run's seed (left out when ``None``).
    :param version: the generator's version (left out when ``None``): bump it when the files change.
    :param exclude: fields the files do not depend on (e.g. the settings of the kind of scene not drawn).
    :param extra: more that the files depend on (constants of the generator, a generator tag).
    """
    fields = attrs.asdict(settings)
    for name in exclude:
        del fields[name]
    head: dict[str, Any] = {"format": format}
    if version is not None:
        head["version"] = version
    if seed is not None:
        head["seed"] = seed
    return {**head, **fields, **extra}


__all__ = ["settings_fingerprint"]
