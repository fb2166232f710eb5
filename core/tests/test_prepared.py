"""The prepared-sample cache: built once, arrays and metadata back, rebuilt when a source changes."""

import numpy as np
import pytest

from qvl.prepared import files_fingerprint, prepare_samples, size_on_disk


def _sources(tmp_path, n=5):
    paths = []
    for i in range(n):
        path = tmp_path / "src" / f"{i}.bin"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(bytes([i]) * (4 + i))
        paths.append(path)
    return paths


def test_prepared_once_read_back_and_rebuilt_when_a_source_changes(tmp_path, capsys):
    paths = _sources(tmp_path)
    calls = []

    def prepare(i):
        calls.append(i)
        data = np.frombuffer(paths[i].read_bytes(), np.uint8)
        return {"pixels": np.tile(data[:4], (2, 1)), "label": np.array([i], np.int64)}, {"id": f"s{i}", "n": len(data)}

    def build():
        return prepare_samples(len(paths), prepare, fingerprint={"files": files_fingerprint(paths), "size": 4},
                               name="toy", root=tmp_path / "cache", progress=False)

    samples = build()
    assert calls == [0, 1, 2, 3, 4] and len(samples) == 5
    assert f"qvl: prepared 5 samples (toy): {size_on_disk(samples) / 1e6:.1f} MB in" in capsys.readouterr().err
    third = samples[2]
    assert third["id"] == "s2" and third["n"] == 6 and third["label"].tolist() == [2]
    assert third["pixels"].dtype == np.uint8 and third["pixels"].tolist() == [[2] * 4] * 2
    assert samples["s4"]["n"] == 8 and size_on_disk(samples) > 0
    again = build()
    assert calls == [0, 1, 2, 3, 4] and again.folder == samples.folder  # reused, not prepared again
    paths[1].write_bytes(b"\x09" * 9)
    changed = build()
    assert changed.folder != samples.folder and changed[1]["n"] == 9 and calls[5:] == [0, 1, 2, 3, 4]


def test_a_sample_without_an_id_is_refused(tmp_path):
    with pytest.raises(ValueError, match="must return the sample's 'id'"):
        prepare_samples(1, lambda i: ({"x": np.zeros(1)}, {}), fingerprint={}, name="bad", root=tmp_path,
                        progress=False)
    assert not any((tmp_path).glob("bad-*"))  # nothing half-built was kept
