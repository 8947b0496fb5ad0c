"""Per-user values of RecBole's top-k metrics, from RecBole's own collector and evaluator.

RecBole's :class:`~recbole.evaluator.Collector` gathers ``rec.topk`` (one row per evaluated user:
a hit flag per rank, then the number of positives) and its
:class:`~recbole.evaluator.Evaluator` averages each metric's per-user matrix
(``metric_info(pos_index, pos_len)``, ``[n_users, max(topk)]``) over the users. The subclasses
here also keep, for every evaluation, the user id of each row and each top-k metric's per-user
column (``ndcg@10`` is column 9), so that a run can store its per-user test values and a
comparison can test two models over users (:mod:`recbole_bbq.compare.per_user`). The reported
metrics are computed by RecBole's code unchanged; each per-user column averages to them.
"""

import inspect

import torch
from recbole.evaluator import Collector, Evaluator
from recbole.evaluator.base_metric import TopkMetric

# DataStruct key of the user id of each evaluated row (cleared after every evaluation).
USER_IDS = "data.user_ids"
# Key of the user ids in the per-user values (beside ``<metric>@<k>`` keys).
USERS = "users"


class PerUserCollector(Collector):
    """RecBole's collector that also records the user id of each ``rec.topk`` row."""

    def __init__(self, config):
        super().__init__(config)
        self.uid_field = config["USER_ID_FIELD"]
        self._users_lost = False

    def eval_batch_collect(self, scores_tensor, interaction, positive_u, positive_i):
        """RecBole's batch collection, plus the user of every score row (when it can be told)."""
        super().eval_batch_collect(scores_tensor, interaction, positive_u, positive_i)
        if not self.register.need("rec.topk") or self._users_lost:
            return
        users = self._row_users(interaction, scores_tensor.shape[0])
        if users is None:
            self._users_lost = True
        else:
            self.data_struct.update_tensor(USER_IDS, users)

    def _row_users(self, interaction, n_rows):
        """The user id of each of the batch's ``n_rows`` score rows; None when unknown."""
        if self.uid_field is None or self.uid_field not in interaction:
            return None
        users = interaction[self.uid_field]
        if len(users) == n_rows:  # full ranking: one score row per interaction row
            return users
        # Sampled negatives: one score row per user, whose candidate rows are consecutive.
        users = torch.unique_consecutive(users)
        return users if len(users) == n_rows else None

    def get_data_struct(self):
        """RecBole's data struct of the evaluation; the user ids are cleared like ``rec.topk``."""
        if self._users_lost and USER_IDS in self.data_struct:
            del self.data_struct[USER_IDS]
        returned = super().get_data_struct()
        if USER_IDS in self.data_struct:
            del self.data_struct[USER_IDS]
        self._users_lost = False
        return returned


class PerUserEvaluator(Evaluator):
    """RecBole's evaluator; after :meth:`evaluate`, ``per_user`` holds the per-user values.

    ``per_user`` is ``{"users": user ids, "<metric>@<k>": values, ...}`` (numpy arrays in the
    order of the evaluated rows) for every top-k metric in ``metrics``, or None when the
    evaluation has no top-k metric or its rows' users are unknown.
    """

    def __init__(self, config):
        super().__init__(config)
        self.per_user = None

    def evaluate(self, dataobject):
        """RecBole's metrics of ``dataobject``, unchanged; the per-user values go to ``per_user``."""
        self.per_user = None
        result = super().evaluate(dataobject)
        self.per_user = per_user_values(self.metric_class, dataobject)
        return result


def per_user_values(metric_class, dataobject):
    """Per-user columns of every top-k metric of ``metric_class`` (name -> metric object).

    Returns:
        dict | None: ``{"users": int array, "<name>@<k>": float array, ...}`` with one entry per
        ``rec.topk`` row, or None without top-k metrics or user ids.
    """
    topk_metrics = {name: m for name, m in metric_class.items() if isinstance(m, TopkMetric)}
    if not topk_metrics or USER_IDS not in dataobject or "rec.topk" not in dataobject:
        return None
    users = dataobject.get(USER_IDS).numpy()
    if len(users) != len(dataobject.get("rec.topk")):
        return None
    values = {USERS: users}
    for name, metric in topk_metrics.items():
        matrix = _metric_matrix(metric, dataobject)
        values.update({f"{name}@{k}": matrix[:, k - 1] for k in metric.topk})
    return values


def _metric_matrix(metric, dataobject):
    """``metric``'s ``[n_users, max(topk)]`` matrix (Hit, MRR and Precision take no ``pos_len``)."""
    pos_index, pos_len = metric.used_info(dataobject)
    if len(inspect.signature(metric.metric_info).parameters) < 2:
        return metric.metric_info(pos_index)
    return metric.metric_info(pos_index, pos_len)
