"""Command-line entry point of recbole-bbq (mirrors RecBole's run_recbole.py).

Examples:
    python run_recbole_bbq.py --model=SASRec --dataset=ml-100k
    python run_recbole_bbq.py --model=SASRec --dataset=ml-100k --epochs=5 --learning_rate=0.002
    python run_recbole_bbq.py --model=SASRec --nproc=2          # 2 processes (GPUs, or gloo on CPU)
    python run_recbole_bbq.py --model=BBQRec --dataset=Scientific --stage=tokenize

Tuning on valid, the same budget for every model (tuning.md, tuned.yaml; resumable):
    python run_recbole_bbq.py --tune --model=SASRec,BBQRec --dataset=Scientific \\
        --config_files="benchmarks/configs/scientific.yaml benchmarks/configs/tuning/scientific.yaml"

Comparison (every model x seed under one protocol; results/<dataset>/comparison.md, .csv, .png,
protocol.json and runs/<model>-seed<seed>.json; a rerun skips the finished runs):
    python run_recbole_bbq.py --model=SASRec,TIGER,BBQRec --dataset=Scientific --seeds=2020,2021,2022
    python run_recbole_bbq.py --model=SASRec,GRU4Rec --dataset=ml-100k --seeds=1,2 --results_dir=out

Serving a saved model (JSON lines on stdout) and adding items without retraining:
    python run_recbole_bbq.py --recommend --model_file=saved/bbq-best.pth --users=196,186 --k=10
    python run_recbole_bbq.py --recommend --model_file=saved/bbq-best.pth --histories=histories.jsonl
    python run_recbole_bbq.py --add_items --model_file=saved/bbq-best.pth --features=text=new.text.npz

Any ``--key=value`` that is not an option below is passed to RecBole's Config as an override
(in a comparison: to every run); ``--seed=N`` sets the seed of a single run. Options must be
spelt out in full (``--see=5`` is an unknown key, not ``--seeds``).
"""

import argparse
import contextlib
import sys

from recbole_bbq.errors import ConfigError, exit_status

DEFAULT_MODEL = "BBQRec"
DEFAULT_DATASET = "ml-100k"
# The program name of a command line run without one (sys.argv empty, e.g. an embedded interpreter).
DEFAULT_PROGRAM = "run_recbole_bbq.py"


def build_parser():
    # No abbreviations: a prefix such as --seed or --see would otherwise silently become --seeds
    # and start a comparison, instead of reaching RecBole's Config as a key.
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False
    )
    parser.add_argument("--model", "-m", default=DEFAULT_MODEL, help="model name")
    parser.add_argument("--dataset", "-d", default=DEFAULT_DATASET, help="dataset name")
    parser.add_argument("--config_files", default=None, help="space-separated YAML files, later ones win")
    parser.add_argument(
        "--stage",
        default="train",
        choices=["features", "behaviour", "behavior", "tokenize", "train"],
        help="run --model's pipeline up to this stage (default: train, i.e. everything); "
        "features/behaviour (alias behavior)/tokenize exist for the models that need them "
        "(BBQRec, BBQSASRec: all three; TIGER, MMTIGER: features, tokenize; UniSRec: features)",
    )
    parser.add_argument(
        "--seeds",
        type=parse_seeds,
        default=None,
        help="comma-separated seeds, e.g. 2020,2021,2022: compare every --model (comma-separated) "
        "over these seeds",
    )
    parser.add_argument(
        "--results_dir", default="results", help="root folder of comparison results (default: results)"
    )
    parser.add_argument(
        "--report_only",
        action="store_true",
        help="comparison: train nothing, rebuild the report from the finished runs",
    )
    parser.add_argument(
        "--tune",
        action="store_true",
        help="tune every --model (comma-separated; models or compare_variants labels) on valid with "
        "the same budget (the 'tuning' section of --config_files); writes tuning.md and tuned.yaml",
    )
    parser.add_argument(
        "--prune_cache",
        "--prune-cache",
        action="store_true",
        help="list the artifacts in the dataset folder that no current config (--config_files) "
        "uses; add --confirm to remove them",
    )
    parser.add_argument("--confirm", action="store_true", help="with --prune-cache: remove the listed files")
    add_serving_arguments(parser)
    parser.add_argument("--nproc", type=int, default=1, help="processes on this node")
    parser.add_argument("--ip", default="localhost", help="address of the rank-0 node")
    parser.add_argument("--port", default="5678", help="free TCP port on the rank-0 node")
    parser.add_argument("--world_size", type=int, default=-1, help="processes over all nodes (-1: nproc)")
    parser.add_argument(
        "--group_offset", type=int, default=0, help="global rank of this node's first process"
    )
    return parser


def add_serving_arguments(parser):
    """``--recommend`` and ``--add_items`` with their options."""
    group = parser.add_argument_group("serving a saved model")
    group.add_argument(
        "--recommend", action="store_true", help="print the top --k items of --users or --histories"
    )
    group.add_argument(
        "--add_items",
        action="store_true",
        help="add the items of --features to --model_file without retraining",
    )
    group.add_argument("--model_file", default=None, help="a saved model (checkpoint_dir/<name>.pth)")
    group.add_argument("--users", default=None, help="comma-separated user tokens")
    group.add_argument(
        "--histories",
        default=None,
        help='JSON-lines file, one {"id": ..., "history": [item tokens, oldest first]} per line',
    )
    group.add_argument("--k", type=int, default=10, help="items per user (default 10)")
    group.add_argument(
        "--features",
        default=None,
        help="new items' feature files per modality, e.g. text=new.text.npz,image=new.image.npz",
    )
    group.add_argument(
        "--output_file", default=None, help="--add_items: updated model file (default: in place)"
    )
    group.add_argument(
        "--id_rows",
        default="zero",
        help="--add_items: learned per-item rows (BBQRec's z_ID) of new items: zero (default), the "
        "trained items' mean, or the row of the trained item with the closest feature vectors",
    )


def parse_seeds(text):
    """``"2020,2021"`` -> ``[2020, 2021]`` (an argparse type)."""
    try:
        seeds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--seeds must be comma-separated integers, got '{text}'") from None
    if not seeds:
        raise argparse.ArgumentTypeError("--seeds needs at least one seed")
    return seeds


def is_comparison(args):
    """A comparison runs when several models or ``--seeds`` are given."""
    return "," in args.model or args.seeds is not None


def run_comparison_cli(args, config_file_list, argv):
    """Run :func:`recbole_bbq.compare.run_comparison`; print where the report is and its table.

    Returns:
        int: 0 when at least one run succeeded, 1 when every run failed.
    """
    if args.stage != "train":
        raise ConfigError("--stage applies to one model; a comparison always trains (drop --stage)")
    if args.nproc != 1 or args.world_size > 0:
        raise ConfigError("a comparison runs in one process; drop --nproc/--world_size")
    if args.seeds is not None and any(arg.startswith("--seed=") for arg in argv):
        raise ConfigError("--seed=... would override every run's seed; give the seeds with --seeds only")
    from recbole_bbq.compare import run_comparison

    summary = run_comparison(
        [m for m in args.model.split(",") if m.strip()],
        args.dataset,
        args.seeds,
        config_file_list=config_file_list,
        results_dir=args.results_dir,
        report_only=args.report_only,
        argv=[program_name(), *argv],  # recorded in protocol.json; its --key=value options per cell
    )
    print(f"\ncomparison: {summary['markdown']}")
    print(summary["table"])
    if summary["n_failed"]:
        total = summary["n_ok"] + summary["n_failed"]
        print(f"{summary['n_failed']} of {total} runs failed (see the report)")
    if summary.get("n_not_run"):
        print(f"{summary['n_not_run']} cells have no run yet (the report lists their seeds)")
    return 0 if summary["n_ok"] else 1


def tune_cli(args, config_file_list):
    """Run :func:`recbole_bbq.tuning.run_tuning`; print where its reports are."""
    if args.seeds is not None or args.stage != "train":
        raise ConfigError(
            "--tune picks settings on valid with the tuning section's seed; drop --seeds/--stage"
        )
    if args.nproc != 1 or args.world_size > 0:
        raise ConfigError("--tune runs its trials in one process; drop --nproc/--world_size")
    from recbole_bbq.tuning import run_tuning

    labels = [m for m in args.model.split(",") if m.strip()]
    paths = run_tuning(labels, args.dataset, config_file_list, args.results_dir, report_only=args.report_only)
    print(f"tuning: {paths['markdown']}\nbest settings (compare_variants): {paths['yaml']}")
    return 0


def prune_cache_cli(args, config_file_list):
    """List (or with ``--confirm`` remove) the dataset's artifacts that no current config uses."""
    from recbole_bbq.cache import prune_cache

    paths = prune_cache(args.dataset, config_file_list, dry_run=not args.confirm)
    for path in paths:
        print(path)
    if not paths:
        print(f"prune-cache: no unused artifacts for {args.dataset}")
    elif args.confirm:
        print(f"prune-cache: removed {len(paths)} files")
    else:
        print(f"prune-cache: {len(paths)} files unused by these configs; rerun with --confirm to remove them")
    return 0


def recommend_cli(args):
    """Print one JSON line per user, then per history: ``{"user"|"id": ..., "items", "scores"}``."""
    from recbole_bbq.quick_start import load_data_and_model
    from recbole_bbq.recommend import read_histories, topk

    if not args.model_file or not (args.users or args.histories):
        raise ConfigError("--recommend needs --model_file and --users and/or --histories")
    users = [u for u in (args.users or "").split(",") if u.strip()]
    ids, histories = read_histories(args.histories) if args.histories else ([], [])
    _, model, dataset, *_ = load_data_and_model(args.model_file)
    recommendations = topk(model, dataset, users=users, histories=histories, k=args.k)
    for recommendation in recommendations[: len(users)]:
        print(recommendation.as_json("user"))
    for history_id, recommendation in zip(ids, recommendations[len(users) :]):
        recommendation.key = history_id
        print(recommendation.as_json("id"))
    return 0


def parse_features(text):
    """``"text=a.npz,image=b.npz"`` -> ``{"text": "a.npz", "image": "b.npz"}``."""
    features = {}
    for part in (text or "").split(","):
        modality, _, path = part.partition("=")
        if not modality.strip() or not path.strip():
            raise ConfigError(f"--features must be modality=path pairs separated by commas, got '{text}'")
        features[modality.strip()] = path.strip()
    return features


def add_items_cli(args):
    """Run :func:`recbole_bbq.catalogue.add_items`; print the updated model file."""
    from recbole_bbq.catalogue import add_items

    if not args.model_file or not args.features:
        raise ConfigError("--add_items needs --model_file and --features")
    features = parse_features(args.features)
    path = add_items(args.model_file, features, output_file=args.output_file, id_rows=args.id_rows)
    print(f"model with the added items: {path}")
    return 0


def program_name():
    """The name this program was started by (``sys.argv[0]``)."""
    return sys.argv[0] if sys.argv else DEFAULT_PROGRAM


@contextlib.contextmanager
def command_line(argv):
    """Make ``sys.argv`` hold ``argv`` while the run lasts.

    RecBole's Config reads the ``--key=value`` overrides from ``sys.argv`` (every Config of the
    run, e.g. the behaviour stage's too), so ``main(argv)`` behaves exactly like the command line.
    """
    saved = sys.argv
    sys.argv = [program_name(), *argv]
    try:
        yield
    finally:
        sys.argv = saved


def check_config_files(config_file_list):
    """Read every config file once, so a missing or malformed one stops before any work."""
    from recbole_bbq.config import read_config_file

    for path in config_file_list or []:
        read_config_file(path)


def main(argv=None):
    """Run the command line ``argv`` (default ``sys.argv[1:]``).

    Returns:
        int: 0 on success, 1 when every run of a comparison failed, 2 on a user error
        (:class:`~recbole_bbq.errors.RecBoleBBQError`: bad option, key, value, file or model).
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    args, _ = build_parser().parse_known_args(argv)
    config_file_list = args.config_files.strip().split() if args.config_files else None
    with command_line(argv):
        return exit_status(run_command, args, config_file_list, argv)


def run_command(args, config_file_list, argv):
    """Do what the parsed command line asks: recommend, add items, prune the cache, tune, compare, run
    a stage or train.

    Returns:
        int: The exit status (see :func:`main`).
    """
    from recbole_bbq.pipeline import run_pipeline, run_stage

    check_config_files(config_file_list)
    if args.recommend:
        return recommend_cli(args)
    if args.add_items:
        return add_items_cli(args)
    if args.prune_cache:
        return prune_cache_cli(args, config_file_list)
    if args.tune:
        return tune_cli(args, config_file_list)
    if is_comparison(args):
        return run_comparison_cli(args, config_file_list, argv)
    if args.stage != "train":
        print(run_stage(args.stage, args.dataset, config_file_list=config_file_list, model=args.model))
        return 0
    result = run_pipeline(
        args.model,
        args.dataset,
        config_file_list=config_file_list,
        nproc=args.nproc,
        world_size=args.world_size,
        ip=args.ip,
        port=args.port,
        group_offset=args.group_offset,
    )
    if result and result.get("model_file"):
        print(f"model file: {result['model_file']}")
    return 0


def cli():
    """Console-script entry point (``recbole-bbq``)."""
    sys.exit(main())


if __name__ == "__main__":
    cli()
