"""Equal-budget hyper-parameter tuning on the valid split (``run_recbole_bbq.py --tune``).

Every tuned row gets the same budget, set once in the ``tuning`` section of a config file: the
number of trials, the per-trial epoch cap, the search algorithm and its seed. What differs is
its search space, ``<space_dir>/<label>.yaml``, in the ``params_dict`` form of RecBole's
:class:`~recbole.trainer.hyper_tuning.HyperTuning` (``{choice: {key: [values]}, loguniform:
{key: [low, high]}, ...}``; ``section.key`` reaches into the ``tokenizer``, ``rqvae`` and
``behaviour`` sections). A row is a model or a ``compare_variants`` label, whose overrides every
trial keeps.

Trials run through HyperTuning (hyperopt, seeded) and :func:`recbole_bbq.pipeline.run_pipeline`
with ``test=False``: the test split is never evaluated while tuning. Each trial is stored as
``<results_dir>/<dataset>/tuning/<label>/trials/<n>-<digest>.json``; a rerun replays the same
proposals and reuses every stored trial, so tuning resumes across sessions. The best trial of
each row goes into ``<results_dir>/<dataset>/tuned.yaml`` as a ``compare_variants`` entry that a
comparison reads (add the file to ``--config_files``), and ``tuning.md`` lists every trial.
"""

from recbole_bbq.tuning.report import write_tuning_reports
from recbole_bbq.tuning.search import (
    TUNING_ALGORITHMS,
    TuningRow,
    TuningSettings,
    read_search_space,
    run_tuning,
    trial_overrides,
)

__all__ = [
    "TUNING_ALGORITHMS",
    "TuningRow",
    "TuningSettings",
    "read_search_space",
    "run_tuning",
    "trial_overrides",
    "write_tuning_reports",
]
