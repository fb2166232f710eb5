"""A user error raised in a DataLoader worker still reaches the user as its one line."""

import pytest
import torch

from qvl import UserError
from qvl.cli import user_message


class BrokenSamples(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int) -> int:
        raise UserError(f"/data/store/frames/t{index}.npz: truncated (row 3)")


def test_the_workers_traceback_is_reduced_to_the_users_line():
    loader = torch.utils.data.DataLoader(BrokenSamples(), batch_size=2, num_workers=1)
    with pytest.raises(UserError) as caught:
        next(iter(loader))
    assert "Original Traceback" in str(caught.value)  # what torch re-raises in the main process
    assert user_message(caught.value) == "/data/store/frames/t0.npz: truncated (row 3)"
    assert user_message(UserError("plain: one line")) == "plain: one line"
