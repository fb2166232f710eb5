import numpy as np
import pytest

import qvl

from qvl.lerobot import Recording, write_dataset


def test_balanced_class_weights_are_inverse_frequencies_and_explicit_ones_are_checked(tmp_path, qvl_host):
    from qvl.config import load_config
    from qvl_reward.data import class_weights

    frames = [np.zeros((32, 32, 3), np.uint8)] * 6
    labels = [0, 0, 0, 0, 1, 2]  # per episode: 4 x bin 0, 1 x bin 1, 1 x bin 2
    recordings = [Recording(task="t", frames={"observation.images.top": frames},
                            columns={"reward_bins": [[1.0 if k == c else 0.0 for k in range(3)] for c in labels]})
                  for _ in range(3)]
    root = write_dataset(tmp_path / "ds", recordings, fps=5, splits={"train": "0:2", "val": "2:3"})
    base = [f"task.data_dir={str(root)!r}", "task.camera_keys=['observation.images.top']"]
    task = qvl_host.task("reward")
    balanced = load_config(task, [], [*base, "task.balance_classes=true"])
    # 12 train frames, 3 classes: 12 / (3 * count)
    assert class_weights(balanced, 3) == pytest.approx([12 / 24, 12 / 6, 12 / 6])
    assert class_weights(load_config(task, [], base), 3) is None
    explicit = load_config(task, [], [*base, "task.class_weights=[1.0, 2.0]"])
    with pytest.raises(qvl.UserError, match="task.class_weights has 2 values for 3 classes"):
        class_weights(explicit, 3)
