"""Shared fixtures. ``recbole_bbq.compat`` must be imported before anything imports recbole."""

import os
import shutil
import socket
import sys

import recbole_bbq.compat  # noqa: F401  (first: numpy/torchvision fixes)

import numpy as np
import pytest

from recbole_bbq.data.features import feature_path, write_feature_file
from recbole_bbq.data.semantic_ids import semantic_id_path, write_semantic_id_file

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_DIR = os.path.dirname(TESTS_DIR)
TEST_DATA = os.path.join(TESTS_DIR, "test_data")
# The real datasets beside the clone; RECBOLE_BBQ_SHARED_DATA points elsewhere (a missing folder
# there shows what a lone clone sees).
SHARED_DATA = os.environ.get("RECBOLE_BBQ_SHARED_DATA") or os.path.abspath(
    os.path.join(REPO_DIR, "..", "shared", "data")
)
# The item tokens of ``tiny``, its 3-level published-style codes, and the sizes of the random
# feature vectors that tests give its items.
TINY_ITEMS = [f"i{i}" for i in range(1, 31)]
TINY_CODES = np.array([[i % 3, (i // 3) % 4, i // 12] for i in range(30)])
TINY_FEATURE_SIZES = {"text": 16, "image": 12}
# The generative backbone (TIGER, BBQRec, ...) at test size.
SMALL_BACKBONE = dict(
    d_model=32, n_layers=1, n_decoder_layers=1, n_heads=2, d_kv=16, d_ff=64, history_length=5
)


@pytest.fixture(autouse=True)
def isolated_run(tmp_path, monkeypatch):
    """Keep pytest's flags out of RecBole's Config (it parses sys.argv) and keep
    RecBole's ./log, ./log_tensorboard and ./saved folders inside a temp directory."""
    monkeypatch.setattr(sys, "argv", [sys.argv[0]])
    monkeypatch.chdir(tmp_path)
    yield


def tiny_config(tmp_path, **overrides):
    """A 1-epoch, quiet config on the synthetic ``tiny`` dataset."""
    config = {
        "data_path": TEST_DATA,
        "checkpoint_dir": str(tmp_path / "saved"),
        "epochs": 1,
        "train_batch_size": 64,
        "eval_batch_size": 64,
        "show_progress": False,
        "state": "ERROR",
        "seed": 2020,
    }
    config.update(overrides)
    return config


def copy_tiny_with_features(root, modalities=("text", "image"), published=True):
    """Copy ``tiny`` into ``root / "tiny"`` with random feature files (seed 0, drawn in the order of
    ``modalities``) and, with ``published``, :data:`TINY_CODES` as the ``published`` code file.

    Returns:
        numpy.random.Generator: The generator that drew the features, for further draws.
    """
    shutil.copytree(os.path.join(TEST_DATA, "tiny"), root / "tiny")
    rng = np.random.default_rng(0)
    for modality in modalities:
        vectors = rng.normal(size=(len(TINY_ITEMS), TINY_FEATURE_SIZES[modality]))
        write_feature_file(feature_path(root / "tiny", "tiny", modality), TINY_ITEMS, vectors)
    if published:
        write_semantic_id_file(semantic_id_path(root / "tiny", "tiny", "published"), TINY_ITEMS, TINY_CODES)
    return rng


def free_port():
    """A TCP port that is free on localhost right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return str(sock.getsockname()[1])


def require_shared(folder):
    """Skip the calling test when ``../shared/data/<folder>`` is missing (a fresh clone has no
    ``../shared``); with ``RECBOLE_BBQ_REQUIRE_SHARED_DATA=1`` (CI) fail instead."""
    path = os.path.join(SHARED_DATA, folder)
    if not os.path.isdir(path):
        reason = f"shared dataset folder {path} is missing"
        if os.environ.get("RECBOLE_BBQ_REQUIRE_SHARED_DATA") == "1":
            pytest.fail(reason + " (RECBOLE_BBQ_REQUIRE_SHARED_DATA=1)")
        pytest.skip(reason)
    return path


def keep_first_users(folder, name, n_users):
    """Restrict the interaction files (pre-split ``name.{train,valid,test}.inter`` or one
    ``name.inter``) to the first ``n_users`` users."""
    pre_split = (folder / f"{name}.test.inter").is_file()
    paths = (
        [folder / f"{name}.{s}.inter" for s in ("train", "valid", "test")]
        if pre_split
        else [folder / f"{name}.inter"]
    )
    header, *rows = paths[-1].read_text().splitlines()
    users = set(list(dict.fromkeys(row.split("\t")[0] for row in rows))[:n_users])
    for path in paths:
        header, *rows = path.read_text().splitlines()
        path.write_text("\n".join([header, *[r for r in rows if r.split("\t")[0] in users]]) + "\n")


@pytest.fixture(scope="session")
def scientific_slice(tmp_path_factory):
    """Scientific-MM (real text/image vectors) restricted to its first 300 users.

    Returns the data_path that holds the converted ``Scientific`` folder.
    """
    from recbole_bbq.converters import unisrec

    source = require_shared("amazon_scientific_mm")
    root = tmp_path_factory.mktemp("scientific")
    unisrec.convert(source, "Scientific", str(root))
    keep_first_users(root / "Scientific", "Scientific", 300)
    return root


@pytest.fixture(scope="session")
def instruments_slice(tmp_path_factory):
    """Instruments (MQL4GRec codes, code-derived text/image modalities), first 200 users."""
    source = require_shared("amazon_instruments_mql4grec")
    from recbole_bbq.converters import lcrec

    root = tmp_path_factory.mktemp("instruments")
    lcrec.convert(source, "Instruments", str(root), code_features="index_lemb=text,index_vitemb=image")
    keep_first_users(root / "Instruments", "Instruments", 200)
    return root
