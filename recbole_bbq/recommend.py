"""Top-k recommendations from a trained sequential model, for known users or raw histories.

Every sequential model (plugin or RecBole) scores the next item from a history through its
``full_sort_predict``, exactly as in evaluation; no item is masked out (the evaluation protocol
does not mask histories either).
"""

import json
from dataclasses import dataclass, field

import numpy as np
import torch
from recbole.data.interaction import Interaction

from recbole_bbq.errors import DataError


@dataclass
class Recommendation:
    """The top-k items for one user or history.

    Attributes:
        key (str): The user token, or the history's ``id`` (its index when it has none).
        items (list[str]): Item tokens, best first.
        scores (list[float]): Their scores (the model's own scale: logits, log-probabilities, ...).
    """

    key: str
    items: list = field(default_factory=list)
    scores: list = field(default_factory=list)

    def as_json(self, key_name="user"):
        """One JSON line: ``{"<key_name>": key, "items": [...], "scores": [...]}``."""
        return json.dumps({key_name: self.key, "items": self.items, "scores": self.scores})


def user_histories(dataset, users):
    """Every known interaction of each user, oldest first, as internal item ids.

    A user's history is the longest history row of the (augmented) dataset plus that row's
    target: everything the dataset knows about the user (its last ``MAX_ITEM_LIST_LENGTH``
    items), so the model recommends what comes after the user's last known item.

    Raises:
        DataError: A user token the dataset does not know.
    """
    uid_field, config = dataset.uid_field, dataset.config
    known = dataset.field2token_id[uid_field]
    unknown = [str(user) for user in users if str(user) not in known]
    if unknown:
        raise DataError(
            f"unknown user '{unknown[0]}' ({len(unknown)} of {len(users)} users are not in dataset "
            f"'{dataset.dataset_name}'); give their items with histories instead"
        )
    inter = dataset.inter_feat
    item_seq, lengths = inter[dataset.item_id_list_field], inter[dataset.item_list_length_field]
    longest = {}
    for row, (uid, length) in enumerate(zip(inter[uid_field].tolist(), lengths.tolist())):
        if length >= longest.get(uid, (-1, None))[0]:
            longest[uid] = (length, row)
    histories = []
    for user in users:
        length, row = longest[known[str(user)]]
        items = item_seq[row, :length].tolist() + [int(inter[dataset.iid_field][row])]
        histories.append(items[-config["MAX_ITEM_LIST_LENGTH"] :])
    return histories


def history_ids(dataset, histories):
    """Item-token histories as internal ids (the last ``MAX_ITEM_LIST_LENGTH`` items).

    Raises:
        DataError: An empty history, or an item the model's catalogue does not have.
    """
    token_id = dataset.field2token_id[dataset.iid_field]
    limit = dataset.config["MAX_ITEM_LIST_LENGTH"]
    converted = []
    for index, history in enumerate(histories):
        if isinstance(history, str) or not len(history):
            raise DataError(f"history {index}: needs a non-empty list of item tokens, got {history!r}")
        missing = [str(item) for item in history if str(item) not in token_id]
        if missing:
            raise DataError(
                f"history {index}: unknown item '{missing[0]}' (not in the model's catalogue; "
                f"add new items with recbole_bbq.catalogue.add_items)"
            )
        converted.append([token_id[str(item)] for item in history][-limit:])
    return converted


def sequence_batch(dataset, histories, user_ids):
    """The interaction that sequential models read: padded item lists, lengths and users."""
    width = max(len(history) for history in histories)
    item_seq = torch.zeros((len(histories), width), dtype=torch.long)
    for row, history in enumerate(histories):
        item_seq[row, : len(history)] = torch.as_tensor(history)
    return Interaction(
        {
            dataset.uid_field: torch.as_tensor(user_ids, dtype=torch.long),
            dataset.item_id_list_field: item_seq,
            dataset.item_list_length_field: torch.as_tensor([len(h) for h in histories]),
        }
    )


@torch.no_grad()
def topk(model, dataset, users=None, histories=None, k=10, batch_size=None):
    """The ``k`` best items for known users and/or for raw item-token histories.

    Args:
        model (SequentialRecommender): A trained model (e.g. from
            :func:`recbole_bbq.quick_start.load_data_and_model`).
        dataset (Dataset): The dataset it was loaded with (its item and user vocabularies).
        users (list[str], optional): User tokens; each is scored from all its known items
            (:func:`user_histories`).
        histories (list[list[str]], optional): Item-token histories, oldest first, e.g. of users
            the model never saw; items added with :func:`recbole_bbq.catalogue.add_items` count.
        k (int): Items per user.
        batch_size (int, optional): Histories per forward pass (default ``eval_batch_size``).

    Returns:
        list[Recommendation]: One per user, then one per history (keyed by its index). An item
        the model cannot score (outside a ``beam`` model's beam, or the padding item) is never
        returned, so a beam model returns at most ``beam_size`` items.

    Raises:
        DataError: Unknown user or item tokens, an empty history, or ``k`` < 1.
    """
    if int(k) < 1:
        raise DataError(f"k must be at least 1, got {k}")
    users, histories = [str(u) for u in users or []], list(histories or [])
    keys = users + [str(index) for index in range(len(histories))]
    sequences = user_histories(dataset, users) + history_ids(dataset, histories)
    known = dataset.field2token_id[dataset.uid_field]
    user_ids = [known[user] for user in users] + [0] * len(histories)
    model.eval()
    device = next(model.parameters()).device
    batch_size = int(batch_size or dataset.config["eval_batch_size"])
    results = []
    for start in range(0, len(sequences), batch_size):
        batch = sequence_batch(
            dataset, sequences[start : start + batch_size], user_ids[start : start + batch_size]
        )
        scores = model.full_sort_predict(batch.to(device)).view(len(batch), -1).float()
        scores[:, 0] = float("-inf")  # the padding item
        best_scores, best_items = scores.topk(min(int(k), scores.shape[1] - 1), dim=1)
        for offset, (row_scores, row_items) in enumerate(zip(best_scores.cpu(), best_items.cpu())):
            finite = torch.isfinite(row_scores)
            tokens = dataset.id2token(dataset.iid_field, row_items[finite].numpy())
            results.append(
                Recommendation(
                    keys[start + offset],
                    [str(token) for token in np.atleast_1d(tokens)],
                    [float(score) for score in row_scores[finite]],
                )
            )
    return results


def read_histories(path):
    """Histories from a JSON-lines file: one ``{"history": [...], "id": ...}`` or list per line.

    Returns:
        tuple[list[str], list[list[str]]]: The ids (the line number when a line has none) and
        the histories.

    Raises:
        DataError: Naming the file and line of a line that is not such JSON.
    """
    ids, histories = [], []
    with open(path, encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise DataError(f"{path}, line {number}: not JSON ({error.msg})") from None
            history = record.get("history") if isinstance(record, dict) else record
            if not isinstance(history, list):
                raise DataError(
                    f'{path}, line {number}: expected a list of item tokens or {{"history": [...]}}'
                )
            ids.append(str(record.get("id", number)) if isinstance(record, dict) else str(number))
            histories.append([str(item) for item in history])
    return ids, histories
