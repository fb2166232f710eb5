"""Where the grasp task's data set lives: a folder the user names, or the synthetic one (predict's
inputs: ``predict_inputs``)."""

from __future__ import annotations

from qvl.build import SyntheticGenerator

SYNTHETIC = SyntheticGenerator("qvl_grasp.synthetic", write="write_dataset", plugin="qvl-grasp",
                               description="the synthetic OCID-Grasp data set")


# the data set's folder (the embedded one is rendered the first time it is needed), and make-data
data_root = SYNTHETIC.root
make_data = SYNTHETIC.make
