"""qvl.features: per-image / per-temporal-group hidden states of a frozen backbone and their disk cache."""

import copy

import pytest
import torch
from PIL import Image

from qvl import UserError
from qvl.backbone import Backbone
from qvl.features import FeatureCache, FeatureSpec, extract, fingerprint, hidden_states_at, tokenize


def _image(width, height, seed):
    generator = torch.Generator().manual_seed(seed)
    pixels = torch.randint(0, 256, (height, width, 3), generator=generator, dtype=torch.uint8)
    return Image.fromarray(pixels.numpy())


SMALL, LARGE = _image(64, 64, 0), _image(128, 96, 1)  # merged grids 2x2 and 3x4 (32-pixel merged tokens)
VIDEO = [_image(64, 64, seed) for seed in range(2, 6)]  # 4 frames: 2 temporal groups


@pytest.mark.parametrize("pooling, tail", [("none", None), ("mean", ()), ("grid:4", (4,)), ("grid:1", (1,))])
def test_shapes_for_each_pooling_on_two_image_sizes_and_a_video(qvl_tiny_backbone, pooling, tail):
    spec = FeatureSpec(pooling=pooling, text="mean")
    inputs = [{"images": [SMALL], "text": "pick"}, {"images": [LARGE, SMALL], "text": "place it"}]
    small, pair = extract(qvl_tiny_backbone, inputs, spec)
    video_spec = FeatureSpec(pooling=pooling, image_size=64)
    video = extract(qvl_tiny_backbone, [{"video": VIDEO, "text": "what"}], video_spec)[0]
    assert small["grid"].tolist() == [[2, 2]]
    assert pair["grid"].tolist() == [[3, 4], [2, 2]]
    assert video["grid"].tolist() == [[2, 2], [2, 2]]  # one item per 2 frames
    for sample, tokens in ((small, 4), (pair, 12 + 4), (video, 4 + 4)):
        items = len(sample["grid"])
        expected = (tokens, 128) if tail is None else (items, *tail, 128)
        assert sample["visual"].shape == expected and sample["visual"].dtype == torch.float32
    assert small["text"].shape == (128,) and "text" not in video


def test_a_batch_gives_each_sample_what_it_gets_alone(qvl_tiny_backbone):
    # causal attention: tokens of a later image see the earlier ones, so per-image features are only
    # independent across samples; right padding keeps a short sample's tokens as they are alone
    spec = FeatureSpec(pooling="none", text="last")
    inputs = [{"images": [LARGE], "text": "a much longer instruction than the other"},
              {"images": [SMALL], "text": "short"}, {"video": VIDEO, "text": "v"}]
    together = extract(qvl_tiny_backbone, inputs, spec)
    for item, batched in zip(inputs, together):
        alone = extract(qvl_tiny_backbone, [item], spec)[0]
        for key in ("visual", "text"):
            torch.testing.assert_close(batched[key], alone[key], atol=1e-5, rtol=1e-5)


def test_mean_and_grid_pooling_are_pools_of_the_tokens(qvl_tiny_backbone):
    inputs = [{"images": [LARGE, SMALL], "text": "x"}]
    tokens = extract(qvl_tiny_backbone, inputs, FeatureSpec(pooling="none"))[0]["visual"]
    large, small = tokens[:12], tokens[12:]
    mean = extract(qvl_tiny_backbone, inputs, FeatureSpec(pooling="mean"))[0]["visual"]
    torch.testing.assert_close(mean, torch.stack([large.mean(0), small.mean(0)]), atol=1e-5, rtol=1e-5)
    grid = extract(qvl_tiny_backbone, inputs, FeatureSpec(pooling="grid:4"))[0]["visual"]
    # the 3x4 grid pools to 2x2 windows: rows {0,1},{1,2} (adaptive overlap), columns {0,1},{2,3}
    raster = large.reshape(3, 4, 128)
    torch.testing.assert_close(grid[0, 0], raster[0:2, 0:2].mean((0, 1)), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(grid[0, 3], raster[1:3, 2:4].mean((0, 1)), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(grid[1], small, atol=1e-5, rtol=1e-5)  # a 2x2 grid is its own 2x2 pool


@pytest.mark.parametrize("layer", [0, 1, 2, 4, -1, -3, None])
def test_layer_is_the_index_into_output_hidden_states(qvl_tiny_backbone, layer):
    spec = FeatureSpec(pooling="none", layer=layer, text="mean", image_size=64)
    batch = tokenize(qvl_tiny_backbone, [{"images": [SMALL], "text": "pick up"}, {"video": VIDEO}], spec)
    with torch.no_grad():
        everything = qvl_tiny_backbone.model(**batch, output_hidden_states=True).hidden_states
    expected = everything[2 if layer is None else layer]  # 4 layers: the middle one is 2
    torch.testing.assert_close(hidden_states_at(qvl_tiny_backbone, batch, 2 if layer is None else layer % 5),
                               expected, atol=1e-5, rtol=1e-5)
    features = extract(qvl_tiny_backbone, batch, spec)
    visual = (batch["input_ids"] == 151655) | (batch["input_ids"] == 151656)
    for row, sample in enumerate(features):
        torch.testing.assert_close(sample["visual"], expected[row][visual[row]], atol=1e-5, rtol=1e-5)
        text = batch["attention_mask"][row].bool() & ~visual[row]
        torch.testing.assert_close(sample["text"], expected[row][text].mean(0), atol=1e-5, rtol=1e-5)


def test_bad_settings_are_user_errors(qvl_tiny_backbone):
    for pooling in ("grid:3", "max", "grid:"):
        with pytest.raises(UserError, match="pooling"):
            FeatureSpec(pooling=pooling)
    with pytest.raises(UserError, match="hidden states 0..4"):
        extract(qvl_tiny_backbone, [{"images": [SMALL]}], FeatureSpec(layer=5))


def _counting(calls):
    def make_inputs(ids):
        calls.append(list(ids))
        return [{"images": [SMALL if int(i) % 2 else LARGE], "text": f"task {i}"} for i in ids]
    return make_inputs


def test_the_cache_is_built_once_and_reused_by_a_new_object(qvl_tiny_backbone, tmp_path):
    spec = FeatureSpec(pooling="grid:4", text="last")
    ids = [str(i) for i in range(5)]
    calls = []
    store = FeatureCache(qvl_tiny_backbone, spec, root=tmp_path).build(ids, _counting(calls), batch_size=2,
                                                                       progress=False)
    assert len(calls) == 3 and len(store) == 5
    direct = extract(qvl_tiny_backbone, _counting([])(["3"]), spec)[0]
    for key in ("visual", "text", "grid"):
        torch.testing.assert_close(store["3"][key], direct[key], atol=1e-5, rtol=1e-5)
    again = FeatureCache(qvl_tiny_backbone, spec, root=tmp_path).build(list(reversed(ids)), _counting(calls),
                                                                       progress=False)
    assert len(calls) == 3 and again.folder == store.folder  # no model run: read from disk
    assert again["0"]["visual"].shape == (1, 4, 128)
    with pytest.raises(KeyError, match="not in the feature cache"):
        again["nope"]


def test_the_folder_changes_with_layer_pooling_prompt_data_and_weights(qvl_tiny_backbone, tmp_path):
    ids = ["0", "1"]
    base = FeatureSpec()
    folders = {FeatureCache(qvl_tiny_backbone, spec, root=tmp_path).folder_for(ids)
               for spec in (base, FeatureSpec(layer=1), FeatureSpec(pooling="none"), FeatureSpec(prompt="Do: {text}"),
                            FeatureSpec(image_size=64))}
    cache = FeatureCache(qvl_tiny_backbone, base, root=tmp_path)
    folders |= {cache.folder_for(ids, data="v2"), cache.folder_for(["0", "1", "2"])}
    model = copy.deepcopy(qvl_tiny_backbone.model)
    with torch.no_grad():
        model.get_input_embeddings().weight[7, 3] += 1e-3  # one weight of one unseen token
    changed = Backbone(model=model, processor=qvl_tiny_backbone.processor, name=qvl_tiny_backbone.name,
                       source=qvl_tiny_backbone.source)
    assert fingerprint(changed, base)["weights"] != fingerprint(qvl_tiny_backbone, base)["weights"]
    folders.add(FeatureCache(changed, base, root=tmp_path).folder_for(ids))
    assert len(folders) == 8  # 5 specs, data, ids, weights
    assert cache.folder_for(["1", "0"]) == cache.folder_for(ids)  # order does not matter


def test_a_users_folder_is_refused(qvl_tiny_backbone, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    with pytest.raises(UserError, match="not written by qvl"):
        FeatureCache(qvl_tiny_backbone, FeatureSpec(), root=tmp_path).build(["0"], _counting([]), folder=mine,
                                                                            progress=False)
    assert (mine / "notes.txt").read_text() == "keep"


def test_qwen25_video_groups_and_layers():
    # Qwen2.5-VL writes a video as one block of tokens (Qwen3-VL: one block per group, after a timestamp)
    from qvl.backbone.loading import load
    from qvl.config import BackboneConfig

    backbone = load(BackboneConfig(name="embedded:qwen2.5-vl-tiny", finetune="frozen"))
    spec = FeatureSpec(pooling="none", layer=-2, image_size=56)
    batch = tokenize(backbone, [{"video": VIDEO, "images": [SMALL], "text": "what"}], spec)
    sample = extract(backbone, batch, spec)[0]
    assert sample["grid"].tolist() == [[2, 2]] * 3  # the image, then the video's 2 groups (56 px = 2 x 28)
    with torch.no_grad():
        expected = backbone.model(**batch, output_hidden_states=True).hidden_states[-2][0]
    visual = (batch["input_ids"][0] == 151655) | (batch["input_ids"][0] == 151656)
    torch.testing.assert_close(sample["visual"], expected[visual], atol=1e-5, rtol=1e-5)
    pooled = extract(backbone, batch, FeatureSpec(pooling="mean", layer=-2, image_size=56))[0]["visual"]
    torch.testing.assert_close(pooled, sample["visual"].reshape(3, 4, -1).mean(1), atol=1e-5, rtol=1e-5)


def test_a_store_survives_pickling_for_dataloader_workers(qvl_tiny_backbone, tmp_path):
    import pickle

    store = FeatureCache(qvl_tiny_backbone, FeatureSpec(), root=tmp_path).build(["0", "1"], _counting([]),
                                                                                progress=False)
    first = store["1"]["visual"]
    copy_ = pickle.loads(pickle.dumps(store))
    assert torch.equal(copy_["1"]["visual"], first) and "1" in copy_ and "2" not in copy_


def test_shared_cache_loads_one_frozen_backbone_per_setting_and_builds_on_a_device(tmp_path, monkeypatch):
    from qvl.config import BackboneConfig
    from qvl.features import forget_shared_caches, shared_cache

    forget_shared_caches()
    try:
        setting = BackboneConfig(name="embedded:qwen3-vl-tiny", finetune="lora")
        spec = FeatureSpec(pooling="mean")
        first = shared_cache(setting, spec, tmp_path)
        assert shared_cache(setting, spec, tmp_path) is first  # no second load
        assert shared_cache(setting, FeatureSpec(pooling="grid:4"), tmp_path).backbone is not first.backbone
        assert not any(p.requires_grad for p in first.backbone.model.parameters())  # frozen whatever was asked
        moves = []
        original = type(first.backbone.model).to

        def recording_to(model, *args, **kwargs):
            moves.append(str(args[0]))
            return original(model, *args, **kwargs)

        monkeypatch.setattr(type(first.backbone.model), "to", recording_to)
        first.build(["1", "2"], _counting([]), progress=False, device="cpu")
        assert moves == ["cpu", "cpu"]  # to the build device, then back where it was
        first.build(["1", "2"], _counting([]), progress=False, device="cpu")
        assert moves == ["cpu", "cpu"]  # a folder that exists: the model is not touched
    finally:
        forget_shared_caches()
