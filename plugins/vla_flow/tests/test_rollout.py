"""Acting: the per-episode feature cache, the executor and queue, and closed-loop Miniworld rollouts."""

import importlib.util
import json
from enum import IntEnum
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import qvl
from qvl_vla_flow.actions import ActionSpace
from qvl_vla_flow.executor import ActionQueue, MiniworldExecutor, executed_state
from qvl_vla_flow.play import EpisodeResult, play
from qvl_vla_flow.policy import VlaFlowPolicy
from qvl_vla_flow.rollout_report import summarise, wilson_interval
from qvl_vla_flow.session import PolicySession

SPACE = ActionSpace()
needs_sim = pytest.mark.skipif(importlib.util.find_spec("miniworld") is None, reason="needs qvl-vla-flow[sim]")


class Actions(IntEnum):  # Miniworld's MiniWorldEnv.Actions
    turn_left = 0
    turn_right = 1
    move_forward = 2
    move_back = 3
    pickup = 4
    drop = 5
    toggle = 6
    done = 7


def pressing(**keys: float) -> np.ndarray:
    action = np.full(SPACE.dim, -1.0, dtype=np.float32)
    action[:4] = 0.0
    for name, value in keys.items():
        action[SPACE.names.index(name)] = value
    return action


def frame(value: int, size: int = 8) -> np.ndarray:
    return np.full((size, size, 3), value, dtype=np.uint8)


class CountingEncoder:
    """Feature of a frame = its pixel value (and the instruction's length) in every entry; counts calls."""

    def __init__(self):
        self.calls = []

    def __call__(self, image, instruction):
        self.calls.append(int(image[0, 0, 0]))
        return np.full((5, 6), float(image[0, 0, 0]) + len(instruction) / 100, dtype=np.float32)


def tiny_policy(seed=0):
    torch.manual_seed(seed)
    return VlaFlowPolicy(feature_dim=6, tokens_per_frame=5, num_frames=3, action_dim=SPACE.dim,
                         state_dim=SPACE.dim, chunk_size=8, hidden_dim=16, num_layers=2, num_heads=2).eval()


def session(encoder, **kwargs):
    return PolicySession(tiny_policy(), encoder, num_frames=3, frame_skip=2, rest=pressing(), steps=2, **kwargs)


# ---------------------------------------------------------------------------------------------
# the session's feature cache


def test_session_windows_repeat_the_first_frame_and_encode_each_frame_once():
    encoder = CountingEncoder()
    s = session(encoder)
    s.reset("go")
    windows = []
    for value in range(7):
        s.observe(frame(value))
        windows.append(s.window()[:, 0, 0].round().astype(int).tolist())
    # frames t-4, t-2, t; clamped at 0 before the episode's start, as in training
    assert windows == [[0, 0, 0], [0, 0, 1], [0, 0, 2], [0, 1, 3], [0, 2, 4], [1, 3, 5], [2, 4, 6]]
    assert sorted(encoder.calls) == list(range(7)) and s.encoded_frames == 7  # each frame once
    assert s.window()[0, 0, 0] == pytest.approx(2.02)  # the instruction went with the frame


def test_session_encodes_only_the_frames_a_window_needs_and_forgets_old_ones():
    encoder = CountingEncoder()
    s = session(encoder)
    s.reset()
    for value in range(30):
        s.observe(frame(value))
        if value % 10 == 9:  # a chunk every 10 steps, as the rollout asks
            s.act()
    assert sorted(encoder.calls) == [5, 7, 9, 15, 17, 19, 25, 27, 29]
    assert sorted(s.frames) == [25, 26, 27, 28, 29]  # what a later window can reach
    with pytest.raises(ValueError, match=r"\[H, W, 3\] uint8"):
        s.observe(np.zeros((8, 8), dtype=np.uint8))


def test_session_with_frames_sent_by_step_reads_the_window_at_those_steps():
    encoder = CountingEncoder()
    s = session(encoder)
    s.reset()
    for step in (6, 8, 10):  # what a remote client sends for the window at 10
        s.observe(frame(step), step=step)
    assert s.window()[:, 0, 0].tolist() == [6.0, 8.0, 10.0]
    s.observe(frame(20), step=20)
    with pytest.raises(ValueError, match="needs the frame of step 16, which was not observed"):
        s.window()
    s.observe(frame(16), step=16)
    s.observe(frame(18), step=18)
    assert s.window()[:, 0, 0].tolist() == [16.0, 18.0, 20.0] and s.step == 20
    assert sorted(encoder.calls) == [6, 8, 10, 16, 18, 20]
    s.observe(frame(20), step=20)  # the same frame again: nothing to encode
    s.observe(frame(21), step=18)  # a newer frame of step 18 (the screen changed while waiting): it wins
    assert s.window()[:, 0, 0].tolist() == [16.0, 21.0, 20.0]
    assert sorted(encoder.calls) == [6, 8, 10, 16, 18, 20, 21]


def test_session_reset_starts_a_new_episode_and_chunks_have_the_policy_shape():
    encoder = CountingEncoder()
    s = session(encoder, seed=3)
    s.reset()
    s.observe(frame(1))
    chunk = s.act(pressing(key_UP=1.0))
    assert chunk.shape == (8, SPACE.dim) and chunk.dtype == np.float32
    assert np.abs(chunk).max() <= 1.0
    s.reset("again")
    assert s.step == -1 and not s.features
    s.observe(frame(1))
    assert encoder.calls == [1]  # frames are encoded when a window needs them
    s.window()
    assert encoder.calls == [1, 1]  # a new episode encodes its frames again


@needs_sim
def test_session_features_equal_the_training_features_of_the_same_frames(qvl_host, qvl_run_stage, tmp_path,
                                                                          monkeypatch):
    """The cache a deployed policy keeps holds what training read for the same frames."""
    from qvl.config import load_config

    from qvl_vla_flow.pipeline import converted, split_samples
    from qvl_vla_flow.session import backbone_encoder

    monkeypatch.setenv("QVL_CACHE", str(tmp_path / "cache"))
    overrides = ("task.record.episodes=4", "task.record.canvas=48", "task.record.max_steps=12",
                 "task.val_fraction=0.0", "task.test_fraction=0.0")
    qvl_run_stage("vla_flow", "features", *overrides)
    config = load_config(qvl_host.task("vla_flow"), overrides=overrides)
    samples = split_samples(config, "train")
    table = converted(config)[1]["train"]
    name = samples.items.table.index[0][0]
    entry = samples.items.table.episodes[name]
    s = PolicySession.for_run(config, tiny_policy(), encode=backbone_encoder(config))
    s.reset(entry["instruction"])
    first = samples.items.table.index.index((name, 0))
    for step, row in enumerate(entry["rows"]):
        s.observe(np.asarray(table[row]["image"].convert("RGB")))
        trained = samples[first + step]["features"]
        np.testing.assert_allclose(s.window(), trained, rtol=1e-4, atol=1e-4)
    assert s.encoded_frames == len(entry["rows"])


def test_sampling_only_the_executed_steps_gives_the_whole_chunks_first_actions():
    chunks = []
    for length in (None, 3):
        s = session(CountingEncoder(), seed=5)
        s.reset()
        s.observe(frame(2))
        chunks.append([s.act(pressing(), length=length) for _ in range(2)])  # two draws of one noise stream
    for full, part in zip(*chunks):
        assert part.shape == (3, SPACE.dim)
        np.testing.assert_allclose(part, full[:3], atol=1e-5)


# ---------------------------------------------------------------------------------------------
# executor and queue


def test_executor_maps_keys_as_miniworlds_manual_control():
    execute = MiniworldExecutor(SPACE, Actions, allowed=3)
    assert execute(pressing(key_UP=0.9)) == Actions.move_forward
    assert execute(pressing(key_LEFT=0.2)) == Actions.turn_left
    assert execute(pressing(key_RIGHT=0.7, key_UP=0.3)) == Actions.turn_right  # the strongest key wins
    assert execute(pressing()) is None  # nothing pressed: an idle step
    assert execute(pressing(key_PRIOR=1.0)) is None  # pick-up outside this env's 3 actions
    assert MiniworldExecutor(SPACE, Actions)(pressing(key_PRIOR=1.0)) == Actions.pickup
    assert execute(pressing(key_UP=-0.1, button_left=1.0)) is None  # buttons do nothing in Miniworld


def test_executor_turns_with_the_mouse_only_when_configured():
    look = pressing(mouse_dx=0.4)
    assert MiniworldExecutor(SPACE, Actions)(look) is None
    mouse = MiniworldExecutor(SPACE, Actions, mouse_turn=0.1)
    assert mouse(look) == Actions.turn_right
    assert mouse(pressing(mouse_dx=-0.3)) == Actions.turn_left
    assert mouse(pressing(mouse_dx=0.05)) is None
    assert mouse(pressing(mouse_dx=0.4, key_UP=1.0)) == Actions.move_forward  # keys first


def test_queue_executes_the_first_steps_of_each_chunk():
    queue = ActionQueue(3)
    chunk = np.arange(10 * 2, dtype=np.float32).reshape(10, 2)
    queue.refill(chunk)
    assert len(queue) == 3
    assert [queue.pop()[0] for _ in range(3)] == [0.0, 2.0, 4.0]
    with pytest.raises(IndexError):
        queue.pop()
    queue.refill(chunk[5:])
    queue.refill(chunk[:2])  # a new chunk replaces what is left
    assert len(queue) == 2 and queue.pop()[0] == 0.0
    with pytest.raises(ValueError):
        ActionQueue(0)


def test_state_fed_back_is_the_executed_key_state():
    state = executed_state(SPACE, pressing(key_UP=0.3, key_LEFT=-0.2, mouse_x=0.25))
    assert state[SPACE.names.index("key_UP")] == 1.0 and state[SPACE.names.index("key_LEFT")] == -1.0
    assert state[SPACE.names.index("mouse_x")] == pytest.approx(0.25)


# ---------------------------------------------------------------------------------------------
# episodes and statistics


class Corridor:
    """A fake env: reward 1 after ``goal`` move_forward steps, an action space of 3."""

    def __init__(self, goal=3):
        self.goal = goal
        self.action_space = SimpleNamespace(n=3)
        self.unwrapped = SimpleNamespace(actions=Actions)

    def reset(self, seed=None):
        self.position, self.steps = 0, 0
        return frame(0), {}

    def step(self, action):
        self.steps += 1
        self.position += action == Actions.move_forward
        done = self.position >= self.goal
        return frame(self.position), float(done), done, False, {}


class Script:
    def __init__(self, actions):
        self.actions = actions

    def start(self, env, seed, instruction):
        self.i = 0

    def act(self, observation):
        self.i += 1
        return self.actions[self.i - 1]


def test_play_counts_idle_steps_against_the_time_limit_and_success_by_the_last_reward():
    env = Corridor(goal=2)
    done = play(env, Script([None, 2, None, 2, 0]), seed=1, max_steps=10, instruction="", keep_frames=True)
    assert done.success and done.steps == 4 and done.env_steps == 2 and len(done.frames) == 5
    timeout = play(env, Script([None] * 3 + [2]), seed=1, max_steps=3, instruction="")
    assert not timeout.success and timeout.steps == 3 and timeout.env_steps == 0


def test_wilson_interval_and_summary_numbers():
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert wilson_interval(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    assert wilson_interval(50, 50)[1] == 1.0 and wilson_interval(50, 50)[0] == pytest.approx(0.9287, abs=1e-4)
    results = [EpisodeResult("m", i, i < 2, 10 + i, 10 + i, 0.5) for i in range(4)]
    summary = summarise(results, fps=10.0)
    assert summary["success_rate"] == 0.5 and summary["successes"] == 2
    assert summary["mean_steps"] == 11.5 and summary["steps_to_success"] == 10.5
    assert summary["seconds_to_success"] == pytest.approx(1.05)


def test_rollout_seeds_must_be_unseen(qvl_host):
    from qvl.config import load_config

    from qvl_vla_flow.rollout import rollout_seeds

    config = load_config(qvl_host.task("vla_flow"), overrides=("task.rollout.seed=50",))
    with pytest.raises(qvl.UserError, match=r"overlap the recorded episodes' seeds 0\.\.59"):
        rollout_seeds(config, 5)
    assert rollout_seeds(load_config(qvl_host.task("vla_flow")), 3) == [1_000_000, 1_000_001, 1_000_002]


# ---------------------------------------------------------------------------------------------
# real Miniworld


@needs_sim
def test_a_short_real_rollout_writes_the_table_plot_and_videos(qvl_host, tmp_path):
    from qvl.config import load_config

    from qvl_vla_flow.rollout import run_rollouts, write_rollout

    config = load_config(qvl_host.task("vla_flow"), overrides=(
        "task.record.canvas=48", "task.rollout.episodes=2", "task.rollout.max_steps=25",
        "task.rollout.execute_steps=4"))
    encoder = CountingEncoder()
    s = session(encoder)
    results = run_rollouts(config, s, keep_frames=1, progress=False)
    assert list(results) == ["model", "random", "expert"]
    assert [r.seed for r in results["model"]] == [r.seed for r in results["random"]] == [1_000_000, 1_000_001]
    assert all(r.success for r in results["expert"])  # the expert that recorded the data finds the box
    model = results["model"]
    assert all(r.steps <= 25 for r in model) and model[0].frames[0].shape == (48, 48, 3)
    # a chunk every 4 steps, frames t, t-2, t-4 each encoded once: never more than the frames seen
    assert 0 < s.encoded_frames <= sum(r.steps for r in model)
    summary = write_rollout(config, results, tmp_path / "out", checkpoint="best", save_vis=True)
    saved = json.loads((tmp_path / "out" / "rollout.json").read_text())
    assert saved["policies"]["expert"]["success_rate"] == 1.0 == summary["policies"]["expert"]["success_rate"]
    assert len((tmp_path / "out" / "episodes.jsonl").read_text().splitlines()) == 6
    assert len(list((tmp_path / "out" / "videos").glob("*.mp4"))) == 3
    assert (tmp_path / "out" / "success.png").stat().st_size > 5000
    assert (tmp_path / "out" / "frames.png").stat().st_size > 5000


def tiny_backend(qvl_host, encoder, *overrides):
    from qvl.config import load_config

    from qvl_vla_flow.policy_backend import PolicyBackend

    config = load_config(qvl_host.task("vla_flow"), overrides=("task.chunk_size=8", *overrides))
    return config, PolicyBackend(config, tiny_policy(), encode=encoder, instruction="go to the red box")


def test_backend_sessions_read_the_window_from_the_frames_sent_by_step(qvl_host):
    encoder = CountingEncoder()
    _, backend = tiny_backend(qvl_host, encoder)
    assert backend.metadata["num_frames"] == 3 and backend.metadata["frame_skip"] == 2
    remote = backend.open_session()
    chunk = remote.act({0: frame(0)}, pressing(), 0)
    assert chunk.shape == (8, SPACE.dim)
    remote.act({3: frame(3), 1: frame(1)}, pressing(), 3)  # window 0, 1, 3: frame 0 kept from before
    assert encoder.calls == [0, 1, 3]
    with pytest.raises(ValueError, match="request is for step 9"):
        remote.act({8: frame(8)}, pressing(), 9)
    remote.reset()
    with pytest.raises(ValueError, match="needs the frame of step 1"):
        remote.act({5: frame(5)}, pressing(), 5)
    other = backend.open_session()
    assert other.session.seed != remote.session.seed  # each session its own noise


@needs_sim
def test_rollout_through_the_policy_server_as_an_asynchronous_client(qvl_host):
    from qvl_vla_flow.rollout import run_rollouts
    from qvl_vla_flow.server import PolicyServer

    encoder = CountingEncoder()
    config, backend = tiny_backend(qvl_host, encoder, "task.record.canvas=32", "task.rollout.episodes=2",
                                   "task.rollout.max_steps=12", "task.rollout.control_period_s=0.005")
    with PolicyServer(backend) as server:
        import attrs

        config = attrs.evolve(config, task=attrs.evolve(
            config.task, rollout=attrs.evolve(config.task.rollout, server=server.url)))
        results = run_rollouts(config, None, policies=["model"], keep_frames=1, progress=False)
    played = results["model"]
    assert [r.seed for r in played] == [1_000_000, 1_000_001]
    assert all(0 < r.steps <= 12 for r in played) and len(played[0].frames) == played[0].steps + 1
    assert backend.opened == 1 and encoder.calls  # one session for the run, reset per episode


def test_acting_refuses_a_policy_trained_on_jointly_encoded_windows(qvl_host):
    from qvl.config import load_config

    config = load_config(qvl_host.task("vla_flow"), overrides=("task.encoding=joint",))
    with pytest.raises(qvl.UserError, match="task.encoding = 'joint'"):
        PolicySession.for_run(config, tiny_policy(), encode=CountingEncoder())


def test_the_validate_wrapper_leaves_other_tasks_results_alone(qvl_host):
    from qvl.config import load_config

    from qvl_vla_flow import plugin

    # hook API 4: the core does not call vla_flow's wrapper for another task at all
    assert "vla_flow" not in qvl_host.hooks.callers_for(qvl_host.task("colors"))
    assert "vla_flow" in qvl_host.hooks.callers_for(qvl_host.task("vla_flow"))
    config = load_config(qvl_host.task("vla_flow"))
    wrapper = plugin.validate(task=plugin.TASK, config=config, head=None, accelerator=None, out_dir=None)
    next(wrapper)  # without a head (a run whose policy is not built yet) the results pass through
    with pytest.raises(StopIteration) as done:
        wrapper.send({"val/loss": 1.5})
    assert done.value.value == {"val/loss": 1.5}


@needs_sim
def test_rollout_through_a_server_refuses_bad_urls_and_a_mismatched_policy(qvl_host):
    from qvl_vla_flow.rollout import run_rollouts
    from qvl_vla_flow.server import PolicyServer

    encoder = CountingEncoder()
    config, backend = tiny_backend(qvl_host, encoder, "task.record.canvas=32", "task.rollout.episodes=1")

    def with_server(url):
        import attrs

        return attrs.evolve(config, task=attrs.evolve(config.task, rollout=attrs.evolve(config.task.rollout,
                                                                                          server=url)))

    with pytest.raises(qvl.UserError, match="expected a websocket URL"):
        run_rollouts(with_server("localhost:8765"), None, policies=["model"], progress=False)
    backend.metadata["frame_skip"] = 3  # trained with another window
    with PolicyServer(backend) as server:
        with pytest.raises(qvl.UserError, match=r"does not match this run's settings .*'frame_skip': \(3, 2\)"):
            run_rollouts(with_server(server.url), None, policies=["model"], progress=False)
