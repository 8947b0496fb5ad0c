# -*- coding: utf-8 -*-

"""
UniSRec
################################################

UniSRec trained directly on the target dataset (no cross-domain pre-training): frozen item text
vectors pass through a mixture-of-experts adaptor of parametric-whitening layers, optionally
plus an item ID embedding, and RecBole's SASRec transformer encodes the sequence. Training
optimises a cross-entropy over all items on cosine / temperature logits (the official
fine-tuning loss) plus the paper's contrastive terms.

Reference:
    Yupeng Hou et al. "Towards Universal Sequence Representation Learning for Recommender
    Systems." in KDD 2022. Official code: https://github.com/RUCAIBox/UniSRec

"""

import torch
import torch.nn.functional as F
from recbole.model.sequential_recommender.sasrec import SASRec
from torch import nn

from recbole_bbq.errors import ConfigError, DataError

ITEM_REPRS = ("id+text", "text")


class PWLayer(nn.Module):
    """Parametric whitening: ``W (dropout(x) - b)``, a learnable centring and a projection.

    Args:
        input_size (int): Size of the text vectors.
        output_size (int): Size of the output (the model's hidden size).
        dropout (float): Dropout on the input vector.
    """

    def __init__(self, input_size, output_size, dropout=0.0):
        super().__init__()
        self.dropout = nn.Dropout(p=dropout)
        self.bias = nn.Parameter(torch.zeros(input_size))
        # No bias in the projection: the centring above plays that role (whitening = x - b, then W).
        self.lin = nn.Linear(input_size, output_size, bias=False)
        nn.init.normal_(self.lin.weight, mean=0.0, std=0.02)

    def forward(self, x):
        """``[..., input_size]`` -> ``[..., output_size]``."""
        return self.lin(self.dropout(x) - self.bias)


class MoEAdaptorLayer(nn.Module):
    """Mixture of ``n_exps`` :class:`PWLayer` experts, mixed by a softmax gate over the input.

    During training the gate logits get Gaussian noise with a learned, input-dependent standard
    deviation (``softplus(x W_noise) + 1e-2``), as in the official code.

    Args:
        n_exps (int): Number of experts.
        input_size (int): Size of the text vectors.
        output_size (int): Size of the output (the model's hidden size).
        dropout (float): Input dropout of every expert.
        noise (bool): Add gating noise in training mode.
    """

    NOISE_EPSILON = 1e-2

    def __init__(self, n_exps, input_size, output_size, dropout=0.0, noise=True):
        super().__init__()
        self.n_exps = n_exps
        self.noisy_gating = noise
        self.experts = nn.ModuleList(PWLayer(input_size, output_size, dropout) for _ in range(n_exps))
        self.gate = nn.Linear(input_size, n_exps, bias=False)
        self.noise = nn.Linear(input_size, n_exps, bias=False)
        # Zero gates: every expert starts with the same weight 1 / n_exps (official initialisation).
        nn.init.zeros_(self.gate.weight)
        nn.init.zeros_(self.noise.weight)

    def gates(self, x):
        """Softmax expert weights ``[..., n_exps]`` (noisy in training mode)."""
        logits = self.gate(x)
        if self.noisy_gating and self.training:
            std = F.softplus(self.noise(x)) + self.NOISE_EPSILON
            logits = logits + torch.randn_like(logits) * std
        return F.softmax(logits, dim=-1)

    def forward(self, x):
        """``[..., input_size]`` -> ``[..., output_size]``."""
        experts = torch.stack([expert(x) for expert in self.experts], dim=-2)  # [..., E, out]
        return (self.gates(x).unsqueeze(-1) * experts).sum(dim=-2)


class UniSRec(SASRec):
    r"""SASRec over MoE-adapted frozen text vectors (+ ID embeddings), trained with CE and
    contrastive terms.

    Item representation: ``MoE(text_i)`` (``item_repr: text``) or ``MoE(text_i) + e_i``
    (``item_repr: id+text``, the official transductive setting). The sequence vector is SASRec's
    transformer output at the last position, over item representations plus position embeddings.

    Loss (``loss_type: CE`` only), with ``s`` the L2-normalised sequence vector and ``v`` the
    L2-normalised item representations, ``tau = temperature``:

    * CE over all items on ``s . v / tau`` (the official fine-tuning loss);
    * ``+ lambda * seq-seq`` InfoNCE between ``s`` and the vector of an augmented view of the
      same sequence (item drop, or text dropout), other in-batch sequences as negatives;
    * ``+ seq_item_weight * seq-item`` InfoNCE between ``s`` and the in-batch target items
      (the pre-training task; redundant with the CE, so off by default).

    In both InfoNCE terms, in-batch sequences whose target equals the anchor's target are not
    used as negatives (as in the official code).

    Config keys (besides SASRec's; see ``properties/model/UniSRec.yaml``): ``text_modality``,
    ``item_repr``, ``n_exps``, ``adaptor_dropout_prob``, ``adaptor_noise``, ``temperature``,
    ``lambda``, ``seq_item_weight``, ``item_drop_ratio``, ``item_drop_coefficient``.

    Args:
        config (Config): The run configuration.
        dataset (Dataset): The training dataset, with ``item_features[text_modality]``
            (:class:`recbole_bbq.data.MultiModalSequentialDataset`).

    Raises:
        ConfigError: If the dataset has no vectors of ``text_modality`` or a key is invalid.
        DataError: If the text vectors do not have one row per item.
    """

    # Traits: see recbole_bbq.model.traits.
    item_features = True

    def __init__(self, config, dataset):
        if config["loss_type"] != "CE":
            raise ConfigError(f"UniSRec supports loss_type: CE only, got '{config['loss_type']}'")
        super(UniSRec, self).__init__(config, dataset)

        # load parameters info
        self.text_modality = config["text_modality"]
        self.item_repr = config["item_repr"]
        self.temperature = config["temperature"]
        self.lam = config["lambda"]
        self.seq_item_weight = config["seq_item_weight"]
        self.item_drop_ratio = config["item_drop_ratio"]
        self.item_drop_coefficient = config["item_drop_coefficient"]
        self._check_keys()

        # Frozen text vectors: a buffer, so they move with the model and are saved in
        # checkpoints but never reach the optimizer.
        self.register_buffer("text_embedding", self._text_vectors(config, dataset).clone())

        # define layers
        if self.item_repr == "text":
            self.item_embedding = None  # text-only items: no ID embedding table at all
        self.moe_adaptor = MoEAdaptorLayer(
            n_exps=config["n_exps"],
            input_size=self.text_embedding.shape[1],
            output_size=self.hidden_size,
            dropout=config["adaptor_dropout_prob"],
            noise=bool(config["adaptor_noise"]),
        )

    def _check_keys(self):
        if self.item_repr not in ITEM_REPRS:
            raise ConfigError(f"item_repr must be one of {list(ITEM_REPRS)}, got '{self.item_repr}'")
        if not self.temperature or self.temperature <= 0:
            raise ConfigError(f"temperature must be > 0, got {self.temperature!r}")
        for key in ("item_drop_ratio", "item_drop_coefficient"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                raise ConfigError(f"{key} must be in [0, 1], got {getattr(self, key)!r}")
        if self.lam < 0 or self.seq_item_weight < 0:
            raise ConfigError(
                f"lambda and seq_item_weight must be >= 0, got {self.lam!r} and {self.seq_item_weight!r}"
            )

    def _text_vectors(self, config, dataset):
        """The ``[n_items, d]`` text vectors of ``text_modality`` attached to the dataset."""
        features = getattr(dataset, "item_features", None) or {}
        if self.text_modality not in features:
            raise ConfigError(
                f"UniSRec needs item text vectors: add '{self.text_modality}' to 'modalities' "
                f"(text_modality: {self.text_modality}); dataset '{config['dataset']}' was loaded "
                f"with modalities {list(features)}. Create the feature file with "
                "dataset_scripts/encode_text.py if it does not exist."
            )
        vectors = features[self.text_modality].float()
        if vectors.dim() != 2 or vectors.shape[0] != self.n_items:
            raise DataError(
                f"text vectors of modality '{self.text_modality}' have shape {tuple(vectors.shape)}, "
                f"expected [{self.n_items}, d] (one row per item, row 0 = padding)"
            )
        return vectors

    # ------------------------------------------------------------------ representations

    def item_representation(self, items=None, text=None):
        """Item vectors ``MoE(text) (+ ID embedding)``.

        Args:
            items (torch.LongTensor | None): Item ids of any shape; None means all items.
            text (torch.Tensor | None): Text vectors to adapt instead of the stored ones of
                ``items`` (the text-dropout view); ``items`` still selects the ID embeddings.

        Returns:
            torch.Tensor: ``[*items.shape, H]``, or ``[n_items, H]`` for all items.
        """
        if text is None:
            text = self.text_embedding if items is None else self.text_embedding[items]
        representation = self.moe_adaptor(text)
        if self.item_embedding is not None:
            ids = self.item_embedding.weight if items is None else self.item_embedding(items)
            representation = representation + ids
        return representation

    def forward(self, item_seq, item_seq_len, item_emb=None):
        """Sequence vector ``[B, H]`` (not normalised) at the last real position.

        Args:
            item_seq (torch.LongTensor): ``[B, S]`` history item ids (0 = padding, at the end).
            item_seq_len (torch.LongTensor): ``[B]`` history lengths.
            item_emb (torch.Tensor | None): ``[B, S, H]`` item vectors; default: rows of
                :meth:`item_representation` (all items) picked by ``item_seq``.
        """
        if item_emb is None:
            item_emb = self.item_representation()[item_seq]
        position_ids = torch.arange(item_seq.size(1), dtype=torch.long, device=item_seq.device)
        input_emb = item_emb + self.position_embedding(position_ids).unsqueeze(0)
        input_emb = self.dropout(self.LayerNorm(input_emb))
        attention_mask = self.get_attention_mask(item_seq)
        output = self.trm_encoder(input_emb, attention_mask, output_all_encoded_layers=True)[-1]
        return self.gather_indexes(output, item_seq_len - 1)

    def _encode(self, interaction):
        """``(s [B, H] normalised sequence vectors, v [n_items, H] item vectors, not normalised)``.

        The adaptor runs once over the catalogue (the CE needs every item anyway) and the
        sequence inputs are rows of that table, instead of one adaptor pass per history
        position as in the official code: ~B*S/n_items times less adaptor work. Within a step,
        all occurrences of an item then share one adaptor-dropout and gate-noise sample.
        """
        all_items = self.item_representation()
        item_seq = interaction[self.ITEM_SEQ]
        seq_output = self.forward(item_seq, interaction[self.ITEM_SEQ_LEN], all_items[item_seq])
        return F.normalize(seq_output, dim=-1), all_items

    # ------------------------------------------------------------------ augmentation

    def augment(self, item_seq, item_seq_len, all_items=None):
        """A second view of each sequence for the seq-seq contrastive task.

        With probability ``item_drop_coefficient`` (per batch) each item except the first is
        dropped with probability ``item_drop_ratio`` and the rest moved to the front. Otherwise
        the IDs stay and each position, with probability ``item_drop_ratio``, gets its text
        vector with element-wise dropout at rate ``item_drop_ratio`` (stands in for the official
        second, word-dropped text encoding, which our datasets do not have).

        Args:
            item_seq (torch.LongTensor): ``[B, S]`` history item ids (0 = padding, at the end).
            item_seq_len (torch.LongTensor): ``[B]`` history lengths.
            all_items (torch.Tensor | None): ``[n_items, H]`` item vectors of this step
                (default: :meth:`item_representation`).

        Returns:
            tuple: ``(item_seq_aug [B, S], item_seq_len_aug [B], item_emb_aug [B, S, H])``.
        """
        if all_items is None:
            all_items = self.item_representation()
        sample = torch.full_like(item_seq, 1.0 - self.item_drop_ratio, dtype=torch.float)
        keep = torch.bernoulli(sample).bool()
        if torch.rand(1).item() < self.item_drop_coefficient:
            keep = keep & item_seq.ne(0)
            keep[:, 0] = True  # never empty
            # Stable sort puts the kept positions first in their original order. (The official
            # scatter writes several items to one slot, whose winner is undefined.)
            order = torch.sort((~keep).int(), dim=1, stable=True).indices
            kept = torch.gather(keep, 1, order)
            item_seq_aug = torch.gather(item_seq, 1, order) * kept
            return item_seq_aug, kept.sum(dim=1), all_items[item_seq_aug]
        item_emb_aug = all_items[item_seq]
        perturbed = ~keep & item_seq.ne(0)
        if perturbed.any():
            items = item_seq[perturbed]
            text = F.dropout(self.text_embedding[items], p=self.item_drop_ratio, training=True)
            item_emb_aug = item_emb_aug.masked_scatter(
                perturbed.unsqueeze(-1), self.item_representation(items, text=text)
            )
        return item_seq, item_seq_len, item_emb_aug

    # ------------------------------------------------------------------ losses

    def _info_nce(self, anchors, positives, same_target):
        """Mean InfoNCE of ``anchors[i]`` vs ``positives[i]`` over in-batch ``positives``.

        Both ``[B, H]``, L2-normalised; ``same_target[i, j]`` (i != j) excludes ``j`` as a
        negative of ``i``.
        """
        logits = anchors @ positives.t() / self.temperature
        logits = logits.masked_fill(same_target, float("-inf"))
        labels = torch.arange(anchors.shape[0], device=anchors.device)
        return F.cross_entropy(logits, labels)

    def calculate_loss(self, interaction):
        """CE over all items + ``lambda`` * seq-seq + ``seq_item_weight`` * seq-item (scalar)."""
        seq_output, all_items = self._encode(interaction)
        pos_items = interaction[self.POS_ITEM_ID]
        logits = seq_output @ F.normalize(all_items, dim=-1).t() / self.temperature
        loss = self.loss_fct(logits, pos_items)

        if self.lam <= 0 and self.seq_item_weight <= 0:
            return loss
        # Other sequences with the same next item are not negatives.
        same_target = pos_items.unsqueeze(1) == pos_items.unsqueeze(0)
        same_target.fill_diagonal_(False)
        if self.seq_item_weight > 0:
            targets = F.normalize(all_items[pos_items], dim=-1)
            loss = loss + self.seq_item_weight * self._info_nce(seq_output, targets, same_target)
        if self.lam > 0:
            item_seq_aug, item_seq_len_aug, item_emb_aug = self.augment(
                interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN], all_items
            )
            seq_output_aug = F.normalize(self.forward(item_seq_aug, item_seq_len_aug, item_emb_aug), dim=-1)
            loss = loss + self.lam * self._info_nce(seq_output, seq_output_aug, same_target)
        return loss

    # ------------------------------------------------------------------ scoring

    def predict(self, interaction):
        """Cosine / temperature of each sequence and its ``ITEM_ID`` item, ``[B]``."""
        seq_output, all_items = self._encode(interaction)
        item_emb = F.normalize(all_items[interaction[self.ITEM_ID]], dim=-1)
        return (seq_output * item_emb).sum(dim=-1) / self.temperature

    def full_sort_predict(self, interaction):
        """Cosine / temperature of each sequence against every item, ``[B, n_items]``."""
        seq_output, all_items = self._encode(interaction)
        return seq_output @ F.normalize(all_items, dim=-1).t() / self.temperature
