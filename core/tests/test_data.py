"""qvl.data: splits, digests, image-folder inputs, the JSON Lines reader, atomic writes."""

import hashlib
import json
import subprocess
import sys

import attrs
import pytest

from qvl.data import (
    IMAGE_SUFFIXES,
    SPLITS,
    assign_split,
    digest,
    hash_position,
    held_out_counts,
    image_files,
    read_lines,
    read_objects,
    settings_fingerprint,
    split_items,
    write_json,
    write_jsonl,
    write_text,
)
from qvl.errors import UserError

IDS = [f"episode_{i:06d}" for i in range(5000)]


def test_import_qvl_data_imports_neither_torch_nor_numpy():
    code = "import sys, qvl.data; print('torch' in sys.modules, 'numpy' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split() == \
        ["False", "False"]


# -- splits ------------------------------------------------------------------------------------


def test_assign_split_is_stable_and_follows_the_shares():
    shares = {"val": 0.1, "test": 0.2}
    first = [assign_split(i, shares) for i in IDS]
    assert first == [assign_split(i, shares) for i in IDS]  # a function of the id alone
    assert first[:10] == ["train"] * 6 + ["test", "train", "val", "val"]  # pinned: the same on every machine
    counts = {s: first.count(s) for s in SPLITS}
    assert abs(counts["val"] / len(IDS) - 0.1) < 0.015 and abs(counts["test"] / len(IDS) - 0.2) < 0.02
    # a salt (the seed) gives another assignment in the same shares
    salted = [assign_split(i, shares, salt="3") for i in IDS]
    assert salted != first and abs(salted.count("test") / len(IDS) - 0.2) < 0.02
    # a larger test share keeps every test id in test
    grown = [assign_split(i, {"val": 0.1, "test": 0.3}) for i in IDS]
    assert all(b == "test" for a, b in zip(first, grown) if a == "test") and grown.count("test") > first.count("test")


def test_crc32_percent_buckets_resolve_shares_to_whole_percents():
    order = ("train", "val", "test")
    ids = [f"{f:02d}/pcd{n:04d}" for f in range(1, 11) for n in range(100 * f, 100 * f + 100)]
    # 0.7 + 0.2 = 0.8999999999999999 and 0.1 + 0.2 = 0.30000000000000004 still end at buckets 90 and 30
    for ratios in ([0.7, 0.2, 0.1], [0.1, 0.2, 0.7], [0.8, 0.1, 0.1]):
        shares = dict(zip(order, ratios))
        chosen = [assign_split(i, shares, order=order, method="crc32-percent") for i in ids]
        for split, ratio in shares.items():
            assert abs(chosen.count(split) / len(ids) - ratio) < 0.04
    assert {assign_split(i, {"train": 1, "val": 0}, order=order, method="crc32-percent") for i in ids} == {"train"}


def test_split_items_by_hash_keeps_splits_when_items_come_and_go():
    before = split_items(IDS[:1000], 0.1, 0.2)
    after = split_items(IDS, 0.1, 0.2)
    for split in SPLITS:
        assert set(before[split]) <= set(after[split])
        assert before[split] == sorted(before[split])  # the items' order is kept
    assert sorted(sum(after.values(), [])) == IDS
    with pytest.raises(UserError, match=r"task.val_fraction 0.5 and task.test_fraction 0.5: .*sum below 1"):
        split_items(IDS, 0.5, 0.5)
    with pytest.raises(ValueError, match="unique"):
        split_items(["a", "a"], 0.1, 0.1)


@pytest.mark.parametrize("count", range(0, 12))
def test_fill_empty_gives_every_asked_for_split_an_item(count):
    names = [f"x{i}" for i in range(count)]
    splits = split_items(names, 0.1, 0.2, fill_empty=True)
    assert sorted(sum(splits.values(), [])) == sorted(names)
    if count:
        assert splits["train"]
    if count >= 3:
        assert splits["val"] and splits["test"]
    assert split_items(names, 0.0, 0.2, fill_empty=True)["val"] == []


def test_spread_split_takes_evenly_spread_positions_in_the_given_order():
    items = list(range(20))
    splits = split_items(items, 0.25, 0.25, method="spread")
    assert splits == {"train": [0, 3, 4, 7, 8, 11, 12, 15, 16, 19], "val": [1, 5, 9, 13, 17], "test": [2, 6, 10, 14, 18]}
    assert held_out_counts(3, 0.1, 0.15) == (1, 1) and held_out_counts(2, 0.1, 0.15) == (0, 0)
    assert held_out_counts(4, 0.5, 0.4) == (1, 2)  # train keeps one, the larger share gives way first
    assert held_out_counts(0, 0.1, 0.1) == (0, 0)


def test_hash_position_is_sha256_of_the_salted_id():
    expected = int.from_bytes(hashlib.sha256(b"7\0ep1").digest()[:8], "big") / 2.0**64
    assert hash_position("ep1", salt="7") == expected and 0 <= hash_position("ep1") < 1


# -- digest ------------------------------------------------------------------------------------


def test_digest_is_stable_and_names_the_old_cache_folders():
    value = {"b": [1, 2], "a": {"y": 1.5, "x": "s"}}
    old = hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]
    assert digest(value) == old == digest({"a": {"x": "s", "y": 1.5}, "b": [1, 2]})  # key order does not count
    assert digest(value) == "8bdf61d2eb06612b"  # pinned: a change here renames every cache folder
    assert digest(value, 10, algorithm="sha1") == hashlib.sha1(json.dumps(value, sort_keys=True).encode()).hexdigest()[:10]
    assert digest(b"raw") == hashlib.sha256(b"raw").hexdigest()[:16]
    assert len(digest(value, 32)) == 32 and digest({**value, "c": 0}) != digest(value)


def test_settings_fingerprint_is_every_field_with_the_seed():
    @attrs.define
    class Settings:
        episodes: int = 4
        size: list = attrs.field(factory=lambda: [64, 64])
        video: bool = False

    assert settings_fingerprint(Settings(), format="toy", seed=3, version=2) == {
        "format": "toy", "version": 2, "seed": 3, "episodes": 4, "size": [64, 64], "video": False}
    assert settings_fingerprint(Settings(), format="toy", exclude=["video"], generator="g1") == {
        "format": "toy", "episodes": 4, "size": [64, 64], "generator": "g1"}


# -- image folders -----------------------------------------------------------------------------


def test_image_files_of_a_folder_by_name_and_the_errors(tmp_path):
    from PIL import Image

    for name in ("b.PNG", "a.jpg", "notes.txt"):
        Image.new("RGB", (4, 4)).save(tmp_path / name, format="PNG")
    assert [p.name for p in image_files(tmp_path)] == ["a.jpg", "b.PNG"]
    assert image_files(tmp_path / "notes.txt") == [tmp_path / "notes.txt"]  # a file is taken as it is
    with pytest.raises(UserError, match="predict.input = 'x': no such file or folder"):
        image_files(tmp_path / "missing", what="predict.input = 'x'")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match=r"empty: no image files \(\.bmp, \.jpeg, \.jpg, \.png, \.webp\)"):
        image_files(tmp_path / "empty")
    assert IMAGE_SUFFIXES == tuple(sorted(IMAGE_SUFFIXES))


# -- JSON Lines --------------------------------------------------------------------------------


def test_jsonl_errors_name_the_file_the_line_and_the_field(tmp_path):
    path = tmp_path / "episodes.jsonl"
    path.write_text('{"id": "a", "n": 3}\n\n{"id": "b", "n": true}\n', encoding="utf-8")
    lines = read_lines(path)
    assert [line.number for line in lines] == [1, 3]
    assert lines[0].value("n", int, "a count") == 3
    with pytest.raises(UserError) as caught:
        lines[1].value("n", int, "a count")  # a boolean is not a number
    assert str(caught.value) == f"{path}, line 3, field 'n': expected a count, got True"
    with pytest.raises(UserError, match=r"line 3, field 'size': missing; expected a size"):
        lines[1].value("size", lambda v: v > 0, "a size")
    with pytest.raises(UserError, match=r"line 1, field 'id': expected one of x, y, got 'a'"):
        lines[0].value("id", lambda v: v in ("x", "y"), "one of x, y")

    path.write_text('{"id": "a"}\n[1, 2]\n', encoding="utf-8")
    with pytest.raises(UserError, match=r"episodes.jsonl, line 2: expected a JSON object, got list"):
        read_objects(path)
    path.write_text('{"id": "a"}\n{"id": \n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"episodes.jsonl, line 2: not valid JSON"):
        read_lines(path, error=ValueError)
    with pytest.raises(UserError, match="missing"):
        read_objects(tmp_path / "none.jsonl")


def test_qvl_jsonl_still_exports_read_objects():
    from qvl.jsonl import read_objects as old_name

    assert old_name is read_objects


# -- atomic writes -----------------------------------------------------------------------------


def test_atomic_writes_give_exactly_the_old_bytes(tmp_path):
    data = {"b": [1, 2], "a": "é"}
    assert write_json(tmp_path / "x.json", data, indent=2).read_text() == json.dumps(data, indent=2)
    write_json(tmp_path / "y.json", data, indent=1, sort_keys=True, default=str)
    assert (tmp_path / "y.json").read_text() == json.dumps(data, indent=1, sort_keys=True)
    write_jsonl(tmp_path / "z.jsonl", [{"a": 1}, {"b": 2}])
    assert (tmp_path / "z.jsonl").read_text() == '{"a": 1}\n{"b": 2}\n'
    write_text(tmp_path / "t.txt", "line\r\n")
    assert (tmp_path / "t.txt").read_bytes() == b"line\r\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.txt", "x.json", "y.json", "z.jsonl"]  # no leftovers


def test_atomic_writer_leaves_the_old_file_intact_when_writing_fails_midway(tmp_path):
    path = tmp_path / "predictions.jsonl"
    write_jsonl(path, [{"old": 1}])

    def rows():
        yield {"new": 1}
        yield {"new": 2}
        raise RuntimeError("killed midway")

    with pytest.raises(RuntimeError, match="killed midway"):
        write_jsonl(path, rows())
    assert path.read_text() == '{"old": 1}\n'
    with pytest.raises(TypeError):
        write_json(tmp_path / "predictions.jsonl", {"not json": object()})
    assert path.read_text() == '{"old": 1}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["predictions.jsonl"]  # the temporary files are gone


def test_the_core_names_plugins_reached_into_are_public():
    import qvl.chat
    import qvl.lerobot
    from qvl.lerobot import layout

    assert qvl.lerobot.read_jsonl is layout.read_jsonl and qvl.lerobot.read_parquet is layout.read_parquet
    assert qvl.lerobot.parse_range("2:5", "task.splits.val") == [2, 3, 4]
    assert qvl.chat._language_model_parts is qvl.chat.language_model_parts  # the old name still works
    assert {"read_jsonl", "read_parquet", "read_json", "parse_range"} <= set(qvl.lerobot.__all__)
