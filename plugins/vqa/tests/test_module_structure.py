"""The package's shape (``qvl.testing.PackageShapeTests``): ``plugin.py`` is the table of hook implementations
that no other module imports, the modules import one another without a circle, none is over 450 lines, and the
core is reached through its public names only. Every import counts: those inside functions and under
``TYPE_CHECKING`` too."""

from __future__ import annotations

from qvl.testing import PackageShapeTests, import_graph

import qvl_vqa


class TestPackageShape(PackageShapeTests):
    package = qvl_vqa

    def test_the_graph_sees_the_package(self):
        graph = import_graph(qvl_vqa)
        assert {"plugin", "data", "generation", "shard_writer", "trajectory", "store_formats"} <= set(graph)
        assert "data" in graph["plugin"]
        assert {"shard_writer", "generation_plan"} <= graph["generation"]
