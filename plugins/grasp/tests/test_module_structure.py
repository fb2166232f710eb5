"""The package's shape, by the core's shared checks (``qvl.testing.PackageShapeTests``)."""

from __future__ import annotations

from qvl.testing import PackageShapeTests

import qvl_grasp


class TestPackageShape(PackageShapeTests):
    package = qvl_grasp
    expected_modules = {"plugin", "readers", "synthetic", "report"}
    expected_imports = {"plugin": {"data"}}
