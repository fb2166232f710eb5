"""The package's shape, by the core's shared checks (``qvl.testing.PackageShapeTests``)."""

from __future__ import annotations

from qvl.testing import PackageShapeTests

import qvl_reward


class TestPackageShape(PackageShapeTests):
    package = qvl_reward
    expected_modules = {"plugin", "data", "cached", "report"}
    expected_imports = {"plugin": {"data"}}
