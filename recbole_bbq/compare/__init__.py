"""Model comparison: every model x seed under one protocol, summarised in ``results/<dataset>/``.

``python run_recbole_bbq.py --model=SASRec,TIGER,BBQRec --dataset=D --seeds=2020,2021,2022``
calls :func:`run_comparison`. A name in ``--model`` may also be a *variant* defined under
``compare_variants`` in a config file (``{label: {model: BBQRec, <overrides>}}``; ``model``
defaults to the label), which is how ablations and per-model settings such as TIGER's
``semantic_ids_from`` enter one comparison. Each (model, seed) cell trains in this process through
:func:`recbole_bbq.pipeline.run_pipeline` and is stored as ``runs/<model>-seed<seed>.json``;
a rerun skips the cells stored as ``ok`` and retries the failed ones. The summary is written
as ``comparison.md``, ``comparison.csv``, ``comparison.png`` and ``protocol.json``. With
``compare_reference: <row>`` every other row is tested against that row over users (a column of
the table, e.g. ablations against the full model).

Modules: :mod:`~recbole_bbq.compare.runner` (running, skipping and resuming cells, variants),
:mod:`~recbole_bbq.compare.store` (records on disk), :mod:`~recbole_bbq.compare.spec` (the
comparison, cell and command-line records), :mod:`~recbole_bbq.compare.summary` (statistics over
seeds, ranking, significance), :mod:`~recbole_bbq.compare.per_user` (the paired test over users
of the per-user test values each run stores), :mod:`~recbole_bbq.compare.protocol`,
:mod:`~recbole_bbq.compare.markdown`, :mod:`~recbole_bbq.compare.plots` and
:mod:`~recbole_bbq.compare.report` (the report files).
"""

from recbole_bbq.compare.report import write_summary
from recbole_bbq.compare.runner import (
    cell_checkpoint_name,
    load_variants,
    resolve_variant,
    run_cell,
    run_comparison,
)
from recbole_bbq.compare.spec import Cell, CommandLine, Comparison
from recbole_bbq.compare.store import STATUS_FAILED, STATUS_OK, read_run, run_file, write_json_atomic
from recbole_bbq.compare.summary import summarize

__all__ = [
    "STATUS_FAILED",
    "STATUS_OK",
    "Cell",
    "CommandLine",
    "Comparison",
    "cell_checkpoint_name",
    "load_variants",
    "read_run",
    "resolve_variant",
    "run_cell",
    "run_comparison",
    "run_file",
    "summarize",
    "write_json_atomic",
    "write_summary",
]
