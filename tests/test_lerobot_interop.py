"""qvl.lerobot against the real ``lerobot`` package (0.6.1), both directions. Run with ``QVL_INTEROP=1``.

lerobot 0.6.1 needs Python >= 3.12 and torch < 2.12, so it lives in its own virtual environment,
built once under ``$QVL_CACHE/interop/`` (several minutes and a few GB on first use: the PyPI
torch wheel is the CUDA build, which runs on the CPU; set ``QVL_INTEROP_TORCH_INDEX`` to a CPU
wheel index where one is reachable). qvl-core is installed into it from ./core, editable and
without its training dependencies (transformers, peft...), which reading and writing data sets
do not use and which would only fight lerobot's pins.

* qvl writes -> lerobot reads: ``LeRobotDataset(repo_id, root=...)`` gives the labels and actions
  we wrote exactly, the task text of each frame, and video frames bit-identical to what our
  reader decodes from the same files (video is lossy: what was encoded is not what anyone decodes).
* lerobot writes (``create`` + ``add_frame`` + ``save_episode`` + ``finalize``) -> qvl reads the
  same frames, labels and tasks that lerobot itself reads back.

Both sides decode with PyAV (lerobot's ``video_backend="pyav"``): torchcodec needs a system FFmpeg.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import textwrap
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
LEROBOT = "lerobot[dataset]==0.6.1"
TORCH = "torch<2.12"
QVL_RUNTIME = ["pluggy>=1.5", "attrs>=24.1", "cattrs>=24.1", "filelock>=3.12", "tomli-w>=1.0"]

pytestmark = [
    pytest.mark.skipif(os.environ.get("QVL_INTEROP") != "1", reason="set QVL_INTEROP=1 (builds a Python 3.12 "
                       "venv with lerobot 0.6.1 once; needs the network)"),
    pytest.mark.slow,
]


def _python312() -> str | None:
    candidates = [os.environ.get("QVL_PYTHON312"), shutil.which("python3.12"),
                  *sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.12*/bin/python3.12")))]
    # a pyenv shim exists whether or not its version is active: keep the first that runs
    return next((c for c in candidates if c and Path(c).is_file() and _runs(c)), None)


def _runs(python: str) -> bool:
    try:
        return subprocess.run([python, "-c", "import sys; assert sys.version_info >= (3, 12)"],
                              capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.fixture(scope="session")
def lerobot_python() -> Path:
    """The Python of a venv with lerobot 0.6.1 and qvl-core (editable, from ./core); built once."""
    from qvl import cache_dir

    python312 = _python312()
    if python312 is None:
        pytest.skip("no python3.12 found (lerobot 0.6.1 needs Python >= 3.12); set QVL_PYTHON312")
    home = cache_dir() / "interop" / "lerobot-0.6.1-py3.12"
    venv = home / "venv"
    python = venv / "bin" / "python"
    wanted = json.dumps({"python": python312, "lerobot": LEROBOT, "torch": TORCH, "qvl": QVL_RUNTIME,
                         "core": str(ROOT / "core")})
    stamp = home / "ready.json"
    if stamp.is_file() and stamp.read_text() == wanted and python.is_file():
        return python
    home.mkdir(parents=True, exist_ok=True)
    log = home / "install.log"

    def run(*args: str) -> None:
        with log.open("a") as out:
            out.write(f"$ {' '.join(args)}\n")
            out.flush()
            done = subprocess.run(args, stdout=out, stderr=subprocess.STDOUT, timeout=3600)
        if done.returncode:
            tail = log.read_text().splitlines()[-15:]
            pytest.fail(f"installing lerobot failed ({' '.join(args[:6])}...); see {log}:\n" + "\n".join(tail))

    if not python.is_file():
        run(python312, "-m", "venv", str(venv))
    torch_index = os.environ.get("QVL_INTEROP_TORCH_INDEX")
    run(str(python), "-m", "pip", "install", "-q", LEROBOT, TORCH,
        *(["--extra-index-url", torch_index] if torch_index else []))
    run(str(python), "-m", "pip", "install", "-q", *QVL_RUNTIME)
    run(str(python), "-m", "pip", "install", "-q", "--no-deps", "-e", str(ROOT / "core"))
    stamp.write_text(wanted)
    return python


def _run(python: Path, script: str, *args: str) -> str:
    done = subprocess.run([str(python), "-c", textwrap.dedent(script), *args], capture_output=True, text=True,
                          timeout=900, env={**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"})
    assert done.returncode == 0, done.stderr[-4000:]
    return done.stdout


# Runs in the lerobot venv: every frame of a data set as LeRobot reads it -> npz
LEROBOT_READS = """
import sys, numpy as np
from lerobot.datasets.lerobot_dataset import LeRobotDataset
root, out = sys.argv[1], sys.argv[2]
ds = LeRobotDataset("local/interop", root=root, video_backend="pyav", return_uint8=True)
cameras = list(ds.meta.camera_keys)  # video and image features
items = [ds[i] for i in range(len(ds))]
arrays = {f"cam/{c}": np.stack([it[c].numpy() for it in items]) for c in cameras}
for key in ("action", "reward_bins", "episode_index", "frame_index", "index", "timestamp", "task_index"):
    arrays[key] = np.stack([it[key].numpy() for it in items])
np.savez(out, tasks=np.array([it["task"] for it in items]), cameras=np.array(cameras), **arrays)
print(len(items), ds.meta.total_episodes, sorted(ds.meta.stats))
"""

# Runs in the lerobot venv: LeRobot's own writer
LEROBOT_WRITES = """
import sys, numpy as np
from lerobot.datasets.lerobot_dataset import LeRobotDataset
root = sys.argv[1]
features = {
    "observation.images.top": {"dtype": "video", "shape": (48, 64, 3), "names": ["height", "width", "channels"]},
    "observation.images.wrist": {"dtype": "video", "shape": (32, 32, 3), "names": ["height", "width", "channels"]},
    "action": {"dtype": "float32", "shape": (2,), "names": None},
    "reward_bins": {"dtype": "float32", "shape": (3,), "names": None},
}
ds = LeRobotDataset.create("local/interop", fps=10, features=features, root=root, use_videos=True)
rng = np.random.default_rng(1)
for episode in range(3):
    for frame in range(7):
        grey = 20 + 30 * episode + 5 * frame
        top = np.clip(np.full((48, 64, 3), grey) + rng.integers(-8, 8, size=(48, 64, 3)), 0, 255).astype(np.uint8)
        wrist = np.full((32, 32, 3), 200 - grey, np.uint8)
        bins = np.eye(3, dtype=np.float32)[frame % 3]
        ds.add_frame({"observation.images.top": top, "observation.images.wrist": wrist,
                      "action": np.array([episode + frame / 10, -frame], np.float32), "reward_bins": bins,
                      "task": f"stack the cups {episode % 2}"})
    ds.save_episode()
ds.finalize()
print("written")
"""


# Runs in the lerobot venv: LeRobot's writer with cameras as image features (use_videos=False):
# each frame's PNG inside the data parquet files
LEROBOT_WRITES_IMAGES = """
import sys, numpy as np
from lerobot.datasets.lerobot_dataset import LeRobotDataset
root = sys.argv[1]
features = {
    "observation.images.top": {"dtype": "image", "shape": (24, 32, 3), "names": ["height", "width", "channels"]},
    "action": {"dtype": "float32", "shape": (2,), "names": None},
}
ds = LeRobotDataset.create("local/interop", fps=10, features=features, root=root, use_videos=False)
rng = np.random.default_rng(2)
for episode in range(2):
    for frame in range(4):
        top = rng.integers(0, 256, size=(24, 32, 3)).astype(np.uint8)
        ds.add_frame({"observation.images.top": top, "action": np.array([episode, frame], np.float32),
                      "task": "look"})
    ds.save_episode()
ds.finalize()
print("written")
"""


def _qvl_reads(root: Path, cameras: list[str], episodes: np.ndarray, timestamps: np.ndarray) -> dict[str, np.ndarray]:
    """Frames of the same (episode, timestamp) rows as our reader decodes them, in LeRobot's C x H x W."""
    from qvl.lerobot import LeRobotDataset

    source = LeRobotDataset(root)
    frames = {c: np.stack([np.asarray(source.image(int(e), c, float(t))).transpose(2, 0, 1)
                           for e, t in zip(episodes, timestamps)]) for c in cameras}
    source.close()
    return frames


def _recordings() -> list:
    from qvl.lerobot import Recording

    rng = np.random.default_rng(0)
    recordings = []
    for episode in range(4):
        length = 5 + episode
        base = rng.integers(0, 256, size=(6, 8, 3)).repeat(8, 0).repeat(8, 1).astype(np.uint8)
        frames = {"observation.images.top": [np.roll(base, 4 * i, axis=1) for i in range(length)],
                  "observation.images.wrist": [np.full((32, 48, 3), 10 * episode + 7 * i, np.uint8)
                                               for i in range(length)]}
        columns = {"action": rng.normal(size=(length, 2)).astype(np.float32),
                   "reward_bins": np.eye(3, dtype=np.float32)[[i % 3 for i in range(length)]]}
        recordings.append(Recording(task=f"open drawer {episode % 3}", frames=frames, columns=columns))
    return recordings


def test_lerobot_reads_what_qvl_writes(lerobot_python, tmp_path):
    from qvl.build import build_directory
    from qvl.lerobot import append_episodes, write_dataset

    recordings = _recordings()
    root = build_directory(tmp_path / "qvl-written",
                           lambda out: write_dataset(out, recordings[:3], 10, episodes_per_file=2), kind="dataset")
    append_episodes(root, recordings[3:])  # lerobot must read an appended data set too
    out = tmp_path / "lerobot-read.npz"
    printed = _run(lerobot_python, LEROBOT_READS, str(root), str(out))
    assert printed.split()[:2] == ["26", "4"], printed
    got = np.load(out)
    expected_action = np.concatenate([r.columns["action"] for r in recordings])
    expected_bins = np.concatenate([r.columns["reward_bins"] for r in recordings])
    assert np.array_equal(got["action"], expected_action) and got["action"].dtype == np.float32
    assert np.array_equal(got["reward_bins"], expected_bins)
    assert got["index"].tolist() == list(range(26))
    assert list(got["tasks"]) == [r.task for r in recordings for _ in range(r.length)]
    ours = _qvl_reads(root, list(got["cameras"]), got["episode_index"], got["timestamp"])
    for camera in got["cameras"]:
        assert got[f"cam/{camera}"].dtype == np.uint8
        assert np.array_equal(got[f"cam/{camera}"], ours[camera]), camera


def test_qvl_reads_what_lerobot_writes(lerobot_python, tmp_path):
    from qvl.lerobot import LeRobotDataset

    root = tmp_path / "lerobot-written"
    _run(lerobot_python, LEROBOT_WRITES, str(root))
    out = tmp_path / "lerobot-read.npz"
    _run(lerobot_python, LEROBOT_READS, str(root), str(out))
    got = np.load(out)

    source = LeRobotDataset(root)
    assert source.version == "v3.0" and [e.index for e in source.episodes] == [0, 1, 2]
    tasks = source.tasks()
    rows = [row for episode in source.episodes
            for row in source.frame_table(episode, ["action", "reward_bins", "task_index", "timestamp", "index"])]
    assert np.array_equal(np.array([r["action"] for r in rows], np.float32), got["action"])
    assert np.array_equal(np.array([r["reward_bins"] for r in rows], np.float32), got["reward_bins"])
    assert [r["index"] for r in rows] == got["index"].tolist()
    assert [tasks[r["task_index"]] for r in rows] == list(got["tasks"])
    assert source.stats() is not None and "action" in source.stats()
    ours = _qvl_reads(root, list(got["cameras"]), got["episode_index"], got["timestamp"])
    for camera in got["cameras"]:
        assert np.array_equal(got[f"cam/{camera}"], ours[camera]), camera
    # and the frames are the ones written (within codec tolerance): the wrist camera is flat grey
    wrist = ours["observation.images.wrist"].reshape(len(rows), -1).mean(axis=1)
    expected = [200 - (20 + 30 * (i // 7) + 5 * (i % 7)) for i in range(len(rows))]
    assert np.abs(wrist - expected).max() < 3


def test_qvl_reads_image_features_as_lerobot_writes_them(lerobot_python, tmp_path):
    from qvl.lerobot import LeRobotDataset

    root = tmp_path / "lerobot-images"
    _run(lerobot_python, LEROBOT_WRITES_IMAGES, str(root))
    out = tmp_path / "lerobot-read.npz"
    _run(lerobot_python, LEROBOT_READS.replace('"reward_bins", ', ""), str(root), str(out))
    got = np.load(out)
    source = LeRobotDataset(root)
    assert source.image_keys == ("observation.images.top",) and source.video_keys == ()
    assert list(got["cameras"]) == ["observation.images.top"] and len(got["index"]) == 8
    ours = _qvl_reads(root, ["observation.images.top"], got["episode_index"], got["timestamp"])
    theirs = got["cam/observation.images.top"]
    if theirs.dtype != np.uint8:  # image features may come back as floats in [0, 1]
        theirs = np.round(theirs * 255).astype(np.uint8)
    # PNG is lossless: the same pixels on both sides
    assert np.array_equal(theirs, ours["observation.images.top"])
