"""A LeRobot data set named by its hub id as the trajectory store."""

import pytest


def test_a_hub_data_set_id_is_the_store_and_make_data_refuses_to_write_there(qvl_host, tmp_path, monkeypatch):
    from qvl.config import load_config
    from qvl.errors import UserError
    from qvl_vqa import data

    config = load_config(qvl_host.task("vqa"), [], ["task.repo_id='lab/trajectories'"])
    monkeypatch.setattr("qvl.lerobot.hub.hub_dataset", lambda repo_id, revision: tmp_path / repo_id.replace("/", "--"))
    assert data.store_root(config, create=True) == tmp_path / "lab--trajectories"
    with pytest.raises(UserError, match="make-data writes the synthetic data set, but task.repo_id"):
        data.make_data(config)
