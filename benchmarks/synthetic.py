"""Synthetic multi-modal catalogue for scale benchmarks: N items, clustered vectors, Zipf sessions.

Items belong to ``clusters`` clusters (mildly unequal sizes). Every item has a 32-d latent: its
cluster centre plus noise. The text-like (384-d), image-like (512-d) and behaviour-like (64-d)
vectors are fixed random projections of that shared latent plus a modality-specific part, a
common offset and noise, so the modalities are correlated through the clusters, as real
text/image embeddings of the same product are.

Users have 1-3 home clusters (drawn by cluster popularity) and sequences of ``5 + Poisson(mean
length - 5)`` items; each item is drawn from a home cluster with probability ``home_share`` and
from the whole catalogue otherwise, always with Zipf item popularity (exponent ``zipf``).

The output is a normal dataset folder (as the converters write): pre-split leave-one-out
``NAME.{train,valid,test}.inter`` files, ``NAME.item`` with every item (so RecBole's vocabulary
is the whole catalogue, interacted or not), ``NAME.text.npz`` / ``NAME.image.npz`` feature files,
``NAME.yaml`` and ``NAME.synthetic.json`` (the spec, to regenerate e.g. the behaviour vectors
with :func:`item_vectors`). It is built in a temporary folder next to the target and renamed
into place, users are written in chunks, and one modality matrix is in memory at a time (2 GB
for 1M image vectors). Everything is a function of the spec: the same seed gives the same bytes.

Usage:
    python benchmarks/synthetic.py --items 100000 [--users U] [--data_path dataset]
        [--name synth-100k] [--seed 0] [--force]
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
from dataclasses import asdict, dataclass

import numpy as np
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

# Rows generated per random stream: fixed, so the output never depends on memory settings.
ITEM_CHUNK = 65_536
USER_CHUNK = 16_384
DIMS = {"text": 384, "image": 512, "behaviour": 64}
LATENT_DIM, SPECIFIC_DIM = 32, 16
# Sub-stream ids of numpy's SeedSequence([seed, stream, ...]).
_CENTRES, _PROJECTION, _POPULARITY, _CLUSTERS, _LATENT, _VECTORS, _USERS = range(7)
_KIND_ID = {"text": 0, "image": 1, "behaviour": 2}


@dataclass(frozen=True)
class SyntheticSpec:
    """Everything the generated catalogue depends on.

    Attributes:
        items (int): Catalogue size N.
        users (int): Users (one sequence each).
        seed (int): Seed of every random stream.
        clusters (int): Item clusters.
        zipf (float): Exponent of the Zipf item popularity.
        mean_length (float): Mean sequence length (at least 5 items each).
        home_share (float): Share of a user's items drawn from their home clusters.
        max_history (int): Items kept per history in the atomic files (MAX_ITEM_LIST_LENGTH).
    """

    items: int
    users: int
    seed: int = 0
    clusters: int = 0
    zipf: float = 0.8
    mean_length: float = 8.0
    home_share: float = 0.9
    max_history: int = 50

    @classmethod
    def create(cls, items, users=None, seed=0, **overrides):
        """A spec with the default users (N / 8, >= 100) and clusters (sqrt N, >= 8) filled in."""
        users = users or max(100, items // 8)
        clusters = overrides.pop("clusters", None) or max(8, int(round(np.sqrt(items))))
        return cls(int(items), int(users), int(seed), int(clusters), **overrides)


def _rng(spec, *stream):
    return np.random.default_rng([spec.seed, *stream])


def item_clusters(spec):
    """Cluster of every item ``[N]``; cluster k has weight ``1 / sqrt(k + 1)`` (mildly unequal)."""
    weights = 1.0 / np.sqrt(np.arange(1, spec.clusters + 1))
    return _rng(spec, _CLUSTERS).choice(spec.clusters, size=spec.items, p=weights / weights.sum())


def popularity(spec):
    """Zipf weight of every item ``[N]``: ``rank ** -zipf`` over a random ranking of the items."""
    ranks = _rng(spec, _POPULARITY).permutation(spec.items) + 1
    return ranks.astype(np.float64) ** -spec.zipf


def _latents(spec, clusters, chunk):
    """Shared latents of the items of row chunk ``chunk``: cluster centre plus noise."""
    centres = _rng(spec, _CENTRES).normal(size=(spec.clusters, LATENT_DIM))
    rows = clusters[chunk * ITEM_CHUNK : (chunk + 1) * ITEM_CHUNK]
    return centres[rows] + 0.8 * _rng(spec, _LATENT, chunk).normal(size=(len(rows), LATENT_DIM))


def item_vectors(spec, kind, clusters=None):
    """``[N, d]`` float32 vectors of ``kind`` (``text``, ``image`` or ``behaviour``) for every item.

    ``h @ A + s @ B + offset + noise``: ``h`` the shared latent, ``s`` a per-item part of this
    kind only; ``A``, ``B`` and ``offset`` are fixed per kind.
    """
    dim, kind_id = DIMS[kind], _KIND_ID[kind]
    clusters = item_clusters(spec) if clusters is None else clusters
    projection = _rng(spec, _PROJECTION, kind_id)
    shared = projection.normal(size=(LATENT_DIM, dim)) / np.sqrt(LATENT_DIM)
    specific = projection.normal(size=(SPECIFIC_DIM, dim)) / np.sqrt(SPECIFIC_DIM)
    offset = projection.normal(size=dim)
    out = np.empty((spec.items, dim), dtype=np.float32)
    for chunk in range((spec.items + ITEM_CHUNK - 1) // ITEM_CHUNK):
        h = _latents(spec, clusters, chunk)
        rng = _rng(spec, _VECTORS, kind_id, chunk)
        own = rng.normal(size=(len(h), SPECIFIC_DIM)) @ specific
        noise = 0.3 * rng.normal(size=(len(h), dim))
        out[chunk * ITEM_CHUNK : chunk * ITEM_CHUNK + len(h)] = h @ shared + 0.5 * own + 0.5 * offset + noise
    return out


class _Sampler:
    """Zipf draws of items from one cluster or from the whole catalogue (inverse CDF)."""

    def __init__(self, spec, clusters):
        self.order = np.argsort(clusters, kind="stable")
        self.cum = np.cumsum(popularity(spec)[self.order])
        bounds = np.searchsorted(clusters[self.order], np.arange(spec.clusters + 1))
        self.start, self.end = bounds[:-1], bounds[1:]
        low = np.concatenate([[0.0], self.cum])
        self.low, self.mass = low[self.start], low[self.end] - low[self.start]

    def draw(self, rng, clusters):
        """One item per entry of ``clusters`` (-1: anywhere in the catalogue)."""
        anywhere = clusters < 0
        k = np.where(anywhere, 0, clusters)
        low = np.where(anywhere, 0.0, self.low[k])
        mass = np.where(anywhere, self.cum[-1], self.mass[k])
        index = np.searchsorted(self.cum, low + rng.random(len(k)) * mass, side="right")
        first = np.where(anywhere, 0, self.start[k])
        last = np.where(anywhere, len(self.cum), self.end[k]) - 1
        return self.order[np.clip(index, first, last)]


def user_sequences(spec, clusters=None):
    """Yield ``(user index, item indices)`` for every user, oldest item first."""
    clusters = item_clusters(spec) if clusters is None else clusters
    sampler = _Sampler(spec, clusters)
    cluster_mass = np.bincount(clusters, weights=popularity(spec), minlength=spec.clusters)
    cluster_p = cluster_mass / cluster_mass.sum()
    for chunk, first in enumerate(range(0, spec.users, USER_CHUNK)):
        rng = _rng(spec, _USERS, chunk)
        n = min(USER_CHUNK, spec.users - first)
        homes = rng.choice(spec.clusters, size=(n, 3), p=cluster_p)
        n_homes = 1 + rng.binomial(2, 0.3, size=n)
        lengths = 5 + rng.poisson(max(spec.mean_length - 5, 0.0), size=n)
        owner = np.repeat(np.arange(n), lengths)
        home = homes[owner, rng.integers(0, n_homes[owner])]
        picks = np.where(rng.random(len(owner)) < spec.home_share, home, -1)
        items = sampler.draw(rng, picks)
        for user, sequence in enumerate(np.split(items, np.cumsum(lengths)[:-1])):
            yield first + user, sequence


def _split_rows(user, tokens, max_history):
    """Leave-one-out rows of one sequence: train prefixes, then the valid row, then the test row."""

    def row(end):
        return f"{user}\t{' '.join(tokens[max(0, end - max_history) : end])}\t{tokens[end]}\n"

    n = len(tokens)
    return [row(end) for end in range(1, n - 2)], row(n - 2), row(n - 1)


def _write_interactions(spec, folder, name, clusters):
    """Stream the three benchmark files; return the number of interactions."""
    from recbole_bbq.converters.common import BENCHMARK_HEADER

    header = "\t".join(BENCHMARK_HEADER) + "\n"
    paths = {split: os.path.join(folder, f"{name}.{split}.inter") for split in ("train", "valid", "test")}
    files = {split: open(path, "w", encoding="utf-8") for split, path in paths.items()}
    interactions = 0
    try:
        for handle in files.values():
            handle.write(header)
        for user, sequence in user_sequences(spec, clusters):
            tokens = [f"i{item}" for item in sequence.tolist()]
            train, valid, test = _split_rows(f"u{user}", tokens, spec.max_history)
            files["train"].writelines(train)
            files["valid"].write(valid)
            files["test"].write(test)
            interactions += len(tokens)
    finally:
        for handle in files.values():
            handle.close()
    return interactions


def _write_folder(spec, folder, name):
    """Every file of the dataset into ``folder``; return the dataset statistics."""
    # Imported here: reading a spec (benchmarks/scale.py's parent process) needs no torch.
    from recbole_bbq.converters.common import benchmark_config
    from recbole_bbq.data.features import feature_path, write_feature_file

    clusters = item_clusters(spec)
    tokens = [f"i{item}" for item in range(spec.items)]
    with open(os.path.join(folder, f"{name}.item"), "w", encoding="utf-8") as f:
        f.write("item_id:token\n")
        f.writelines(f"{token}\n" for token in tokens)
    interactions = _write_interactions(spec, folder, name, clusters)
    for modality in ("text", "image"):
        meta = {"modality": modality, "encoder": "synthetic", "spec": asdict(spec)}
        vectors = item_vectors(spec, modality, clusters)
        write_feature_file(feature_path(folder, name, modality), tokens, vectors, meta=meta)
        del vectors
    config = {
        **benchmark_config(spec.max_history),
        "modalities": ["text", "image"],
        "modality_dims": {"text": DIMS["text"], "image": DIMS["image"]},
    }
    with open(os.path.join(folder, f"{name}.yaml"), "w", encoding="utf-8") as f:
        yaml.safe_dump(config, f, sort_keys=False)
    stats = {"users": spec.users, "items": spec.items, "interactions": interactions}
    with open(os.path.join(folder, f"{name}.synthetic.json"), "w", encoding="utf-8") as f:
        json.dump({"spec": asdict(spec), "stats": stats}, f, indent=1)
    return stats


def write_dataset(spec, data_path, name, force=False):
    """Write the dataset folder ``data_path/name`` atomically (temporary folder, then rename).

    Raises:
        FileExistsError: The folder exists and ``force`` is false.

    Returns:
        dict: ``users``, ``items`` and ``interactions``.
    """
    target = os.path.join(data_path, name)
    if os.path.exists(target) and not force:
        raise FileExistsError(f"{target} exists; pass --force to replace it")
    os.makedirs(data_path, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{name}.", dir=data_path)
    try:
        os.chmod(staging, 0o755)  # mkdtemp makes it private; a dataset folder is not
        stats = _write_folder(spec, staging, name)
        if os.path.exists(target):
            shutil.rmtree(target)
        os.rename(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return stats


def read_spec(data_path, name):
    """The :class:`SyntheticSpec` a dataset folder was generated with."""
    with open(os.path.join(data_path, name, f"{name}.synthetic.json"), encoding="utf-8") as f:
        return SyntheticSpec(**json.load(f)["spec"])


def default_name(items):
    """``synth-10k``, ``synth-1m``, ``synth-2500``."""
    for unit, size in (("m", 1_000_000), ("k", 1_000)):
        if items % size == 0:
            return f"synth-{items // size}{unit}"
    return f"synth-{items}"


def main(argv=None):
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--items", type=int, required=True, help="catalogue size N")
    parser.add_argument("--users", type=int, default=None, help="users (default N / 8, at least 100)")
    parser.add_argument("--data_path", default="dataset", help="folder that receives NAME/")
    parser.add_argument("--name", default=None, help="dataset name (default synth-<N>, e.g. synth-100k)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--clusters", type=int, default=None, help="item clusters (default sqrt N)")
    parser.add_argument("--force", action="store_true", help="replace an existing folder")
    args = parser.parse_args(argv)
    spec = SyntheticSpec.create(args.items, args.users, args.seed, clusters=args.clusters)
    name = args.name or default_name(args.items)
    stats = write_dataset(spec, args.data_path, name, force=args.force)
    print(
        f"{os.path.join(args.data_path, name)}: {stats['items']:,} items, {stats['users']:,} users, "
        f"{stats['interactions']:,} interactions, {spec.clusters} clusters"
    )


if __name__ == "__main__":
    main()
