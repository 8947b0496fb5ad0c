"""Scale benchmark: BBQ tokenizer, trie, inference and training at N = 10k, 100k, 1M items.

For every N a synthetic catalogue (``benchmarks/synthetic.py``, generated when missing) is
measured in a fresh subprocess, so peak RSS is per N:

* tokenizer: ``BBQTokenizer.fit`` on the synthetic text (384-d) and image (512-d) vectors plus
  synthetic 64-d behaviour vectors from the same clusters (no behaviour SASRec is trained),
  default tokenizer settings except ``epochs``; wall time (k-means initialisation included),
  peak RSS of the process at the end of the fit (the inputs included), collision rate before
  dedup;
* trie: build time and size of the ``SemanticIDTrie`` over the deduplicated semantic IDs;
* latency: per-user ``full_sort_predict`` at batch 1 (median over users) and at ``--batch_size``
  (median over repeats) of BBQRec beam search, BBQRec ``dense`` and SASRec full-sort.
  Models are randomly initialised (work does not depend on the weights) at the CPU sizes:
  BBQRec with ``benchmarks/configs/cpu_small.yaml``'s backbone, SASRec with RecBole's defaults;
* training: seconds per 10k training sequences of BBQRec and SASRec (plain Adam steps on the
  synthetic sequences, batch loading included, the first steps not timed), at most
  ``--train_steps`` steps or ``--train_seconds`` seconds per model.

Each N writes ``<results_dir>/n<N>.json``; a rerun reuses finished N (``--force`` remeasures).
Then one table is printed and ``<results_dir>/scale.png`` is drawn (log-log).

Usage:
    python benchmarks/scale.py [--items 10000,100000,1000000] [--data_path dataset]
        [--results_dir results/scale] [--tokenizer_epochs auto] [--train_steps 200]
"""

import argparse
import itertools
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH)
sys.path[:0] = [REPO, BENCH]

import numpy as np  # noqa: E402
import synthetic  # noqa: E402

CPU_SMALL = os.path.join(BENCH, "configs", "cpu_small.yaml")
BACKBONE_KEYS = ("d_model", "n_layers", "n_decoder_layers", "n_heads", "d_kv", "d_ff")
WARMUP_STEPS = 2
CHILD_OPTIONS = (
    "data_path",
    "results_dir",
    "tokenizer_epochs",
    "codebook_size",
    "train_steps",
    "train_seconds",
    "latency_users",
    "latency_repeats",
    "batch_size",
    "seed",
    "device",
)


def auto_epochs(items):
    """Default tokenizer epochs: 20 up to 50k items, then fewer (10 at 100k, 3 at 1M)."""
    return max(3, min(20, 1_000_000 // items))


def tokenizer_epochs(args, items):
    return auto_epochs(items) if args.tokenizer_epochs == "auto" else int(args.tokenizer_epochs)


def peak_rss_gb():
    """Peak resident memory of this process so far (ru_maxrss is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def record_path(results_dir, items):
    return os.path.join(results_dir, f"n{items}.json")


# --------------------------------------------------------------------------- child: one N


def measure_tokenizer(args, spec, name, items):
    """Fit and encode; return the record part, the item tokens and the encoded items."""
    from recbole_bbq.data.features import feature_path, read_feature_file
    from recbole_bbq.tokenizer.tokenizer import BBQTokenizer, code_statistics

    folder = os.path.join(args.data_path, name)
    files = {m: read_feature_file(feature_path(folder, name, m)) for m in ("text", "image")}
    tokens, features = files["text"].tokens, {m: f.features for m, f in files.items()}
    del files
    behaviour = synthetic.item_vectors(spec, "behaviour")
    epochs = tokenizer_epochs(args, items)
    rss_inputs = peak_rss_gb()
    start = time.perf_counter()
    tokenizer = BBQTokenizer(epochs=epochs, codebook_size=args.codebook_size)
    tokenizer.fit(features, behaviour, device=args.device, show_progress=False)
    fit_s = time.perf_counter() - start
    rss_fit = peak_rss_gb()
    start = time.perf_counter()
    encoded = tokenizer.encode(features, behaviour)
    encode_s = time.perf_counter() - start
    del encoded["latents"]  # not needed below (1 GB at 1M items)
    stats = code_statistics(encoded["codes"]["fused"], args.codebook_size)
    part = {
        "epochs": epochs,
        "fit_s": fit_s,
        "init_s": fit_s - tokenizer.fit_seconds,  # k-means initialisation (and setup)
        "rss_inputs_gb": rss_inputs,
        "rss_fit_gb": rss_fit,
        "encode_s": encode_s,
        "collision_rate": stats["collision_rate"],
        "max_dedup_code": stats["max_dedup_code"],
    }
    return part, tokens, encoded, tokenizer.params


def measure_trie(semantic_ids):
    """Build time (best of 3) and size of the trie over ``semantic_ids`` [N, L+1]."""
    import torch

    from recbole_bbq.model.beam_search import SemanticIDTrie

    codes = torch.as_tensor(np.concatenate([np.zeros((1, semantic_ids.shape[1]), np.int64), semantic_ids]))
    vocab = (codes[1:].max(dim=0).values + 1).tolist()
    times = []
    for _ in range(3):
        start = time.perf_counter()
        trie = SemanticIDTrie(codes, vocab)
        times.append(time.perf_counter() - start)
    size = sum(buffer.numel() * buffer.element_size() for buffer in trie.buffers())
    return {"build_s": min(times), "mb": size / 2**20, "prefixes": trie.num_prefixes, "vocab": vocab}


def model_config(model, args, name, artifact, workdir):
    """Config of ``model`` on the synthetic dataset with the tokenizer artifact attached."""
    import yaml

    from recbole_bbq.config import Config

    with open(CPU_SMALL, encoding="utf-8") as f:
        backbone = {k: v for k, v in yaml.safe_load(f).items() if k in BACKBONE_KEYS}
    settings = {
        **backbone,
        "data_path": args.data_path,
        "semantic_ids_file": artifact,
        "modalities": [],  # the models read the artifact's quantized vectors, not the features
        "checkpoint_dir": os.path.join(workdir, "saved"),
        "seed": 2020,
        "state": "ERROR",
        "show_progress": False,
        "use_gpu": args.device.startswith("cuda"),
        "train_batch_size": args.batch_size,
        "eval_batch_size": args.batch_size,
        "train_neg_sample_args": None,
    }
    return Config(model, name, config_dict=settings)


def measure_latency(predict, batch, args):
    """(batch-1 median ms, full-batch median ms) of ``predict``."""
    import torch

    from _bench import median, timed

    with torch.no_grad():
        predict(batch[:1]), predict(batch)  # warm-up (allocator, lazy buffers)
        single = timed(
            predict, [batch[i : i + 1] for i in range(min(args.latency_users, len(batch)))], args.device
        )
        full = timed(predict, [batch] * args.latency_repeats, args.device)
    return {"b1_ms": 1e3 * median(single), "batch_ms": 1e3 * median(full), "batch": len(batch)}


def _endless(train_data):
    """Training batches, epoch after epoch."""
    while True:
        empty = True
        for batch in train_data:
            empty = False
            yield batch
        if empty:
            raise SystemExit("error: the synthetic dataset has no training batches")


def measure_training(model, train_data, args):
    """Seconds per 10k training sequences: Adam steps (batch loading included), the first
    ``WARMUP_STEPS`` untimed, then at most ``--train_steps`` steps or ``--train_seconds``."""
    import torch

    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    batches = _endless(train_data)
    elapsed, sequences, steps = 0.0, 0, 0
    for index in itertools.count():
        start = time.perf_counter()
        batch = next(batches).to(args.device)
        loss = model.calculate_loss(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if index < WARMUP_STEPS:
            continue
        elapsed += time.perf_counter() - start
        sequences, steps = sequences + len(batch), steps + 1
        if steps >= args.train_steps or elapsed >= args.train_seconds:
            break
    model.eval()
    return {"s_per_10k": 1e4 * elapsed / sequences, "steps": steps}


def measure_models(args, name, artifact, workdir):
    """Latency of BBQRec (beam, dense) and SASRec, then their training speed."""
    from recbole.utils import init_seed

    from recbole_bbq.utils import create_dataset, data_preparation, get_model

    config = model_config("BBQRec", args, name, artifact, workdir)
    init_seed(config["seed"], config["reproducibility"])
    train_data, _, test_data = data_preparation(config, create_dataset(config))
    dataset = train_data._dataset
    bbqrec = get_model("BBQRec")(config, dataset).to(config["device"]).eval()
    sasrec_config = model_config("SASRec", args, name, artifact, workdir)
    sasrec = get_model("SASRec")(sasrec_config, dataset).to(config["device"]).eval()
    batch = next(iter(test_data))[0].to(config["device"])
    latency = {"bbqrec_beam": measure_latency(bbqrec.full_sort_predict, batch, args)}
    bbqrec.score_mode = "dense"
    latency["bbqrec_dense"] = measure_latency(bbqrec.full_sort_predict, batch, args)
    bbqrec.score_mode = "beam"
    latency["sasrec"] = measure_latency(sasrec.full_sort_predict, batch, args)
    training = {
        "bbqrec": measure_training(bbqrec, train_data, args),
        "sasrec": measure_training(sasrec, train_data, args),
    }
    return {"n_items": int(dataset.item_num), "latency": latency, "training": training}


def write_json(path, record):
    """Write ``record`` atomically (a killed run leaves no half-written record)."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(record, f, indent=1)
    os.replace(tmp, path)


def run_child(args, items):
    """Measure one N (in its own process) and write its record."""
    import torch

    from recbole_bbq.tokenizer.stage import save_artifact

    start = time.perf_counter()
    name = synthetic.default_name(items)
    spec = synthetic.read_spec(args.data_path, name)
    tokenizer, tokens, encoded, params = measure_tokenizer(args, spec, name, items)
    trie = measure_trie(encoded["semantic_ids"])
    # The artifact (1 GB at 1M items) lives beside the datasets, not in the results folder.
    with tempfile.TemporaryDirectory(prefix=".scale-", dir=args.data_path) as workdir:
        artifact = os.path.join(workdir, f"{name}.bbq-scale.sid.npz")
        meta = {"cache_key": "scale-benchmark", "params": params, "modalities": ["text", "image"]}
        save_artifact(artifact, list(tokens), encoded, {"collision_rate": tokenizer["collision_rate"]}, meta)
        del encoded, tokens
        models = measure_models(args, name, artifact, workdir)
    record = {
        "items": items,
        "users": spec.users,
        "dataset": name,
        "threads": torch.get_num_threads(),
        "device": args.device,
        "settings": {
            key: getattr(args, key) for key in CHILD_OPTIONS if key not in ("data_path", "results_dir")
        },
        "tokenizer": tokenizer,
        "trie": trie,
        **models,
        "peak_rss_gb": peak_rss_gb(),
        "wall_s": time.perf_counter() - start,
    }
    with open(os.path.join(args.data_path, name, f"{name}.synthetic.json"), encoding="utf-8") as f:
        record["interactions"] = json.load(f)["stats"]["interactions"]
    write_json(record_path(args.results_dir, items), record)


# --------------------------------------------------------------------------- parent: every N


def ensure_dataset(args, items):
    """Generate the synthetic dataset of ``items`` items unless it is there (same seed)."""
    name = synthetic.default_name(items)
    if os.path.isdir(os.path.join(args.data_path, name)):
        spec = synthetic.read_spec(args.data_path, name)
        if spec.items != items or spec.seed != args.seed:
            raise SystemExit(f"error: {args.data_path}/{name} was generated with another spec ({spec})")
        return
    spec = synthetic.SyntheticSpec.create(items, seed=args.seed)
    stats = synthetic.write_dataset(spec, args.data_path, name)
    print(
        f"N={items:,}: generated {args.data_path}/{name} ({stats['interactions']:,} interactions)", flush=True
    )


def measure(args, items):
    """The record of ``items``: reused when present, else measured in a fresh subprocess."""
    path = record_path(args.results_dir, items)
    if os.path.isfile(path) and not args.force:
        print(f"N={items:,}: reusing {path}", flush=True)
    else:
        ensure_dataset(args, items)
        print(f"N={items:,}: measuring (fresh process)", flush=True)
        command = [sys.executable, os.path.abspath(__file__), "--child", str(items)]
        for key in CHILD_OPTIONS:
            command += [f"--{key}", str(getattr(args, key))]
        subprocess.run(command, check=True)
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def per_user_ms(record, model, batched):
    """ms per user: a batch-1 call, or one full-batch call divided by the batch size."""
    latency = record["latency"][model]
    return latency["batch_ms"] / latency["batch"] if batched else latency["b1_ms"]


COLUMNS = (
    ("items", 9, lambda r: f"{r['items']:,}"),
    ("users", 8, lambda r: f"{r['users']:,}"),
    ("inter", 9, lambda r: f"{r['interactions']:,}"),
    ("ep", 3, lambda r: str(r["tokenizer"]["epochs"])),
    ("fit s", 7, lambda r: f"{r['tokenizer']['fit_s']:.0f}"),
    ("init s", 6, lambda r: f"{r['tokenizer']['init_s']:.0f}"),
    ("RSS GB", 6, lambda r: f"{r['tokenizer']['rss_fit_gb']:.2f}"),
    ("coll", 6, lambda r: f"{r['tokenizer']['collision_rate']:.3f}"),
    ("trie ms", 7, lambda r: f"{1e3 * r['trie']['build_s']:.1f}"),
    ("trie MB", 7, lambda r: f"{r['trie']['mb']:.1f}"),
    ("beam1", 7, lambda r: f"{r['latency']['bbqrec_beam']['b1_ms']:.1f}"),
    ("dense1", 7, lambda r: f"{r['latency']['bbqrec_dense']['b1_ms']:.1f}"),
    ("sas1", 7, lambda r: f"{r['latency']['sasrec']['b1_ms']:.1f}"),
    ("beamB", 7, lambda r: f"{per_user_ms(r, 'bbqrec_beam', True):.2f}"),
    ("denseB", 7, lambda r: f"{per_user_ms(r, 'bbqrec_dense', True):.2f}"),
    ("sasB", 7, lambda r: f"{per_user_ms(r, 'sasrec', True):.2f}"),
    ("bbq tr", 7, lambda r: f"{r['training']['bbqrec']['s_per_10k']:.1f}"),
    ("sas tr", 7, lambda r: f"{r['training']['sasrec']['s_per_10k']:.1f}"),
)


def format_table(records):
    """The one table: a header that states the settings, then one row per N."""
    first = records[0]
    batch = first["latency"]["sasrec"]["batch"]
    lines = [
        f"scale benchmark, {first['device']} ({first['threads']} threads); tokenizer epochs per N in 'ep' "
        f"(K={first['settings']['codebook_size']}, other tokenizer settings default)",
        "fit s: BBQ tokenizer fit wall time (init s: its k-means part); RSS GB: peak RSS of the process "
        "after the fit (inputs included); coll: collision rate before dedup",
        f"per-user latency ms, random-init CPU-size models: *1 = a batch of 1, *B = a batch of {batch} / "
        f"{batch}; beam/dense = BBQRec score_mode, sas = SASRec full sort; tr = training s per 10k sequences",
        "  ".join(f"{title:>{width}}" for title, width, _ in COLUMNS),
    ]
    lines += ["  ".join(f"{cell(r):>{width}}" for _, width, cell in COLUMNS) for r in records]
    return "\n".join(lines)


def draw(records, path):
    """Log-log plot of times and memory against N."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = [r["items"] for r in records]
    panels = {
        "tokenizer and trie": {
            "fit s": [r["tokenizer"]["fit_s"] for r in records],
            "peak RSS GB": [r["tokenizer"]["rss_fit_gb"] for r in records],
            "trie MB": [r["trie"]["mb"] for r in records],
        },
        "per-user latency ms": {
            f"{label} {'batch' if batched else 'b1'}": [per_user_ms(r, key, batched) for r in records]
            for key, label in (("bbqrec_beam", "beam"), ("bbqrec_dense", "dense"), ("sasrec", "SASRec"))
            for batched in (False, True)
        },
        "training s per 10k sequences": {
            "BBQRec": [r["training"]["bbqrec"]["s_per_10k"] for r in records],
            "SASRec": [r["training"]["sasrec"]["s_per_10k"] for r in records],
        },
    }
    figure, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4))
    for axis, (title, lines) in zip(axes, panels.items()):
        for label, values in lines.items():
            axis.plot(n, values, marker="o", label=label)
        axis.set(xscale="log", yscale="log", title=title, xlabel="items")
        axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--items", default="10000,100000,1000000", help="comma-separated catalogue sizes")
    parser.add_argument("--data_path", default="dataset", help="where the synthetic datasets live")
    parser.add_argument("--results_dir", default=os.path.join("results", "scale"))
    parser.add_argument(
        "--tokenizer_epochs",
        default="auto",
        help="epochs of every fit, or auto (20 to 50k items, 10 at 100k, 3 at 1M)",
    )
    parser.add_argument("--codebook_size", type=int, default=256, help="tokenizer K")
    parser.add_argument("--train_steps", type=int, default=200, help="timed training steps per model")
    parser.add_argument("--train_seconds", type=float, default=300.0, help="training time budget per model")
    parser.add_argument("--latency_users", type=int, default=20, help="batch-1 calls timed")
    parser.add_argument("--latency_repeats", type=int, default=3, help="full-batch calls timed")
    parser.add_argument("--batch_size", type=int, default=256, help="latency batch and training batch")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic data")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--force", action="store_true", help="remeasure N that have a record")
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    sys.argv = sys.argv[:1]  # RecBole's Config parses sys.argv
    os.makedirs(args.results_dir, exist_ok=True)
    if args.child is not None:
        run_child(args, args.child)
        return
    records = [measure(args, int(items)) for items in args.items.split(",")]
    print(format_table(records))
    draw(records, os.path.join(args.results_dir, "scale.png"))
    print(f"plot: {os.path.join(args.results_dir, 'scale.png')}")


if __name__ == "__main__":
    main()
