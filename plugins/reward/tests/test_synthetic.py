import numpy as np

from qvl_reward.config import SyntheticConfig
from qvl_reward.synthetic import dataset_key, fingerprint, render_episodes


def _same(a, b) -> bool:
    return a.task == b.task and a.columns == b.columns and all(
        np.array_equal(x, y) for camera in a.frames for x, y in zip(a.frames[camera], b.frames[camera]))


def test_val_episodes_do_not_depend_on_the_number_of_train_episodes():
    """Runs trained on more or fewer episodes are measured on the same held-out episodes."""
    small = render_episodes(SyntheticConfig(train_episodes=2, val_episodes=2, frames=3, width=32, height=32), 0)
    large = render_episodes(SyntheticConfig(train_episodes=4, val_episodes=2, frames=3, width=32, height=32), 0)
    assert len(small) == 4 and len(large) == 6
    assert all(_same(a, b) for a, b in zip(small[2:], large[4:]))  # the val episodes
    assert all(_same(a, b) for a, b in zip(small[:2], large[:2]))  # the train stream is shared too
    assert not _same(small[0], small[2])
    other_seed = render_episodes(SyntheticConfig(train_episodes=2, val_episodes=2, frames=3, width=32, height=32), 1)
    assert not _same(small[2], other_seed[2])


def test_the_data_set_key_and_fingerprint_are_those_of_the_v3_generator():
    """The cache folder of earlier versions is found again (written by EpisodeSpec, now gone)."""
    assert dataset_key(SyntheticConfig(), 0) == "lerobot-reward-synthetic-v3-192-16-24-96x64-s0"
    assert fingerprint(SyntheticConfig(), 0) == {"format": "lerobot-synthetic-reward", "train_episodes": 192,
                                                 "val_episodes": 16, "frames": 24, "fps": 10, "width": 96,
                                                 "height": 64, "seed": 0}


def test_the_default_config_writes_the_default_episodes(qvl_host):
    """192 train + 16 val episodes: task.synthetic is the generator's one declaration of its settings."""
    from qvl.config import load_config
    from qvl_reward.data import SYNTHETIC

    data = SYNTHETIC.data(load_config(qvl_host.task("reward"), [], []))
    assert data.key == dataset_key(SyntheticConfig(), 0)
    assert (data.fingerprint["train_episodes"], data.fingerprint["val_episodes"]) == (192, 16)


def test_odd_video_sides_are_refused_when_the_config_is_read(qvl_host):
    import pytest

    from qvl.config import ConfigError, load_config

    with pytest.raises(ConfigError) as caught:
        load_config(qvl_host.task("reward"), [], ["task.synthetic.width=95"])
    assert caught.value.problems == ["--set task.synthetic.width=95: task.synthetic.width: must be even (a side "
                                     "of H.264 video frames), got 95"]
    assert load_config(qvl_host.task("reward"), [], ["task.synthetic.height=66"]).task.synthetic.height == 66


def test_a_hub_data_set_id_is_read_from_the_cache_and_excludes_data_dir(qvl_host, tmp_path, monkeypatch):
    import pytest

    from qvl.config import ConfigError, load_config
    from qvl.errors import UserError
    from qvl_reward import data

    task = qvl_host.task("reward")
    with pytest.raises(ConfigError) as caught:
        load_config(task, [], ["task.repo_id='lab/aloha'", "task.data_dir='/data/aloha'"])
    assert caught.value.problems == ["--set task.repo_id='lab/aloha': task.repo_id: must be empty when 'data_dir' is "
                                     "set (both say where the data comes from): set one of them"]
    config = load_config(task, [], ["task.repo_id='lab/aloha'", "task.revision='v2'"])
    asked = []
    monkeypatch.setattr("qvl.lerobot.hub.hub_dataset", lambda repo_id, revision: asked.append((repo_id, revision))
                        or tmp_path)
    assert data.data_root(config, create=True) == tmp_path and asked == [("lab/aloha", "v2")]
    with pytest.raises(UserError, match="make-data writes the synthetic data set, but task.repo_id = 'lab/aloha'"):
        data.make_data(config)
