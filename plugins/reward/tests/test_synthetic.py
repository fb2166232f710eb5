import numpy as np

from qvl_reward.synthetic import EpisodeSpec, render_episodes


def _same(a, b) -> bool:
    return a.task == b.task and a.columns == b.columns and all(
        np.array_equal(x, y) for camera in a.frames for x, y in zip(a.frames[camera], b.frames[camera]))


def test_val_episodes_do_not_depend_on_the_number_of_train_episodes():
    """Runs trained on more or fewer episodes are measured on the same held-out episodes."""
    small = render_episodes(EpisodeSpec(train_episodes=2, val_episodes=2, frames=3, width=32, height=32))
    large = render_episodes(EpisodeSpec(train_episodes=4, val_episodes=2, frames=3, width=32, height=32))
    assert len(small) == 4 and len(large) == 6
    assert all(_same(a, b) for a, b in zip(small[2:], large[4:]))  # the val episodes
    assert all(_same(a, b) for a, b in zip(small[:2], large[:2]))  # the train stream is shared too
    assert not _same(small[0], small[2])
    other_seed = render_episodes(EpisodeSpec(train_episodes=2, val_episodes=2, frames=3, width=32, height=32, seed=1))
    assert not _same(small[2], other_seed[2])


def test_the_data_set_key_names_the_v3_generator():
    assert EpisodeSpec().key() == "lerobot-reward-synthetic-v3-192-16-24-96x64-s0"


def test_the_default_config_writes_the_default_episodes(qvl_host):
    """192 train + 16 val episodes: the default config and EpisodeSpec's defaults agree."""
    from qvl.config import load_config
    from qvl_reward.data import synthetic_spec

    spec = synthetic_spec(load_config(qvl_host.task("reward"), [], []))
    assert spec == EpisodeSpec()
    assert (spec.train_episodes, spec.val_episodes) == (192, 16)
