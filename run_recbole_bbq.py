"""Command-line entry point of recbole-bbq (mirrors RecBole's run_recbole.py).

Examples:
    python run_recbole_bbq.py --model=SASRec --dataset=ml-100k
    python run_recbole_bbq.py --model=SASRec --dataset=ml-100k --epochs=5 --learning_rate=0.002
    python run_recbole_bbq.py --model=SASRec --nproc=2          # 2 processes (GPUs, or gloo on CPU)
    python run_recbole_bbq.py --model=BBQRec --dataset=Scientific --stage=tokenize

Any ``--key=value`` that is not an option below is passed to RecBole's Config as an override.
"""

import argparse
import sys

from recbole_bbq import compat  # noqa: F401  (before recbole)
from recbole_bbq.errors import RecBoleBBQError

DEFAULT_MODEL = "SASRec"
DEFAULT_DATASET = "ml-100k"


def build_parser():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", "-m", default=DEFAULT_MODEL, help="model name")
    parser.add_argument("--dataset", "-d", default=DEFAULT_DATASET, help="dataset name")
    parser.add_argument(
        "--config_files", default=None, help="space-separated YAML files, later ones win"
    )
    parser.add_argument(
        "--stage",
        default="train",
        choices=["features", "behavior", "tokenize", "train"],
        help="run the pipeline up to this stage (default: train, i.e. everything)",
    )
    parser.add_argument("--nproc", type=int, default=1, help="processes on this node")
    parser.add_argument("--ip", default="localhost", help="address of the rank-0 node")
    parser.add_argument("--port", default="5678", help="free TCP port on the rank-0 node")
    parser.add_argument(
        "--world_size", type=int, default=-1, help="processes over all nodes (-1: nproc)"
    )
    parser.add_argument(
        "--group_offset", type=int, default=0, help="global rank of this node's first process"
    )
    return parser


def main(argv=None):
    args, _ = build_parser().parse_known_args(argv)
    config_file_list = args.config_files.strip().split(" ") if args.config_files else None
    from recbole_bbq.pipeline import run_pipeline, run_stage

    try:
        if args.stage != "train":
            print(run_stage(args.stage, args.dataset, config_file_list=config_file_list))
            return 0
        run_pipeline(
            args.model,
            args.dataset,
            config_file_list=config_file_list,
            nproc=args.nproc,
            world_size=args.world_size,
            ip=args.ip,
            port=args.port,
            group_offset=args.group_offset,
        )
    except RecBoleBBQError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


def cli():
    """Console-script entry point (``recbole-bbq``)."""
    sys.exit(main())


if __name__ == "__main__":
    cli()
