"""Dataset converters (recbole_bbq.converters) and their dataset_scripts/ command lines."""

import functools
import gzip
import http.server
import json
import os
import subprocess
import sys
import threading

import numpy as np
import pytest
import yaml

from recbole_bbq.config import Config
from recbole_bbq.converters import amazon, common, encode_images, encode_text, lcrec, movielens, unisrec
from recbole_bbq.data.features import align_to_items, feature_path, read_feature_file
from recbole_bbq.data.semantic_ids import read_semantic_id_file
from recbole_bbq.errors import DataError
from recbole_bbq.utils import create_dataset

from conftest import REPO_DIR, SHARED_DATA, require_shared

SCRIPTS = os.path.join(REPO_DIR, "dataset_scripts")

SCIENTIFIC_MM = os.path.join(SHARED_DATA, "amazon_scientific_mm")
SCIENTIFIC_LCREC = os.path.join(SHARED_DATA, "amazon_scientific_lcrec")
INSTRUMENTS = os.path.join(SHARED_DATA, "amazon_instruments_mql4grec")
ML100K = os.path.join(SHARED_DATA, "ml100k_posters", "ml-100k")
POSTERS = os.path.join(SHARED_DATA, "ml100k_posters", "posters_w92")
UNREACHABLE = "http://127.0.0.1:9/x.jpg"


# --------------------------------------------------------------------------- helpers


def read_atomic(path):
    """An atomic file as ``(header fields, rows of cells)``."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    return lines[0].split("\t"), [line.split("\t") for line in lines[1:]]


def read_items(path):
    """``NAME.item`` as ``{item_id: {field name: cell}}`` (types stripped from the header)."""
    header, rows = read_atomic(path)
    names = [field.split(":")[0] for field in header]
    return {row[0]: dict(zip(names, row)) for row in rows}


def read_yaml(data_dir, name):
    with open(os.path.join(data_dir, f"{name}.yaml"), encoding="utf-8") as f:
        return yaml.safe_load(f)


def load_dataset(out_dir, name):
    """Build the converted dataset through recbole_bbq's Config and create_dataset."""
    overrides = {"data_path": str(out_dir), "state": "ERROR", "show_progress": False}
    config = Config("SASRec", name, config_dict=overrides)
    return create_dataset(config)


def write_lines(path, records, as_python=()):
    """Write JSON lines (gzip for ``.gz``); records whose index is in ``as_python`` use ``repr``."""
    text = "".join((repr(r) if i in as_python else json.dumps(r)) + "\n" for i, r in enumerate(records))
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wt", encoding="utf-8") as f:
        f.write(text)


def toy_unisrec(folder, test_row="0\t0\t1"):
    """A two-item, one-user UniSRec folder with prefix ``Toy``."""
    folder.mkdir()
    (folder / "Toy.item2index").write_text("ASIN0 0\nASIN1 1\n")
    (folder / "Toy.user2index").write_text("U0 0\n")
    header = "\t".join(common.BENCHMARK_HEADER)
    for split, row in (("train", "0\t0\t1"), ("valid", "0\t0\t1"), ("test", test_row)):
        (folder / f"Toy.{split}.inter").write_text(f"{header}\n{row}\n")
    return folder


def listing(folder):
    return sorted(os.listdir(folder)) if os.path.isdir(folder) else []


# --------------------------------------------------------------------------- real datasets


@pytest.fixture(scope="module")
def scientific_mm(tmp_path_factory):
    require_shared("amazon_scientific_mm")
    out = tmp_path_factory.mktemp("converted")
    stats = unisrec.convert(SCIENTIFIC_MM, "SciMM", str(out))
    return out, stats


@pytest.fixture(scope="module")
def scientific_lcrec(tmp_path_factory):
    require_shared("amazon_scientific_lcrec")
    out = tmp_path_factory.mktemp("converted")
    stats = lcrec.convert(SCIENTIFIC_LCREC, "SciLC", str(out))
    return out, stats


def test_unisrec_scientific_counts_yaml_and_recbole_loading(scientific_mm):
    out, stats = scientific_mm
    assert (stats["users"], stats["items"], stats["interactions"]) == (2928, 1585, 19712)
    assert stats["avg_seq_len"] == pytest.approx(19712 / 2928)
    assert stats["sparsity"] == pytest.approx(1 - 19712 / (2928 * 1585))
    data_dir = out / "SciMM"
    config = read_yaml(data_dir, "SciMM")
    assert config["benchmark_filename"] == ["train", "valid", "test"]
    assert config["alias_of_item_id"] == ["item_id_list"]
    assert config["load_col"] == {"inter": ["user_id", "item_id_list", "item_id"], "item": ["item_id"]}
    assert config["MAX_ITEM_LIST_LENGTH"] == 50
    assert config["modalities"] == ["text", "image"]
    assert config["modality_dims"] == {"text": 512, "image": 512}

    header, rows = read_atomic(data_dir / "SciMM.test.inter")
    assert header == ["user_id:token", "item_id_list:token_seq", "item_id:token"]
    assert rows[0] == ["A1AXCV2WYDA4PD", "B00O47ILVA B006ATU73A B00CJ5EO2E B00VTVWJOE", "B000FPAN2K"]
    header, items = read_atomic(data_dir / "SciMM.item")
    assert header == ["item_id:token", "text:token_seq"] and len(items) == 1585
    assert not any('"' in cell for row in items for cell in row)

    ds = load_dataset(out, "SciMM")
    assert (ds.user_num - 1, ds.item_num - 1) == (2928, 1585)
    for modality in ("text", "image"):
        feature_file = read_feature_file(str(data_dir / f"SciMM.{modality}.npz"))
        features, missing = align_to_items(feature_file, ds.field2id_token["item_id"], expected_dim=512)
        assert features.shape == (1586, 512) and not missing[1:].any()


def test_unisrec_feature_rows_equal_the_raw_rows(scientific_mm):
    out, _ = scientific_mm
    asin, index = "B001E5ZWT4", 100  # line 101 of Scientific.item2index
    for suffix, modality in (("feat1CLS", "text"), ("feat3CLS", "image")):
        raw = np.fromfile(os.path.join(SCIENTIFIC_MM, f"Scientific.{suffix}"), dtype=np.float32).reshape(
            -1, 512
        )
        feature_file = read_feature_file(str(out / "SciMM" / f"SciMM.{modality}.npz"))
        assert feature_file.features.shape == (1585, 512)
        row = list(feature_file.tokens).index(asin)
        np.testing.assert_array_equal(feature_file.features[row], raw[index])
        assert feature_file.meta["modality"] == modality


def test_unisrec_keeps_only_the_last_max_history_items(tmp_path):
    require_shared("amazon_scientific_mm")
    stats = unisrec.convert(SCIENTIFIC_MM, "Short", str(tmp_path), max_history=3)
    assert stats["interactions"] == 19712  # statistics count full sequences
    data_dir = tmp_path / "Short"
    for split in ("train", "valid", "test"):
        _, rows = read_atomic(data_dir / f"Short.{split}.inter")
        assert max(len(row[1].split()) for row in rows) == 3
    _, rows = read_atomic(data_dir / "Short.test.inter")
    assert rows[0][1] == "B006ATU73A B00CJ5EO2E B00VTVWJOE"
    assert read_yaml(data_dir, "Short")["MAX_ITEM_LIST_LENGTH"] == 3


def test_lcrec_scientific_counts_items_semantic_ids_and_split(scientific_lcrec):
    out, stats = scientific_lcrec
    assert (stats["users"], stats["items"], stats["interactions"]) == (8317, 4344, 58492)
    data_dir = out / "SciLC"
    config = read_yaml(data_dir, "SciLC")
    assert config["TIME_FIELD"] == "timestamp"
    assert config["load_col"] == {"inter": ["user_id", "item_id", "timestamp"], "item": ["item_id"]}
    assert config["eval_args"] == {
        "split": {"LS": "valid_and_test"},
        "group_by": "user",
        "order": "TO",
        "mode": "full",
    }

    header, rows = read_atomic(data_dir / "SciLC.inter")
    assert header == ["user_id:token", "item_id:token", "timestamp:float"]
    assert rows[:3] == [["0", "0", "0"], ["0", "1", "1"], ["0", "2", "2"]]
    header, items = read_atomic(data_dir / "SciLC.item")
    assert header == [
        "item_id:token",
        "title:token_seq",
        "brand:token",
        "categories:token_seq",
        "text:token_seq",
    ]
    assert len(items) == 4344
    first = read_items(data_dir / "SciLC.item")["0"]
    assert first["categories"].split() == [
        "Industrial_&_Scientific",
        "Industrial_Electrical",
        "Passive_Components",
        "Capacitors",
    ]
    assert first["text"].startswith("SUPCO SPP6 Relay/Capacitor Hard Start Kit")
    assert "Sealed Unit Parts" in first["text"]

    for method in ("letter_native", "mql4grec", "rkmeans_native", "rqvae_native"):
        tokens, codes, meta = read_semantic_id_file(str(data_dir / f"SciLC.{method}.sid.npz"))
        assert codes.shape == (4344, 4) and meta["levels"] == 4
    with open(os.path.join(SCIENTIFIC_LCREC, "indexes", "mql4grec", "Scientific.index.json")) as f:
        published = json.load(f)
    tokens, codes, _ = read_semantic_id_file(str(data_dir / "SciLC.mql4grec.sid.npz"))
    row = list(tokens).index("0")
    assert codes[row].tolist() == [int(code.split("_")[1].rstrip(">")) for code in published["0"]]

    ds = load_dataset(out, "SciLC")
    assert (ds.user_num - 1, ds.item_num - 1) == (8317, 4344)
    _, valid, test = ds.build()
    uid = ds.field2token_id["user_id"]["0"]

    def targets(split):
        return list(ds.id2token("item_id", split.inter_feat["item_id"][split.inter_feat["user_id"] == uid]))

    assert targets(test) == ["8"] and targets(valid) == ["7"]  # last = test, second last = valid


def test_lcrec_instruments_index_files_and_asin_column(tmp_path):
    require_shared("amazon_instruments_mql4grec")
    stats = lcrec.convert(INSTRUMENTS, "Instruments", str(tmp_path))
    assert (stats["users"], stats["items"], stats["interactions"]) == (17112, 6250, 136226)
    data_dir = tmp_path / "Instruments"
    for sid_name in ("index_lemb", "index_vitemb"):
        tokens, codes, _ = read_semantic_id_file(str(data_dir / f"Instruments.{sid_name}.sid.npz"))
        assert codes.shape == (6250, 4) and codes.max() < 256
    header, items = read_atomic(data_dir / "Instruments.item")
    assert header == ["item_id:token", "asin:token"]
    assert items[0] == ["0", "B002SQJL9U"] and len(items) == 6250
    assert any("semantic IDs 'index_vitemb': 6250 x 4" in line for line in stats["notes"])


def test_instruments_code_features_are_one_hot_code_tuples(tmp_path):
    require_shared("amazon_instruments_mql4grec")
    stats = lcrec.convert(
        INSTRUMENTS, "Instruments", str(tmp_path), code_features="index_lemb=text,index_vitemb=image"
    )
    data_dir = tmp_path / "Instruments"
    for sid_name, modality in (("index_lemb", "text"), ("index_vitemb", "image")):
        tokens, codes, _ = read_semantic_id_file(str(data_dir / f"Instruments.{sid_name}.sid.npz"))
        feature = read_feature_file(feature_path(data_dir, "Instruments", modality))
        assert feature.features.shape == (6250, 1024) and list(feature.tokens) == list(tokens)
        blocks = feature.features.reshape(6250, 4, 256)
        assert (blocks.sum(axis=2) == 1).all() and np.array_equal(blocks.argmax(axis=2), codes)
        assert "code-derived" in feature.meta["source"]
    config = yaml.safe_load((data_dir / "Instruments.yaml").read_text())
    assert config["modalities"] == ["text", "image"] and config["modality_dims"] == {
        "text": 1024,
        "image": 1024,
    }
    assert any("code-derived: one-hot of index_vitemb (4 x 256 codes)" in line for line in stats["notes"])
    with pytest.raises(DataError, match="no semantic-ID file 'index_x'"):
        lcrec.convert(INSTRUMENTS, "Bad", str(tmp_path), code_features="index_x=text")
    assert not (tmp_path / "Bad").exists()


def test_movielens_with_posters(tmp_path):
    require_shared("ml100k_posters")
    stats = movielens.convert(ML100K, "ml100k", str(tmp_path), posters=POSTERS)
    assert (stats["users"], stats["items"], stats["interactions"]) == (943, 1682, 100000)
    data_dir = tmp_path / "ml100k"
    header, items = read_atomic(data_dir / "ml100k.item")
    assert header == [
        "item_id:token",
        "title:token_seq",
        "categories:token_seq",
        "text:token_seq",
        "image:token",
    ]
    by_id = read_items(data_dir / "ml100k.item")
    assert by_id["1"]["text"] == "Toy Story (1995). Genres: Animation, Children's, Comedy"
    assert by_id["1"]["categories"] == "Animation Children's Comedy"
    assert by_id["1"]["image"] == os.path.join(POSTERS, "1.jpg")
    assert by_id["330"]["image"] == ""  # no poster for movie 330
    assert sum(1 for row in by_id.values() if row["image"]) == 1663
    header, rows = read_atomic(data_dir / "ml100k.inter")
    assert header == ["user_id:token", "item_id:token", "timestamp:float", "rating:float"]
    times = [int(row[2]) for row in rows if row[0] == "1"]
    assert times == sorted(times)
    ds = load_dataset(tmp_path, "ml100k")
    assert (ds.user_num - 1, ds.item_num - 1) == (943, 1682)


# --------------------------------------------------------------------------- synthetic Amazon


def amazon_2018(folder):
    """Reviews + metadata in the 2018 layout. With k=2: u4 (1 review) goes, then i4 (left with
    one review) goes, then u3 (left with one) goes; u1 and u2 remain on i1-i3."""
    folder.mkdir()
    reviews = [
        {"reviewerID": "u1", "asin": "i2", "unixReviewTime": 200, "overall": 5.0},
        {"reviewerID": "u1", "asin": "i1", "unixReviewTime": 100, "overall": 4.0},
        {"reviewerID": "u1", "asin": "i1", "unixReviewTime": 100, "overall": 4.0},  # exact duplicate
        {"reviewerID": "u2", "asin": "i3", "unixReviewTime": 300, "overall": 3.0},
        {"reviewerID": "u2", "asin": "i1", "unixReviewTime": 300, "overall": 2.0},  # tie: keeps file order
        {"reviewerID": "u2", "asin": "i2", "unixReviewTime": 50, "overall": 1.0},
        {"reviewerID": "u1", "asin": "i3", "unixReviewTime": 400, "overall": 5.0},
        {"reviewerID": "u3", "asin": "i4", "unixReviewTime": 10, "overall": 5.0},
        {"reviewerID": "u3", "asin": "i3", "unixReviewTime": 20, "overall": 5.0},
        {"reviewerID": "u4", "asin": "i4", "unixReviewTime": 30, "overall": 5.0},
    ]
    meta = [
        {
            "asin": "i1",
            "title": "Beaker <b>500&nbsp;mL</b>",
            "brand": "Lab&amp;Co",
            "category": ["Industrial & Scientific", "Lab Supplies"],
            "description": ['<p>Glass\tbeaker,\nheat "resistant"</p>', "Pack of 2"],
            "imageURLHighRes": [UNREACHABLE],
            "imageURL": ["http://127.0.0.1:9/small.jpg"],
        },
        {
            "asin": "i2",
            "title": "Tape",
            "categories": [["Industrial & Scientific", "Tapes"], ["Tapes", "Duct"]],
            "description": "Strong <br/>tape",
            "imUrl": "http://127.0.0.1:9/i2.jpg",
        },
        {"asin": "i9", "title": "Not reviewed"},
    ]
    write_lines(folder / "Industrial_and_Scientific.json.gz", reviews)
    write_lines(folder / "meta_Industrial_and_Scientific.json.gz", meta, as_python={1})
    return folder


def amazon_2023(folder):
    """Reviews + metadata in the 2023 layout (ms timestamps, parent_asin, store, images)."""
    folder.mkdir()
    reviews = [
        {"user_id": "A", "parent_asin": "P1", "asin": "c1", "timestamp": 1600000000500, "rating": 5.0},
        {"user_id": "A", "parent_asin": "P2", "asin": "c2", "timestamp": 1500000000000, "rating": 4.0},
        {"user_id": "B", "parent_asin": "P1", "asin": "c1", "timestamp": 1600000000000, "rating": 3.0},
        {"user_id": "B", "parent_asin": "P2", "asin": "c3", "timestamp": 1700000000000, "rating": 2.0},
    ]
    meta = [
        {
            "parent_asin": "P1",
            "title": "Gloves &amp; Mask",
            "store": "SafeCo",
            "categories": ["Safety", "Hand Protection"],
            "description": ["Nitrile <i>gloves</i>", "100 count"],
            "images": [{"thumb": "t.jpg", "large": "http://127.0.0.1:9/P1.jpg", "hi_res": None}],
        },
        {
            "parent_asin": "P2",
            "title": "Goggles",
            "store": "SafeCo",
            "categories": [],
            "description": [],
            "images": [],
        },
    ]
    write_lines(folder / "Industrial_and_Scientific.jsonl.gz", reviews)
    write_lines(folder / "meta_Industrial_and_Scientific.jsonl", meta)
    return folder


def test_amazon_2018_kcore_dedup_order_and_html(tmp_path):
    stats = amazon.convert(str(amazon_2018(tmp_path / "raw")), "Sci18", str(tmp_path / "out"), kcore_k=2)
    assert (stats["users"], stats["items"], stats["interactions"]) == (2, 3, 6)
    data_dir = tmp_path / "out" / "Sci18"
    header, rows = read_atomic(data_dir / "Sci18.inter")
    assert header == ["user_id:token", "item_id:token", "timestamp:float", "rating:float"]
    assert [row[:3] for row in rows] == [
        ["u1", "i1", "100"],
        ["u1", "i2", "200"],
        ["u1", "i3", "400"],
        ["u2", "i2", "50"],
        ["u2", "i3", "300"],
        ["u2", "i1", "300"],
    ]
    header, items = read_atomic(data_dir / "Sci18.item")
    assert header == [
        "item_id:token",
        "title:token_seq",
        "brand:token",
        "categories:token_seq",
        "text:token_seq",
        "image:token",
    ]
    by_id = read_items(data_dir / "Sci18.item")
    assert sorted(by_id) == ["i1", "i2", "i3"]  # i3 has no metadata but still gets a row
    assert by_id["i1"]["title"] == "Beaker 500 mL"
    assert by_id["i1"]["brand"] == "Lab&Co"
    assert by_id["i1"]["categories"] == "Industrial_&_Scientific Lab_Supplies"
    assert by_id["i1"]["text"] == (
        "Beaker 500 mL. Lab&Co. Industrial & Scientific, Lab Supplies. "
        "Glass beaker, heat 'resistant' Pack of 2"
    )
    assert by_id["i1"]["image"] == UNREACHABLE
    assert by_id["i2"]["categories"] == "Industrial_&_Scientific Tapes Duct"  # Python-literal meta line
    assert by_id["i2"]["text"] == "Tape. Industrial & Scientific, Tapes, Duct. Strong tape"
    assert by_id["i3"] == {
        "item_id": "i3",
        "title": "",
        "brand": "",
        "categories": "",
        "text": "",
        "image": "",
    }
    assert read_yaml(data_dir, "Sci18")["TIME_FIELD"] == "timestamp"


def test_amazon_2023_layout(tmp_path):
    stats = amazon.convert(str(amazon_2023(tmp_path / "raw")), "Sci23", str(tmp_path / "out"), kcore_k=2)
    assert (stats["users"], stats["items"], stats["interactions"]) == (2, 2, 4)
    data_dir = tmp_path / "out" / "Sci23"
    _, rows = read_atomic(data_dir / "Sci23.inter")
    assert [row[:3] for row in rows] == [
        ["A", "P2", "1500000000"],
        ["A", "P1", "1600000000.5"],
        ["B", "P1", "1600000000"],
        ["B", "P2", "1700000000"],
    ]
    items = read_items(data_dir / "Sci23.item")
    p1 = items["P1"]
    assert p1["title"] == "Gloves & Mask" and p1["brand"] == "SafeCo"
    assert p1["categories"] == "Safety Hand_Protection"
    assert p1["text"] == "Gloves & Mask. SafeCo. Safety, Hand Protection. Nitrile gloves 100 count"
    assert p1["image"] == "http://127.0.0.1:9/P1.jpg"
    assert items["P2"]["image"] == ""


def test_amazon_unreachable_images_are_reported_not_fatal(tmp_path, capsys):
    raw = amazon_2018(tmp_path / "raw")
    cache = tmp_path / "images"
    cache.mkdir()
    (cache / "i2.jpg").write_bytes(b"already here")
    status = amazon.main(
        [
            "--input",
            str(raw),
            "--name",
            "Sci",
            "--output-dir",
            str(tmp_path / "out"),
            "--kcore",
            "2",
            "--download-images",
            str(cache),
            "--retries",
            "1",
        ]
    )
    assert status == 0
    printed = capsys.readouterr().out
    assert "1 downloaded" not in printed and "0 downloaded, 1 already cached, 1 failed" in printed
    assert f"failed: {UNREACHABLE}" in printed
    assert listing(cache) == ["i2.jpg"]
    assert (tmp_path / "out" / "Sci" / "Sci.inter").is_file()

    stats = amazon.convert(
        str(raw), "Sci", str(tmp_path / "out"), kcore_k=2, download_images_dir=str(cache), retries=0
    )
    assert stats["image_download"]["failed"][0][0] == UNREACHABLE
    assert "refused" in stats["image_download"]["failed"][0][1].lower()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def test_amazon_image_download_and_cache(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    (served / "pic.png").write_bytes(b"\x89PNG fake")
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(served))
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    urls = {"i1": f"{base}/pic.png", "i/2": f"{base}/gone.jpg"}
    try:
        report = amazon.download_images(urls, str(tmp_path / "cache"), retries=0)
        assert report["downloaded"] == 1 and report["cached"] == 0
        assert report["failed"] == [(f"{base}/gone.jpg", "HTTP Error 404: File not found")]
        assert (tmp_path / "cache" / "i1.png").read_bytes() == b"\x89PNG fake"
        report = amazon.download_images(urls, str(tmp_path / "cache"), retries=0)
        assert (report["downloaded"], report["cached"], len(report["failed"])) == (0, 1, 1)
    finally:
        server.shutdown()
        server.server_close()
    assert listing(tmp_path / "cache") == ["i1.png"]


# --------------------------------------------------------------------------- bad input


def test_missing_inter_file_is_a_data_error_and_writes_nothing(tmp_path):
    source = tmp_path / "empty"
    source.mkdir()
    out = tmp_path / "out"
    with pytest.raises(DataError, match=r"empty: no \*\.train\.inter file"):
        unisrec.convert(str(source), "X", str(out))
    with pytest.raises(DataError, match=r"empty: no \*\.inter\.json file"):
        lcrec.convert(str(source), "X", str(out))
    with pytest.raises(DataError, match=r"u\.data: file not found"):
        movielens.convert(str(source), "X", str(out))
    with pytest.raises(DataError, match="expected exactly one review file"):
        amazon.convert(str(source), "X", str(out))
    assert listing(out) == []


def test_malformed_json_names_the_file_and_line(tmp_path):
    source = tmp_path / "lc"
    source.mkdir()
    (source / "Toy.inter.json").write_text('{\n  "0": [1, 2],\n  "1": [3 4]\n}\n')
    with pytest.raises(DataError, match=r"Toy\.inter\.json, line 3: malformed JSON"):
        lcrec.convert(str(source), "Toy", str(tmp_path / "out"))

    raw = amazon_2018(tmp_path / "raw")
    reviews = raw / "Industrial_and_Scientific.json.gz"
    with gzip.open(reviews, "at") as f:
        f.write("{'reviewerID': 'u9', 'asin':\n")
    with pytest.raises(DataError, match=r"Industrial_and_Scientific\.json\.gz, line 11: malformed JSON line"):
        amazon.convert(str(raw), "Bad", str(tmp_path / "out"))
    assert listing(tmp_path / "out") == []


def test_bad_rows_and_keys_are_reported(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    write_lines(raw / "reviews_Toys_5.json", [{"reviewerID": "u1", "asin": "i1"}])
    missing_time = r"reviews_Toys_5\.json, line 1: missing key 'unixReviewTime' / 'timestamp'"
    with pytest.raises(DataError, match=missing_time):
        amazon.convert(str(raw), "Bad", str(tmp_path / "out"))

    source = toy_unisrec(tmp_path / "uni", test_row="0\t0 1\t7")
    with pytest.raises(DataError, match=r"Toy\.test\.inter, line 2: unknown item index '7'"):
        unisrec.convert(str(source), "Toy", str(tmp_path / "out"))
    assert listing(tmp_path / "out") == []


def test_a_failure_while_writing_leaves_no_partial_dataset(tmp_path):
    source = toy_unisrec(tmp_path / "uni")
    np.array([[0.0, 1.0], [np.nan, 2.0]], dtype=np.float32).tofile(source / "Toy.feat1CLS")
    out = tmp_path / "out"
    with pytest.raises(DataError, match="non-finite"):
        unisrec.convert(str(source), "Toy", str(out), text_dim=2)
    assert listing(out) == []  # neither the dataset folder nor the staging folder remains
    with pytest.raises(DataError, match="not a multiple of dimension 3"):
        unisrec.convert(str(source), "Toy", str(out), text_dim=3)


def test_cli_prints_statistics_or_a_one_line_error(tmp_path, capsys):
    require_shared("amazon_instruments_mql4grec")
    assert lcrec.main(["--input", INSTRUMENTS, "--name", "Instr", "--output-dir", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "users           17,112" in printed and "avg seq length  7.96" in printed
    bad = subprocess.run(
        [
            sys.executable,
            os.path.join(SCRIPTS, "lcrec.py"),
            "--input",
            str(tmp_path / "nowhere"),
            "--name",
            "X",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2
    assert bad.stderr.startswith("error: ") and "nowhere: input folder not found" in bad.stderr
    assert "Traceback" not in bad.stderr


# --------------------------------------------------------------------------- shared helpers


def test_clean_text_and_item_text():
    assert common.clean_text('<p>A&amp;B\t"x"\n  y</p>') == "A&B 'x' y"
    assert common.clean_text(["one", None, "<b>two</b>"]) == "one two"
    assert common.category_tokens(["Lab & Tools", "", "Tapes"]) == "Lab_&_Tools Tapes"
    info = {"title": "Kit.", "brand": "Acme Inc.", "categories": ["A B"], "description": "<i>Fine</i>."}
    assert common.item_text(info) == "Kit. Acme Inc. A B. Fine"
    assert common.item_text({"text": "given\ttext", "title": "ignored"}) == "given text"


# --------------------------------------------------------------------------- command lines

CLI_MODULES = {
    "amazon.py": amazon,
    "encode_images.py": encode_images,
    "encode_text.py": encode_text,
    "lcrec.py": lcrec,
    "movielens.py": movielens,
    "unisrec.py": unisrec,
}


def run_cli(script, *args, cwd):
    """Run ``dataset_scripts/<script>`` in a subprocess from ``cwd`` with this checkout's package."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [REPO_DIR, os.environ.get("PYTHONPATH")])),
    }
    return subprocess.run(
        [sys.executable, os.path.join(SCRIPTS, script), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_every_script_is_a_cli_module():
    assert sorted(name for name in os.listdir(SCRIPTS) if name.endswith(".py")) == sorted(CLI_MODULES)


@pytest.mark.parametrize("script", sorted(CLI_MODULES))
def test_cli_help_runs_from_outside_the_repo(script, tmp_path):
    done = run_cli(script, "--help", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: ") and "--help" in done.stdout
    for flag in {"--output_dir", "--max_history", "--data_path", "--batch_size"} & set(done.stdout.split()):
        assert flag.replace("_", "-") in done.stdout  # the hyphen alias is listed with the option


def option_value(action):
    """A value that ``action`` accepts, as command-line words."""
    if action.nargs == 0:
        return []
    if action.choices:
        return [str(action.choices[-1])]
    return ["7" if action.type is int else "x"]


@pytest.mark.parametrize("script", sorted(CLI_MODULES))
def test_both_flag_spellings_are_accepted(script):
    """Every option has its underscore spelling first; the hyphen spelling parses to the same values."""
    parser = CLI_MODULES[script].build_parser()
    underscore, hyphen = [], []
    for action in parser._actions:
        if not action.option_strings or action.dest == "help":
            continue
        primary = action.option_strings[0]
        assert "-" not in primary[2:], primary
        assert action.option_strings[1:] == ([primary.replace("_", "-")] if "_" in primary else [])
        underscore += [primary, *option_value(action)]
        hyphen += [action.option_strings[-1], *option_value(action)]
    parsed = parser.parse_args(underscore)
    assert parsed == parser.parse_args(hyphen)
    assert all(value not in (None, False) for value in vars(parsed).values())


def test_abbreviated_options_still_work():
    """``--max`` names --max_history and its alias --max-history: one option, not ambiguous."""
    parser = unisrec.build_parser()
    parsed = parser.parse_args(["--input", "in", "--name", "N", "--max", "3", "--output", "out"])
    assert (parsed.max_history, parsed.output_dir) == (3, "out")


def test_underscore_and_hyphen_commands_write_the_same_dataset(tmp_path):
    source = str(toy_unisrec(tmp_path / "uni"))
    spellings = {"u": ("--output_dir", "--max_history"), "h": ("--output-dir", "--max-history")}
    printed = {}
    for out, (output_dir, max_history) in spellings.items():
        args = ["--input", source, "--name", "Toy", output_dir, str(tmp_path / out), max_history, "1"]
        done = run_cli("unisrec.py", *args, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        printed[out] = done.stdout.replace(str(tmp_path / out), "OUT")
    assert printed["u"] == printed["h"]
    names = listing(tmp_path / "h" / "Toy")
    assert names == listing(tmp_path / "u" / "Toy") and "Toy.train.inter" in names
    for name in names:
        assert (tmp_path / "u" / "Toy" / name).read_bytes() == (tmp_path / "h" / "Toy" / name).read_bytes()


def test_a_flag_error_names_the_underscore_spelling(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        unisrec.main(["--input", str(tmp_path), "--name", "X", "--max-history", "0"])
    assert exit_info.value.code == 2
    assert "--max_history must be at least 1" in capsys.readouterr().err
