"""The marker plugins decorate their hook implementations with: ``@qvl.hookimpl``."""

import pluggy

hookimpl = pluggy.HookimplMarker("qvl")
