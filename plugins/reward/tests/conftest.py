import numpy as np
import pytest

from qvl.lerobot import Recording

CAMERAS = ("observation.images.cam_high", "observation.images.cam_left_wrist", "observation.images.cam_right_wrist")


def flat_frames(episode: int, length: int, camera_offset: int) -> list:
    """Frames whose grey level encodes (episode, frame, camera): a decoded frame can be identified."""
    return [np.full((48, 64, 3), 20 + 30 * episode + 5 * frame + camera_offset, np.uint8) for frame in range(length)]


@pytest.fixture
def recordings():
    """Four episodes of 6 frames, two tasks, one-hot reward_bins of 3 classes (frame // 2)."""
    result = []
    for episode in range(4):
        frames = {camera: flat_frames(episode, 6, 2 * i) for i, camera in enumerate(CAMERAS)}
        bins = [[1.0 if k == frame // 2 else 0.0 for k in range(3)] for frame in range(6)]
        result.append(Recording(task=f"task {episode % 2}", frames=frames, columns={"reward_bins": bins}))
    return result
