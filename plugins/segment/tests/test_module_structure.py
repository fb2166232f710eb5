"""The package's shape, by the core's shared checks (``qvl.testing.PackageShapeTests``)."""

from __future__ import annotations

from qvl.testing import PackageShapeTests

import qvl_segment


class TestPackageShape(PackageShapeTests):
    package = qvl_segment
    expected_modules = {"plugin", "episodes", "synthetic", "report"}
    expected_imports = {"plugin": {"data"}}
