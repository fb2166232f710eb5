import numpy as np
import pytest

from qvl_reward.labels import classes_of, label_of


@pytest.mark.parametrize(("value", "label"), [
    ([0.0, 0.0, 1.0, 0.0], 2),            # one-hot
    ([0.1, 0.7, 0.2], 1),                 # scores: argmax
    ([0.5, 0.5, 0.0], 0),                 # ties: the first
    ([0.0, 0.0, 0.0], 0),                 # all zero: class 0, as the seed does
    ([], 0),
    (0.83, 0),                            # scalar: class 0, as the seed does
    (3, 0),
    (None, 0),
    (np.array([0, 0, 0, 1], dtype=np.float32), 3),
    ((0.0, 2.0), 1),
])
def test_label_mapping(value, label):
    assert label_of(value) == label


def test_number_of_classes_of_a_cell():
    assert classes_of([0, 1, 0]) == 3
    assert classes_of(np.zeros(5)) == 5
    assert classes_of(0.5) is None
