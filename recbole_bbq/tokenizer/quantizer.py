"""Residual vector quantizer (RQ-VAE style) with k-means initialisation and dead-code re-seeding."""

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.cluster import KMeans
from torch import nn

from recbole_bbq.errors import ConfigError


class ResidualQuantizer(nn.Module):
    """``levels`` codebooks of ``codebook_size`` codes; level l quantizes the residual of level l-1.

    The loss per level is the usual codebook term ``||sg[r] - e||^2`` plus ``beta`` times the
    commitment term ``||r - sg[e]||^2``; gradients reach the encoder through the straight-through
    estimator.

    Args:
        dim (int): Vector size.
        levels (int): Number of residual levels L.
        codebook_size (int): Codes per level K (>= 2).
        beta (float): Commitment weight.
    """

    def __init__(self, dim, levels=3, codebook_size=256, beta=0.25):
        super().__init__()
        if int(codebook_size) < 2:
            raise ConfigError(f"codebook_size (K) must be at least 2, got {codebook_size}")
        if int(levels) < 1:
            raise ConfigError(f"levels (L) must be at least 1, got {levels}")
        self.levels, self.codebook_size, self.beta = int(levels), int(codebook_size), float(beta)
        self.codebooks = nn.Parameter(torch.randn(self.levels, self.codebook_size, dim) * 0.01)
        self.register_buffer("usage", torch.zeros(self.levels, self.codebook_size))

    def _nearest(self, residual, level):
        return torch.cdist(residual, self.codebooks[level]).argmin(dim=-1)

    def forward(self, z):
        """Quantize ``z`` [B, dim].

        Returns:
            tuple: ``z_q`` (straight-through) [B, dim], ``codes`` [B, L] int64, ``loss`` scalar.
        """
        residual, quantized, codes, loss = z, torch.zeros_like(z), [], z.new_zeros(())
        for level in range(self.levels):
            index = self._nearest(residual.detach(), level)
            code_vectors = self.codebooks[level][index]
            loss = loss + F.mse_loss(code_vectors, residual.detach())
            loss = loss + self.beta * F.mse_loss(residual, code_vectors.detach())
            quantized = quantized + code_vectors
            residual = residual - code_vectors.detach()
            codes.append(index)
            if self.training:
                self.usage[level].index_add_(0, index, torch.ones_like(index, dtype=self.usage.dtype))
        z_q = z + (quantized - z).detach()
        return z_q, torch.stack(codes, dim=1), loss

    @torch.no_grad()
    def quantize(self, z):
        """Codes [B, L] and quantized vectors [B, dim] without gradients."""
        residual, quantized, codes = z, torch.zeros_like(z), []
        for level in range(self.levels):
            index = self._nearest(residual, level)
            quantized += self.codebooks[level][index]
            residual = residual - self.codebooks[level][index]
            codes.append(index)
        return torch.stack(codes, dim=1), quantized

    @torch.no_grad()
    def init_kmeans(self, z, seed=0):
        """Initialise every level with k-means (sklearn) on the residuals of ``z`` [N, dim].

        When N < K, the remaining codes are copies of data points plus small noise.
        """
        generator = np.random.default_rng(seed)
        residual = z.detach().cpu().numpy().astype(np.float64)
        for level in range(self.levels):
            n_clusters = min(self.codebook_size, len(np.unique(residual.round(8), axis=0)))
            kmeans = KMeans(n_clusters=n_clusters, n_init=1, random_state=seed).fit(residual)
            centers = kmeans.cluster_centers_
            if n_clusters < self.codebook_size:
                extra = residual[generator.integers(len(residual), size=self.codebook_size - n_clusters)]
                centers = np.concatenate([centers, extra + 1e-3 * generator.normal(size=extra.shape)])
            self.codebooks.data[level] = torch.as_tensor(centers, dtype=self.codebooks.dtype)
            residual = residual - centers[kmeans.predict(residual)]
        self.usage.zero_()

    @torch.no_grad()
    def reseed_dead_codes(self, z, generator=None):
        """Replace codes unused since the last call by random residuals of ``z`` [N, dim].

        Returns:
            int: Number of codes re-seeded.
        """
        residual, reseeded = z.detach(), 0
        for level in range(self.levels):
            dead = torch.nonzero(self.usage[level] == 0).flatten()
            if len(dead):
                picks = torch.randint(len(residual), (len(dead),), generator=generator)
                self.codebooks.data[level, dead] = residual[picks].to(self.codebooks.dtype)
                reseeded += len(dead)
            residual = residual - self.codebooks[level][self._nearest(residual, level)]
        self.usage.zero_()
        return reseeded
