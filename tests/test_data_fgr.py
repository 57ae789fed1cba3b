"""The FGR builder: the mini preset round-trips through load_dataset; resume, skipping, the card, the CLI."""

import json
import threading

import datasets
import huggingface_hub
import numpy as np
import pytest
from PIL import Image

from finpercep_hf.cli import build_parser, main
from finpercep_hf.commands.build_fgr import ARGUMENTS, config_from_args
from finpercep_hf.data import ARTIFACT_KINDS, FGR_FEATURES, FGRBuildConfig, build_fgr, push_fgr_to_hub
from finpercep_hf.data.fgr import FGRBuilder, FGRSynthesizer
from finpercep_hf.scripting import dataclasses_from_namespace

STRING_COLUMNS = ("sr_model", "artifact_kind", "mask_type", "source_id")


@pytest.fixture(autouse=True)
def private_datasets_cache(tmp_path, monkeypatch):
    """datasets caches local folders by name and card metadata; a per-test cache keeps other runs' rows out."""
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-datasets-cache")


def tiny_config(**overrides) -> FGRBuildConfig:
    """The mini preset shrunk to seconds: 64 px crops, few samples, small shards."""
    values = {
        "num_samples": 10,
        "crop_size": 64,
        "samples_per_shard": 4,
        "calibration_samples": 4,
        "skimage_photos": ("astronaut", "coffee"),
    }
    values.update(overrides)
    return FGRBuildConfig.mini(**values)


def rows_of(path) -> list[dict]:
    dataset = datasets.load_dataset(str(path), split="train")
    return [
        {key: np.asarray(value) if isinstance(value, Image.Image) else value for key, value in row.items()}
        for row in dataset
    ]


def test_mini_preset_defaults_cover_the_artifact_pool():
    config = FGRBuildConfig.mini()
    assert config.crop_size in range(128, 257) and config.num_samples >= 200
    assert {f"artifact:{kind}" for kind in ARTIFACT_KINDS} <= set(config.sr_models)
    assert {"bicubic", "lanczos"} <= set(config.sr_models)
    assert set(config.mask_types) == {"rectangle", "stroke"}
    assert config.dino is None and config.sam is None


def test_mini_build_reads_back_with_promised_columns_and_types(tmp_path):
    config = tiny_config()
    path = build_fgr(config, tmp_path / "fgr", progress=False)
    assert sorted(p.name for p in (path / "data").glob("*.parquet")) == [
        f"train-0000{i}-of-00003.parquet" for i in range(3)
    ]
    dataset = datasets.load_dataset(str(path), split="train")
    assert len(dataset) == 10
    row = dataset[3]
    for key in ("image_gt", "image_sr", "image_syn"):
        assert row[key].mode == "RGB" and row[key].size == (64, 64)
    assert row["mask"].mode == "L" and set(np.unique(np.asarray(row["mask"]))) <= {0, 255}
    pdm = np.asarray(row["pdm_target"])
    assert row["pdm_target"].mode == "F" and pdm.dtype == np.float32 and pdm.shape == (64, 64)
    assert 0 <= pdm.min() and pdm.max() <= 1 and pdm.max() > 0
    for key in STRING_COLUMNS:
        assert isinstance(row[key], str) and row[key]
    assert isinstance(row["degradation_seed"], int) and row["sample_index"] == 3
    assert row["source_id"] in ("skimage:astronaut", "skimage:coffee")
    mask = np.asarray(row["mask"]) / 255
    assert row["mask_area"] == pytest.approx(mask.mean(), abs=1e-6)
    # image_syn is image_gt outside the mask and image_sr inside it (8-bit storage of the exact swap)
    gt, sr, syn = (np.asarray(row[key]) for key in ("image_gt", "image_sr", "image_syn"))
    assert (syn[mask == 0] == gt[mask == 0]).all() and (syn[mask == 1] == sr[mask == 1]).all()
    # the card records the scale that the build file holds, and makes load_dataset work with no script
    record = json.loads((path / "fgr_build.json").read_text())
    card = (path / "README.md").read_text()
    assert f"{record['pdm_scale']:.6g}" in card and "path: data/train-*" in card and "1-ssim" in card


def test_config_round_trips_through_the_build_file_and_validates():
    config = tiny_config(area_range=(0.2, 0.3), sr_weights=[1.0] * 8)
    assert FGRBuildConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(ValueError, match="multiple of 4"):
        tiny_config(crop_size=66)
    with pytest.raises(ValueError, match="skimage_photos"):
        tiny_config(skimage_photos=("astronaut", "no_such_photo"))
    with pytest.raises(ValueError, match="mask_types"):
        tiny_config(mask_types=("circle",))


def test_rows_are_reproducible_and_differ_across_seeds():
    first, again = FGRSynthesizer(tiny_config()), FGRSynthesizer(tiny_config())
    other = FGRSynthesizer(tiny_config(seed=1))
    a, b, c = (s.synthesize(5) for s in (first, again, other))
    assert a["degradation_seed"] == b["degradation_seed"] != c["degradation_seed"]
    for key in ("image_gt", "image_sr", "image_syn", "mask", "raw_pdm"):
        assert a[key].equal(b[key])
    assert not a["image_sr"].equal(c["image_sr"])


def test_resume_after_an_interrupted_build_gives_the_same_rows(tmp_path, monkeypatch):
    config = tiny_config()
    reference = rows_of(build_fgr(config, tmp_path / "full", progress=False))
    original = FGRSynthesizer.sample
    built = []

    def dies_at_sample_5(self, index):
        if index == 5:
            raise KeyboardInterrupt
        return original(self, index)

    def counts_samples(self, index):
        built.append(index)
        return original(self, index)

    monkeypatch.setattr(FGRSynthesizer, "sample", dies_at_sample_5)
    with pytest.raises(KeyboardInterrupt):
        build_fgr(config, tmp_path / "resumed", progress=False)
    data = tmp_path / "resumed" / "data"
    assert sorted(p.name for p in data.iterdir()) == ["train-00000-of-00003.parquet"]  # no partial shard left
    monkeypatch.setattr(FGRSynthesizer, "sample", counts_samples)
    resumed = rows_of(build_fgr(config, tmp_path / "resumed", progress=False))
    assert built == list(range(4, 10))  # shards 1 and 2 only
    assert len(resumed) == len(reference) == 10
    for got, want in zip(resumed, reference):
        assert got.keys() == want.keys()
        for key in want:
            assert np.array_equal(got[key], want[key]) if isinstance(want[key], np.ndarray) else got[key] == want[key]


def test_resume_refuses_a_different_config(tmp_path):
    build_fgr(tiny_config(num_samples=4), tmp_path / "fgr", progress=False)
    with pytest.raises(ValueError, match="different FGR build"):
        build_fgr(tiny_config(num_samples=4, seed=3), tmp_path / "fgr", progress=False)


def test_corrupt_source_is_skipped_with_a_warning(tmp_path, skimage_photos, caplog):
    photos = tmp_path / "photos"
    photos.mkdir()
    skimage_photos["astronaut"].save(photos / "a.png")
    (photos / "b.png").write_bytes(b"not a png at all")
    config = tiny_config(images=[str(photos)], num_samples=6)
    with caplog.at_level("WARNING", logger="finpercep_hf.data.fgr.synthesis"):
        path = build_fgr(config, tmp_path / "fgr", progress=False)
    rows = datasets.load_dataset(str(path), split="train")
    assert list(rows["sample_index"]) == [0, 2, 4]  # the odd samples come from b.png
    assert {row.endswith("a.png") for row in rows["source_id"]} == {True}
    skipped = [record.getMessage() for record in caplog.records if "skipped" in record.getMessage()]
    assert len(skipped) >= 3 and all("b.png" in message for message in skipped)


def test_two_processes_split_the_shards(tmp_path):
    config = tiny_config()
    reference = rows_of(build_fgr(config, tmp_path / "one", progress=False))
    ranks = [
        threading.Thread(
            target=build_fgr,
            args=(config, tmp_path / "two"),
            kwargs={
                "process_index": rank,
                "num_processes": 2,
                "progress": False,
                "poll_seconds": 0.05,
                "num_threads": None,
            },
        )
        for rank in (1, 0)
    ]
    for rank in ranks:
        rank.start()
    for rank in ranks:
        rank.join(timeout=120)
    assert (tmp_path / "two" / "README.md").is_file()
    two = rows_of(tmp_path / "two")
    assert [row["sample_index"] for row in two] == list(range(10))
    assert all(np.array_equal(a["pdm_target"], b["pdm_target"]) for a, b in zip(two, reference))


def test_generator_based_builder_matches_build_fgr(tmp_path):
    config = tiny_config(num_samples=3)
    builder = FGRBuilder(cache_dir=str(tmp_path / "cache"), build=config)
    builder.download_and_prepare()
    dataset = builder.as_dataset("train")
    reference = rows_of(build_fgr(config, tmp_path / "fgr", progress=False))
    assert dataset.features == FGR_FEATURES and len(dataset) == 3
    record = json.loads((tmp_path / "fgr" / "fgr_build.json").read_text())
    assert f"pdm_scale={record['pdm_scale']:.6g}" in dataset.info.description
    for got, want in zip(dataset, reference):
        assert got["sr_model"] == want["sr_model"] and got["mask_type"] == want["mask_type"]
        assert np.array_equal(np.asarray(got["pdm_target"]), want["pdm_target"])
        assert np.array_equal(np.asarray(got["image_syn"]), want["image_syn"])


def test_cli_builds_the_mini_preset_with_overrides(tmp_path):
    out = tmp_path / "fgr-mini"
    argv = [
        "build-fgr",
        "--preset",
        "mini",
        "--out",
        str(out),
        "--num_samples",
        "4",
        "--crop_size",
        "64",
        "--samples_per_shard",
        "2",
        "--calibration_samples",
        "2",
        "--skimage_photos",
        "coffee",
        "rocket",
        "--sr_models",
        "bicubic",
        "artifact:oversharpen_halo",
        "--alpha",
        "0.7",
        "--no_progress",
    ]
    assert main(argv) == 0
    stored = json.loads((out / "fgr_build.json").read_text())["config"]
    assert stored["crop_size"] == 64 and stored["alpha"] == 0.7 and stored["skimage_photos"] == ["coffee", "rocket"]
    assert stored["pretty_name"] == "FGR-mini"  # not overridden: the preset's value
    rows = datasets.load_dataset(str(out), split="train")
    assert len(rows) == 4 and set(rows["sr_model"]) <= {"bicubic", "artifact:oversharpen_halo"}
    assert main(["build-fgr", "--preset", "mini", "--out", str(tmp_path / "bad"), "--crop_size", "66"]) == 2


def test_cli_sam_flag_adds_semantic_masks():
    namespace = build_parser().parse_args(["build-fgr", "--out", "x", "--sam", "facebook/sam-vit-base"])
    config = config_from_args(*dataclasses_from_namespace(namespace, ARGUMENTS))
    assert config.mask_types == ("rectangle", "stroke", "semantic") and config.crop_size == 512
    assert config.num_samples == 30000


def test_push_to_hub_uploads_the_built_folder(tmp_path, monkeypatch):
    calls = {}

    class FakeApi:
        def create_repo(self, repo_id, **kwargs):
            calls["create"] = (repo_id, kwargs)
            return f"https://huggingface.co/datasets/{repo_id}"

        def upload_folder(self, **kwargs):
            calls["upload"] = kwargs

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    with pytest.raises(FileNotFoundError, match="build the dataset"):
        push_fgr_to_hub(tmp_path, "org/fgr")
    path = build_fgr(tiny_config(num_samples=2), tmp_path / "fgr", progress=False)
    url = push_fgr_to_hub(path, "org/fgr", private=True)
    assert url == "https://huggingface.co/datasets/org/fgr"
    assert calls["create"] == ("org/fgr", {"repo_type": "dataset", "private": True, "exist_ok": True})
    upload = calls["upload"]
    assert upload["folder_path"] == str(path) and upload["repo_id"] == "org/fgr" and upload["repo_type"] == "dataset"
    assert "data/*.parquet" in upload["allow_patterns"] and "README.md" in upload["allow_patterns"]
