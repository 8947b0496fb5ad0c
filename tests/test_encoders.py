"""Item text and image encoders (recbole_bbq.data.text_encoder / image_encoder) and their CLIs.

Text tests use the real all-MiniLM-L6-v2; image tests use a tiny, randomly initialised open_clip
ViT given as a ``local-dir:`` architecture, so they stay fast on CPU.
"""

import glob
import json
import os
import subprocess
import sys

import numpy as np
import open_clip
import pytest
import yaml

from recbole_bbq.converters import encode_text
from recbole_bbq.data import encoding, image_encoder, text_encoder
from recbole_bbq.data.features import feature_path, read_feature_file
from recbole_bbq.errors import DataError

from conftest import REPO_DIR, SHARED_DATA, require_shared

SCIENTIFIC_ITEMS = os.path.join(SHARED_DATA, "amazon_scientific_lcrec", "Scientific.item.json")
POSTERS = os.path.join(SHARED_DATA, "ml100k_posters", "posters_w92")
# Same beaker in 400 mL and 600 mL, then 18 unrelated products.
NEAR_DUPLICATES = ("420", "3718")
UNRELATED = (
    "0",
    "1",
    "111",
    "141",
    "165",
    "196",
    "204",
    "291",
    "305",
    "335",
    "345",
    "408",
    "432",
    "471",
    "508",
    "545",
    "626",
    "702",
)
TINY_VIT = {
    "model_cfg": {
        "embed_dim": 32,
        "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "head_width": 32, "patch_size": 16},
        "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 32, "heads": 2, "layers": 1},
    }
}


def poster_paths(count=20):
    """The first ``count`` MovieLens posters (by file name)."""
    require_shared("ml100k_posters")
    return sorted(glob.glob(os.path.join(POSTERS, "*.jpg")))[:count]


def write_item_file(data_dir, dataset, header, rows):
    """Write ``<data_dir>/<dataset>.item`` (tab-separated, RecBole header)."""
    os.makedirs(data_dir, exist_ok=True)
    lines = ["\t".join(header)] + ["\t".join(row) for row in rows]
    with open(os.path.join(data_dir, f"{dataset}.item"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


def registered_dims(data_dir, dataset):
    """``modality_dims`` of ``<data_dir>/<dataset>.yaml``."""
    with open(os.path.join(data_dir, f"{dataset}.yaml"), encoding="utf-8") as f:
        return yaml.safe_load(f)["modality_dims"]


def run_script(name, *args):
    """Run ``dataset_scripts/<name>`` in a subprocess; return the completed process."""
    script = os.path.join(REPO_DIR, "dataset_scripts", name)
    return subprocess.run([sys.executable, script, *args], capture_output=True, text=True, timeout=120)


@pytest.fixture
def tiny_arch(tmp_path):
    """A ``local-dir:`` open_clip architecture: 2-layer ViT, width 64, 64x64 images, no weights."""
    folder = tmp_path / "tiny_vit"
    folder.mkdir()
    (folder / "open_clip_config.json").write_text(json.dumps(TINY_VIT))
    return f"local-dir:{folder}"


@pytest.fixture
def poster_dataset(tmp_path):
    """A 20-item dataset whose item tokens are MovieLens ids with a poster in ``POSTERS``."""
    data_dir = str(tmp_path / "posters")
    tokens = [os.path.splitext(os.path.basename(path))[0] for path in poster_paths()]
    write_item_file(
        data_dir, "posters", ["item_id:token", "title:token_seq"], [[t, f"movie {t}"] for t in tokens]
    )
    return data_dir


# ----------------------------------------------------------------------------- text


def test_near_duplicate_titles_are_closest():
    require_shared("amazon_scientific_lcrec")
    with open(SCIENTIFIC_ITEMS, encoding="utf-8") as f:
        items = json.load(f)
    titles = [items[key]["title"] for key in NEAR_DUPLICATES + UNRELATED]
    features = text_encoder.encode_texts(titles, device="cpu", show_progress=False)
    assert features.shape == (20, 384) and features.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(features, axis=1), 1.0, atol=1e-5)
    cosine = features @ features.T
    assert cosine[0, 1] > max(cosine[0, 2:].max(), cosine[1, 2:].max())


def test_text_rows_keep_input_order():
    texts = ["a much longer sentence about laboratory glass beakers", "tape", ""]
    with pytest.warns(UserWarning, match="fp16 is only used on GPU"):
        together = text_encoder.encode_texts(
            texts, device="cpu", batch_size=2, fp16=True, show_progress=False
        )
    alone = np.stack([text_encoder.encode_texts([t], device="cpu", show_progress=False)[0] for t in texts])
    np.testing.assert_allclose(together, alone, atol=1e-5)


def test_item_texts_without_text_column_use_title_year_and_genres(tmp_path):
    write_item_file(
        str(tmp_path),
        "ml",
        ["item_id:token", "movie_title:token_seq", "release_year:token", "class:token_seq"],
        [["1", "Toy Story", "1995", "Animation Children's Comedy"], ["2", "Untitled", "", ""]],
    )
    path, frame = encoding.read_item_file(str(tmp_path), "ml")
    assert text_encoder.item_texts(frame, path) == [
        "Toy Story (1995). Genres: Animation, Children's, Comedy",
        "Untitled",
    ]


def test_item_file_without_text_or_title_names_the_file(tmp_path):
    write_item_file(str(tmp_path), "bad", ["item_id:token", "price:float"], [["1", "2.5"]])
    with pytest.raises(DataError, match=r"bad\.item: no 'text' column and no title column"):
        text_encoder.encode_dataset_text(str(tmp_path), "bad")


def test_duplicate_item_names_file_and_row(tmp_path):
    write_item_file(
        str(tmp_path), "dup", ["item_id:token", "text:token_seq"], [["a", "x"], ["b", "y"], ["a", "z"]]
    )
    with pytest.raises(DataError, match=r"dup\.item: duplicate item 'a' at data row 3"):
        encoding.read_item_file(str(tmp_path), "dup")


def test_encode_dataset_text_writes_registers_and_caches(tmp_path, monkeypatch):
    data_dir = str(tmp_path / "shop")
    rows = [
        ["p1", "Glass beaker 400 mL"],
        ["p2", "Glass beaker 600 mL"],
        ["p3", "Duct tape"],
        ["p4", ""],
        ["p5", "Safety goggles"],
    ]
    write_item_file(data_dir, "shop", ["item_id:token", "text:token_seq"], rows)
    out = text_encoder.encode_dataset_text(data_dir, "shop", device="cpu", show_progress=False)
    assert out == feature_path(data_dir, "shop", "text")
    loaded = read_feature_file(out)
    assert loaded.tokens.tolist() == ["p1", "p2", "p3", "p4", "p5"] and loaded.dim == 384
    assert loaded.meta["encoder"] == "all-MiniLM-L6-v2"
    assert loaded.missing.tolist() == [False, False, False, True, False]  # p4 has no text: a flagged zero row
    assert loaded.meta["missing"] == 1 and not loaded.features[3].any()
    assert registered_dims(data_dir, "shop") == {"text": 384}

    mtime = os.stat(out).st_mtime_ns
    monkeypatch.setattr(text_encoder, "encode_texts", lambda *a, **k: pytest.fail("cache miss"))
    assert text_encoder.encode_dataset_text(data_dir, "shop", device="cpu") == out
    assert os.stat(out).st_mtime_ns == mtime


# ----------------------------------------------------------------------------- images


def test_random_image_encoder_is_deterministic(tiny_arch, capsys):
    paths = poster_paths()
    first, missing, skipped = image_encoder.encode_images(
        paths, tiny_arch, "none", device="cpu", show_progress=False
    )
    second, _, _ = image_encoder.encode_images(paths, tiny_arch, "none", device="cpu", show_progress=False)
    assert first.shape == (20, 32) and first.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-5)
    assert not missing.any() and skipped == []
    np.testing.assert_array_equal(first, second)
    assert "WARNING: random image encoder weights" in capsys.readouterr().err


def test_encode_dataset_images_registers_and_reuses_cache(poster_dataset, tiny_arch, monkeypatch):
    calls = []
    create = open_clip.create_model_and_transforms
    monkeypatch.setattr(
        open_clip, "create_model_and_transforms", lambda *a, **k: calls.append(a) or create(*a, **k)
    )
    kwargs = dict(device="cpu", batch_size=8, show_progress=False)
    out = image_encoder.encode_dataset_images(poster_dataset, "posters", POSTERS, tiny_arch, "none", **kwargs)
    loaded = read_feature_file(out)
    assert loaded.features.shape == (20, 32) and not loaded.missing.any()
    assert loaded.meta["skipped"] == 0 and registered_dims(poster_dataset, "posters") == {"image": 32}

    mtime = os.stat(out).st_mtime_ns
    assert (
        image_encoder.encode_dataset_images(poster_dataset, "posters", POSTERS, tiny_arch, "none", **kwargs)
        == out
    )
    assert len(calls) == 1 and os.stat(out).st_mtime_ns == mtime


def test_corrupt_image_zero_policy_gives_flagged_zero_row(tmp_path, tiny_arch, caplog):
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8 definitely not a jpeg")
    paths = [poster_paths(1)[0], str(corrupt), ""]
    features, missing, skipped = image_encoder.encode_images(
        paths, tiny_arch, "none", device="cpu", show_progress=False
    )
    assert missing.tolist() == [False, True, True]
    assert not features[1:].any() and features[0].any()
    assert [path for path, _ in skipped] == [str(corrupt), ""]
    assert str(corrupt) in caplog.text and "2 image(s) skipped" in caplog.text


def test_corrupt_image_error_policy_names_file_and_item(tmp_path, tiny_arch):
    data_dir, image_dir = str(tmp_path / "shop"), tmp_path / "images"
    image_dir.mkdir()
    (image_dir / "bad.jpg").write_bytes(b"garbage bytes")
    write_item_file(
        data_dir, "shop", ["item_id:token", "image:token"], [["good", poster_paths(1)[0]], ["bad", ""]]
    )
    with pytest.raises(
        DataError, match=r"shop\.item \(image folder .*\): .*bad\.jpg: item 'bad': unreadable image"
    ):
        image_encoder.encode_dataset_images(
            data_dir,
            "shop",
            str(image_dir),
            tiny_arch,
            "none",
            device="cpu",
            missing_policy="error",
            show_progress=False,
        )
    assert not os.path.exists(feature_path(data_dir, "shop", "image"))
    assert not os.path.exists(os.path.join(data_dir, "shop.yaml"))


def test_find_image_file_prefers_column_then_token(tmp_path):
    (tmp_path / "i1.png").write_bytes(b"x")
    (tmp_path / "cover.jpg").write_bytes(b"x")
    assert image_encoder.find_image_file("i1", "cover.jpg", str(tmp_path), None) == str(
        tmp_path / "cover.jpg"
    )
    assert image_encoder.find_image_file("i1", "https://example.com/i1.jpg", str(tmp_path), None) == str(
        tmp_path / "i1.png"
    )
    assert image_encoder.find_image_file("i2", "", str(tmp_path), None) == ""


# ----------------------------------------------------------------------------- command lines


def test_encode_text_cli(tmp_path):
    write_item_file(
        str(tmp_path / "data" / "mini"),
        "mini",
        ["item_id:token", "text:token_seq"],
        [["a", "red pen"], ["b", "blue pen"]],
    )
    done = run_script(
        "encode_text.py", "--dataset", "mini", "--data-path", str(tmp_path / "data"), "--device", "cpu"
    )
    assert done.returncode == 0, done.stderr
    assert read_feature_file(done.stdout.strip().splitlines()[-1]).features.shape == (2, 384)

    failed = run_script("encode_text.py", "--dataset", "absent", "--data-path", str(tmp_path / "data"))
    assert (
        failed.returncode == 2
        and "error: " in failed.stderr
        and "absent.item: item file not found" in failed.stderr
    )


def test_encode_images_cli(tmp_path, tiny_arch):
    tokens = [os.path.splitext(os.path.basename(path))[0] for path in poster_paths(3)]
    write_item_file(str(tmp_path / "data" / "mini"), "mini", ["item_id:token"], [[t] for t in tokens])
    done = run_script(
        "encode_images.py",
        "--dataset",
        "mini",
        "--data-path",
        str(tmp_path / "data"),
        "--image-dir",
        POSTERS,
        "--model",
        tiny_arch,
        "--pretrained",
        "none",
        "--device",
        "cpu",
    )
    assert done.returncode == 0, done.stderr
    assert "WARNING: random image encoder weights" in done.stderr
    assert read_feature_file(done.stdout.strip().splitlines()[-1]).features.shape == (3, 32)


def test_encoder_command_reports_a_user_error_once(tmp_path, capsys):
    """main() returns 2 after one ``error:`` line, also when run_encoder_cli wraps it again."""
    argv = ["--dataset", "absent", "--data_path", str(tmp_path)]
    assert encode_text.main(argv) == 2
    assert encoding.run_encoder_cli(encode_text.main, argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("error: ") == 2 and captured.err.count("absent.item: item file not found") == 2
