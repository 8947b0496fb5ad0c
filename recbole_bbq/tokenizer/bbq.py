"""The BBQ tokenizer network: disentangled encoders, CLUB, alignment, shared RQ.

Method: docs/method.md, "BBQ tokenizer".
"""

import torch
import torch.nn.functional as F
from torch import nn

from recbole_bbq.errors import ConfigError
from recbole_bbq.tokenizer.club import CLUB
from recbole_bbq.tokenizer.quantizer import ResidualQuantizer

BEHAVIOUR, FUSED = "behaviour", "fused"


def mlp(in_dim, hidden, out_dim, dropout=0.0):
    """Two-layer MLP used for every encoder and decoder."""
    return nn.Sequential(
        nn.Linear(in_dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, out_dim)
    )


def info_nce(a, b, temperature):
    """Symmetric in-batch InfoNCE between row-aligned ``a`` and ``b`` [B, d]."""
    logits = F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T / temperature
    labels = torch.arange(len(a), device=a.device)
    return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))


class BBQTokenizerModel(nn.Module):
    """Encoders, decoders, CLUB estimators and the residual quantizer(s) of BBQ.

    Args:
        modality_dims (dict[str, int]): Input size per modality, e.g. ``{"text": 384}``.
        behaviour_dim (int): Size of the behaviour vectors.
        latent_dim (int): Size d of every latent part.
        hidden_dim (int): Hidden width of the MLPs.
        levels (int): Residual levels L.
        codebook_size (int): Codes per level K.
        beta (float): Commitment weight.
        shared_codebook (bool): One quantizer for all signals (BBQ) or one per signal (fragmented).
        fuse (list[str]): Signals summed into the fused vector (``behaviour`` and modality names).
        fuse_mode (str): ``sum`` or ``mean``.
        temperature (float): InfoNCE temperature.
        align_modalities (bool): Also align the modalities with each other.
        dropout (float): Dropout inside the MLPs.
    """

    def __init__(
        self,
        modality_dims,
        behaviour_dim,
        latent_dim=64,
        hidden_dim=256,
        levels=3,
        codebook_size=256,
        beta=0.25,
        shared_codebook=True,
        fuse=None,
        fuse_mode="sum",
        temperature=0.1,
        align_modalities=False,
        dropout=0.0,
    ):
        super().__init__()
        if not modality_dims:
            raise ConfigError("the BBQ tokenizer needs at least one modality")
        self.modalities = list(modality_dims)
        self.fuse = list(fuse or [BEHAVIOUR, *self.modalities])
        unknown = set(self.fuse) - {BEHAVIOUR, *self.modalities}
        if unknown or fuse_mode not in ("sum", "mean"):
            raise ConfigError(
                f"fuse must list signals among {[BEHAVIOUR, *self.modalities]} (got unknown "
                f"{sorted(unknown)}) and fuse_mode must be sum or mean (got '{fuse_mode}')"
            )
        self.fuse_mode, self.temperature, self.align_modalities = fuse_mode, temperature, align_modalities
        self.specific = nn.ModuleDict(
            {m: mlp(d, hidden_dim, latent_dim, dropout) for m, d in modality_dims.items()}
        )
        self.aligned = nn.ModuleDict(
            {m: mlp(d, hidden_dim, latent_dim, dropout) for m, d in modality_dims.items()}
        )
        self.behaviour_encoder = mlp(behaviour_dim, hidden_dim, latent_dim, dropout)
        self.decoders = nn.ModuleDict(
            {m: mlp(2 * latent_dim, hidden_dim, d, dropout) for m, d in modality_dims.items()}
        )
        self.behaviour_decoder = mlp(latent_dim, hidden_dim, behaviour_dim, dropout)
        self.club = nn.ModuleDict({m: CLUB(latent_dim, latent_dim, hidden_dim) for m in self.modalities})
        signals = [BEHAVIOUR, *self.modalities, FUSED]
        if shared_codebook:
            shared = ResidualQuantizer(latent_dim, levels, codebook_size, beta)
            self.quantizers = nn.ModuleDict({s: shared for s in signals})
        else:
            self.quantizers = nn.ModuleDict(
                {s: ResidualQuantizer(latent_dim, levels, codebook_size, beta) for s in signals}
            )

    def unique_quantizers(self):
        """The distinct quantizer modules (one when the codebook is shared)."""
        return list({id(q): q for q in self.quantizers.values()}.values())

    def latents(self, features, behaviour=None):
        """Continuous parts: ``specific`` per modality and ``z`` per signal.

        Without ``behaviour`` (cold-start items) the behaviour part is the mean of the aligned
        modality parts, which the alignment loss trains to match it.
        """
        specific = {m: self.specific[m](features[m]) for m in self.modalities}
        z = {m: self.aligned[m](features[m]) for m in self.modalities}
        if behaviour is None:
            z[BEHAVIOUR] = torch.stack([z[m] for m in self.modalities]).mean(dim=0)
        else:
            z[BEHAVIOUR] = self.behaviour_encoder(behaviour)
        fused = torch.stack([z[s] for s in self.fuse]).sum(dim=0)
        z[FUSED] = fused / len(self.fuse) if self.fuse_mode == "mean" else fused
        return specific, z

    def forward(self, features, behaviour):
        """Latents, quantized vectors, codes and the unweighted loss terms of one batch."""
        specific, z = self.latents(features, behaviour)
        quantized, codes, rq_loss = {}, {}, 0.0
        for signal, vector in z.items():
            quantized[signal], codes[signal], loss = self.quantizers[signal](vector)
            rq_loss = rq_loss + loss
        recon = F.mse_loss(self.behaviour_decoder(quantized[BEHAVIOUR]), behaviour)
        for m in self.modalities:
            decoded = self.decoders[m](torch.cat([specific[m], quantized[m]], dim=-1))
            recon = recon + F.mse_loss(decoded, features[m])
        align = sum(info_nce(quantized[m], quantized[BEHAVIOUR], self.temperature) for m in self.modalities)
        if self.align_modalities:
            pairs = [(a, b) for i, a in enumerate(self.modalities) for b in self.modalities[i + 1 :]]
            align = align + sum(info_nce(quantized[a], quantized[b], self.temperature) for a, b in pairs)
        mi = self.club_estimate(specific, z)
        losses = {"rec": recon, "rq": rq_loss, "align": align, "mi": mi}
        return losses, specific, z

    @staticmethod
    def _club_inputs(specific, aligned):
        """Unit-length latents: the encoders cannot lower the CLUB estimate by rescaling."""
        return F.normalize(specific, dim=-1), F.normalize(aligned, dim=-1)

    def club_estimate(self, specific, z):
        """Sum over modalities of CLUB(specific part; behaviour-aligned part)."""
        return sum(self.club[m](*self._club_inputs(specific[m], z[m])) for m in self.modalities)

    def club_log_likelihood(self, specific, z):
        """Objective of the CLUB step (on detached latents, so only q is trained)."""
        return sum(
            self.club[m].log_likelihood(*self._club_inputs(specific[m].detach(), z[m].detach()))
            for m in self.modalities
        )

    @torch.no_grad()
    def encode(self, features, behaviour=None):
        """Codes [N, L], quantized vectors [N, d] and latents for every signal (no dedup)."""
        _, z = self.latents(features, behaviour)
        codes, quantized = {}, {}
        for signal, vector in z.items():
            codes[signal], quantized[signal] = self.quantizers[signal].quantize(vector)
        return codes, quantized, z
