import math

import pytest
from PIL import Image

from qvl_grasp.readers import GraspDataError, read_corner_file, read_split


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def png(path, size=(64, 48), mode="RGB", color=(120, 80, 40)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color).save(path)
    return path


RECT = "10 20\n50 20\n50 40\n10 40\n"
TILTED = "100.5 200.25\n120.5 180.25\n130.5 190.25\n110.5 210.25\n"


@pytest.fixture
def ocid(tmp_path):
    root = tmp_path / "OCID_grasp"
    seq = root / "ARID20" / "table" / "top" / "seq08"
    png(seq / "rgb" / "result_1.png")
    png(seq / "seg_mask_labeled_combi" / "result_1.png", mode="L", color=0)
    write(seq / "Annotations" / "result_1.txt", RECT + TILTED)
    png(seq / "rgb" / "result_2.png")
    write(seq / "Annotations" / "result_2.txt", RECT)
    write(root / "data_split" / "training_0.txt", "ARID20/table/top/seq08,result_1.png\n")
    write(root / "data_split" / "validation_0.txt", "ARID20/table/top/seq08,result_2.png\n\n")
    return root


SPLITS = {"train": "training_0.txt", "val": "validation_0.txt"}


def test_ocid_reader_reads_images_rectangles_and_masks(ocid):
    train = read_split("ocid", ocid, "train", SPLITS)
    assert len(train) == 1
    sample = train[0]
    assert sample["id"] == "ARID20/table/top/seq08/result_1.png"
    assert sample["image"].size == (64, 48) and sample["mask"].shape == (48, 64) and not sample["mask"].any()
    first, second = sample["grasps"]
    assert (first.cx, first.cy, first.theta, first.w, first.h) == pytest.approx((30, 30, 0, 40, 20))
    assert second.theta == pytest.approx(45) and second.w == pytest.approx(math.hypot(20, 20))
    assert (second.cx, second.cy) == pytest.approx((115.5, 195.25))
    val = read_split("ocid", ocid, "val", SPLITS)
    assert len(val) == 1 and val[0]["mask"] is None  # no mask file: None, not an error


def test_cornell_reader_skips_nan_rectangles(tmp_path):
    root = tmp_path / "cornell"
    folder = root / "01"
    for index in range(100, 140):  # enough files that every hash split gets some
        png(folder / f"pcd{index:04d}r.png")
        write(folder / f"pcd{index:04d}cpos.txt", RECT + "NaN NaN\n1 2\n3 4\n5 6\n" + TILTED)
    splits = {split: read_split("cornell", root, split, {}) for split in ("train", "val", "test")}
    assert sum(len(s) for s in splits.values()) == 40
    assert all(len(s) > 0 for s in splits.values())
    sample = splits["train"][0]
    assert len(sample["grasps"]) == 2 and sample["mask"] is None
    ids = [r.id for s in splits.values() for r in s.records]
    assert len(set(ids)) == 40  # every image in exactly one split


def test_jacquard_reader_negates_the_clockwise_angle(tmp_path):
    root = tmp_path / "jacquard"
    for index in range(30):
        png(root / "obj" / f"{index}_abc_RGB.png")
        png(root / "obj" / f"{index}_abc_mask.png", mode="L", color=255)
        write(root / "obj" / f"{index}_abc_grasps.txt", "100;200;30;40;10\n120.5;210;-100;30;12\n")
    records = [r for split in ("train", "val", "test") for r in read_split("jacquard", root, split, {}).records]
    assert len(records) == 30
    a, b = records[0].grasps
    assert (a.cx, a.cy, a.theta, a.w, a.h) == pytest.approx((100, 200, -30, 40, 10))
    assert b.theta == pytest.approx(-80)  # +100 clockwise -> -100 -> folded


def test_missing_image_names_the_split_file_line_and_image(ocid):
    (ocid / "ARID20/table/top/seq08/rgb/result_2.png").unlink()
    with pytest.raises(GraspDataError, match=r"validation_0\.txt, line 1: image .*result_2\.png does not exist"):
        read_split("ocid", ocid, "val", SPLITS)


def test_odd_number_of_corner_lines_names_file_and_line(tmp_path):
    path = write(tmp_path / "a.txt", RECT + "1 2\n3 4\n")
    with pytest.raises(GraspDataError, match=r"a\.txt, line 5: incomplete rectangle; 6 corner lines"):
        read_corner_file(path)


def test_nan_corner_in_ocid_names_file_and_line(ocid):
    write(ocid / "ARID20/table/top/seq08/Annotations/result_1.txt", RECT + "1 2\nnan 4\n5 6\n7 8\n")
    with pytest.raises(GraspDataError, match=r"result_1\.txt, line 6: NaN corner in the rectangle of lines 5-8"):
        read_split("ocid", ocid, "train", SPLITS)


def test_malformed_corner_line_names_file_and_line(tmp_path):
    path = write(tmp_path / "b.txt", "1 2\n3 4 5\n")
    with pytest.raises(GraspDataError, match=r"b\.txt, line 2: expected one corner 'x y' .*'3 4 5'"):
        read_corner_file(path)


def test_unreadable_png_names_the_file(ocid):
    (ocid / "ARID20/table/top/seq08/rgb/result_1.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    dataset = read_split("ocid", ocid, "train", SPLITS)
    sample = dataset[0]  # pixels are decoded when read
    with pytest.raises(GraspDataError, match=r"result_1\.png: not a readable image"):
        sample["image"]


def test_bad_split_line_and_missing_split_file(ocid):
    write(ocid / "data_split" / "training_0.txt", "ARID20/table/top/seq08 result_1.png\n")
    with pytest.raises(GraspDataError, match=r"training_0\.txt, line 1: expected 'seq_path,image_name'"):
        read_split("ocid", ocid, "train", SPLITS)
    with pytest.raises(GraspDataError, match=r"nope\.txt: no such OCID-Grasp split file; available: training_0"):
        read_split("ocid", ocid, "train", {"train": "nope.txt"})


def test_unknown_format_in_the_config_is_a_config_error_naming_the_key(qvl_host):
    from qvl.config import ConfigError, load_config

    with pytest.raises(ConfigError) as caught:
        load_config(qvl_host.task("grasp"), [], ["task.data_format='coco'", "task.target='best'"])
    text = "\n".join(caught.value.problems)
    assert "task.data_format: expected one of 'ocid', 'cornell', 'jacquard', got 'coco'" in text
    assert "task.target: expected one of 'central', 'first', 'random', got 'best'" in text


def test_training_reads_no_masks(ocid, monkeypatch, qvl_host):
    from qvl.config import load_config

    from qvl_grasp import readers

    opened = []
    monkeypatch.setattr(readers, "load_mask", lambda path, label=None: opened.append(path))
    task = qvl_host.task("grasp")
    config = load_config(task, overrides=[f"task.data_dir={str(ocid)!r}"])
    train = qvl_host.call("build_dataset", task=task, config=config, split="train")
    assert train[0]["mask"] is None and opened == []
    assert read_split("ocid", ocid, "train", SPLITS)[0]["mask"] is None and len(opened) == 1  # eval reads it


def cornell_set(root, indices, annotation=RECT + TILTED):
    for index in indices:
        png(root / "01" / f"pcd{index:04d}r.png")
        write(root / "01" / f"pcd{index:04d}cpos.txt", annotation)
    return root


NAN_RECT = "NaN NaN\n1 2\n3 4\n5 6\n"


def test_each_read_prints_one_line_of_counts_and_skips_with_their_files(tmp_path, capsys):
    root = cornell_set(tmp_path / "cornell", range(100, 135))
    cornell_set(root, range(135, 140), RECT + NAN_RECT + TILTED)  # 5 files with a NaN rectangle each
    cornell_set(root, [140], NAN_RECT)  # nothing left once its NaN rectangle is dropped
    everything = read_split("cornell", root, "train", {}, split_ratios=[1, 0, 0])
    assert len(everything) == 40
    assert capsys.readouterr().err == (
        "qvl-grasp: grasp data (cornell, train): 40 images, 80 rectangles; skipped 6 rectangles with NaN corners "
        "(pcd0135cpos.txt, pcd0136cpos.txt, pcd0137cpos.txt and 3 more); 1 image with no usable rectangle "
        "(pcd0140cpos.txt)\n")


def test_ocid_read_prints_its_counts(ocid, capsys):
    read_split("ocid", ocid, "train", SPLITS)
    read_split("ocid", ocid, "val", SPLITS)
    assert capsys.readouterr().err.splitlines() == ["qvl-grasp: grasp data (ocid, train): 1 image, 2 rectangles",
                                                    "qvl-grasp: grasp data (ocid, val): 1 image, 1 rectangle"]
    read_split("ocid", ocid, "train", SPLITS, announce=False)  # eval's look at the train split, each validation
    assert capsys.readouterr().err == ""


def test_hash_split_keeps_the_old_80_10_10_and_follows_other_ratios():
    from qvl_grasp.readers import hash_split

    # ids whose crc32 % 100 is 69, 70, 79, 80, 89 and 90
    ids = {69: "img143", 70: "img11", 79: "img55", 80: "img312", 89: "img134", 90: "img51"}
    assert [hash_split(ids[b]) for b in sorted(ids)] == ["train", "train", "train", "val", "val", "test"]
    assert [hash_split(ids[b], [0.7, 0.2, 0.1]) for b in sorted(ids)] == ["train", "val", "val", "val", "val",
                                                                          "test"]
    assert {hash_split(i, [1, 0, 0]) for i in ids.values()} == {"train"}
    assert {hash_split(i, [0, 0, 1.0]) for i in ids.values()} == {"test"}


def test_a_set_too_small_for_its_split_ratios_says_what_to_do(tmp_path):
    root = cornell_set(tmp_path / "cornell", range(100, 103))  # hashed to test, train, train
    assert len(read_split("cornell", root, "train", {})) == 2
    with pytest.raises(GraspDataError) as caught:
        read_split("cornell", root, "val", {})
    message = str(caught.value)
    assert message.startswith(f"task.data_dir = {str(root)!r}: 3 images, too few for task.split_ratios = "
                              "[0.8, 0.1, 0.1]")
    assert "split 'val'" in message and "add images, or set task.split_ratios" in message
    with pytest.raises(GraspDataError, match=r"task.split_ratios = \[0.9, 0.1, 0.0\] gives split 'test' no share"):
        read_split("cornell", root, "test", {}, split_ratios=[0.9, 0.1, 0.0])
    with pytest.raises(GraspDataError, match=r"no jacquard annotation files \(\*_grasps.txt\) in it"):
        read_split("jacquard", root, "train", {})


def test_split_ratios_are_validated_and_reach_the_reader(tmp_path, qvl_host):
    from qvl.config import ConfigError, load_config

    task = qvl_host.task("grasp")
    for bad in ("[0.8, 0.3, 0.1]", "[0.5, 0.5]", "[-0.1, 0.6, 0.5]"):
        with pytest.raises(ConfigError) as caught:
            load_config(task, [], [f"task.split_ratios={bad}"])
        assert caught.value.problems == [f"--set task.split_ratios={bad}: task.split_ratios: must be three "
                                         "non-negative shares [train, val, test] that sum to 1, e.g. [0.8, 0.1, 0.1]; "
                                         f"got {bad}"]
    root = cornell_set(tmp_path / "cornell", range(100, 110))
    config = load_config(task, [], [f"task.data_dir={str(root)!r}", "task.data_format='cornell'",
                                    "task.split_ratios=[0, 1, 0]"])
    assert len(qvl_host.call("build_dataset", task=task, config=config, split="val")) == 10


def test_ground_truth_beside_a_predict_input_is_found_in_each_known_layout(tmp_path, ocid, capsys):
    from qvl_grasp.predict_inputs import annotation_beside, with_ground_truth

    cornell = cornell_set(tmp_path / "cornell", [100], RECT + NAN_RECT)
    assert [g.w for g in annotation_beside(cornell / "01" / "pcd0100r.png")] == pytest.approx([40])
    png(tmp_path / "jacquard" / "1_abc_RGB.png")
    write(tmp_path / "jacquard" / "1_abc_grasps.txt", "100;200;30;40;10\n")
    (jacquard,) = annotation_beside(tmp_path / "jacquard" / "1_abc_RGB.png")
    assert (jacquard.cx, jacquard.theta) == pytest.approx((100, -30))
    seq = ocid / "ARID20" / "table" / "top" / "seq08"
    assert len(annotation_beside(seq / "rgb" / "result_1.png")) == 2
    assert annotation_beside(png(tmp_path / "photos" / "desk.png")) is None

    samples = [{"id": "result_1.png", "grasps": None}, {"id": "result_2.png", "grasps": None}]
    (seq / "Annotations" / "result_2.txt").unlink()
    with_ground_truth(samples, seq / "rgb")
    assert len(samples[0]["grasps"]) == 2 and samples[1]["grasps"] is None
    assert "ground-truth rectangles found beside 1 of 2 input images" in capsys.readouterr().err


def test_hash_split_is_unchanged_by_qvl_data():
    """Cornell- and Jacquard-style ids split as by grasp's own crc32 code before it moved to
    qvl.data.assign_split (the digests were computed with that code, at commit a2fa36d)."""
    import hashlib
    import json
    import random

    from qvl_grasp.readers import hash_split

    ids = [f"{f:02d}/pcd{n:04d}" for f in range(1, 11) for n in range(100 * f, 100 * f + 100)]
    rng = random.Random(0)
    objects = ["".join(rng.choice("0123456789abcdef") for _ in range(32)) for _ in range(300)]
    ids += [f"Jacquard_Dataset_{i % 12}/{o}/{k}_{o}" for i, o in enumerate(objects) for k in range(5)]
    expected = {(0.8, 0.1, 0.1): "29e3c8919f1fb518", (0.7, 0.2, 0.1): "108405913efab30e",
                (0.1, 0.2, 0.7): "42a221803652ccf6"}
    for ratios, digest in expected.items():
        chosen = [hash_split(i, list(ratios)) for i in ids]
        assert hashlib.sha256(json.dumps(chosen).encode()).hexdigest()[:16] == digest, ratios
