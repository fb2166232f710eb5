"""The package's shape, by the core's shared checks (``qvl.testing.PackageShapeTests``)."""

from __future__ import annotations

from qvl.testing import PackageShapeTests

import qvl_vla_flow


class TestPackageShape(PackageShapeTests):
    package = qvl_vla_flow
    expected_modules = {"plugin", "rollout", "server", "client"}
    expected_imports = {"plugin": {"rollout"}}
