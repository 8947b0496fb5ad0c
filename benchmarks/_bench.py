"""Helpers shared by the benchmark scripts: converting the shared datasets and timing."""

import os
import statistics
import sys
import time

import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.environ.get("RECBOLE_BBQ_SHARED_DATA", os.path.join(REPO, "..", "shared", "data"))

# Shared dataset folder and the converter call that makes a recbole_bbq dataset of it.
SOURCES = {
    "Scientific": ("amazon_scientific_mm", "unisrec", {}),
    "Instruments": (
        "amazon_instruments_mql4grec",
        "lcrec",
        {"code_features": "index_lemb=text,index_vitemb=image"},
    ),
}


def ensure_dataset(name, data_path):
    """Convert the shared dataset ``name`` into ``data_path/name`` unless it is there already."""
    if os.path.isdir(os.path.join(data_path, name)):
        return
    folder, converter, options = SOURCES[name]
    source = os.path.join(SHARED_DATA, folder)
    if not os.path.isdir(source):
        raise SystemExit(f"error: {source} not found (set RECBOLE_BBQ_SHARED_DATA to the shared data folder)")
    import importlib

    module = importlib.import_module(f"recbole_bbq.converters.{converter}")
    module.convert(source, name, data_path, **options)


def synchronize(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def timed(fn, inputs, device):
    """Wall seconds of ``fn(x)`` for each ``x`` (device work included)."""
    times = []
    for x in inputs:
        synchronize(device)
        start = time.perf_counter()
        fn(x)
        synchronize(device)
        times.append(time.perf_counter() - start)
    return times


def median(values):
    return statistics.median(values)


def device_name(device):
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({torch.get_num_threads()} threads)"


if __name__ == "__main__":  # python benchmarks/_bench.py NAME [NAME ...] DATA_PATH: convert datasets
    *names, target = sys.argv[1:]
    for dataset_name in names:
        ensure_dataset(dataset_name, target)
        print(f"{dataset_name}: {os.path.join(target, dataset_name)}")
