"""Residual vector quantizer (RQ-VAE style) with k-means initialisation and dead-code re-seeding.

Scale: the nearest-code search runs over row chunks of :data:`NEAREST_CHUNK_ROWS` (only a
``[chunk, K]`` distance matrix exists at a time) and k-means initialisation switches to
mini-batch k-means from :data:`MINIBATCH_KMEANS_ROWS` rows on. Below both sizes every
computation is the one of a single ``torch.cdist`` / exact sklearn ``KMeans`` call, so the codes
of existing (small) configurations are unchanged.
"""

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.cluster import KMeans, MiniBatchKMeans
from torch import nn

from recbole_bbq.errors import ConfigError

# Rows from which init_kmeans uses mini-batch k-means (float32) instead of exact k-means
# (float64). A shared BBQ quantizer sees one row per item and signal (four per item with two
# modalities), so catalogues below 50,000 items keep the exact path and their codes.
MINIBATCH_KMEANS_ROWS = 200_000
# Rows per mini-batch of MiniBatchKMeans (sklearn suggests well above 256 x cores).
MINIBATCH_BATCH_SIZE = 4096
# Rows per torch.cdist call of the nearest-code search and of quantize: bounds the largest
# intermediate to [chunk, K] distances whatever N is (64 MB at K = 256).
NEAREST_CHUNK_ROWS = 65_536


def nearest_codes(vectors, codebook):
    """Index of the nearest (Euclidean) row of ``codebook`` [K, d] for each row of ``vectors`` [N, d].

    Up to :data:`NEAREST_CHUNK_ROWS` rows this is one ``torch.cdist`` call; larger inputs are
    searched chunk by chunk and the per-chunk argmins concatenated (the same codes, without an
    ``[N, K]`` matrix).
    """
    chunk_rows = NEAREST_CHUNK_ROWS
    if len(vectors) <= chunk_rows:
        return torch.cdist(vectors, codebook).argmin(dim=-1)
    codebook, vectors = codebook.detach(), vectors.detach()  # indices only: no autograd graph
    return torch.cat([torch.cdist(chunk, codebook).argmin(dim=-1) for chunk in vectors.split(chunk_rows)])


def distinct_rows(data, cap):
    """Number of distinct rows of ``data`` [N, d], counted only up to ``cap``.

    Scans row chunks and stops as soon as ``cap`` distinct rows are found, so memory stays at
    one chunk however large N is.
    """
    seen = data[:0]
    for start in range(0, len(data), NEAREST_CHUNK_ROWS):
        seen = np.unique(np.concatenate([seen, data[start : start + NEAREST_CHUNK_ROWS]]), axis=0)
        if len(seen) >= cap:
            return cap
    return len(seen)


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
        return nearest_codes(residual, self.codebooks[level])

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
        """Codes [B, L] and quantized vectors [B, dim] without gradients (row chunks when B is large)."""
        if len(z) > NEAREST_CHUNK_ROWS:
            parts = [self.quantize(chunk) for chunk in z.split(NEAREST_CHUNK_ROWS)]
            return torch.cat([codes for codes, _ in parts]), torch.cat([q for _, q in parts])
        residual, quantized, codes = z, torch.zeros_like(z), []
        for level in range(self.levels):
            index = self._nearest(residual, level)
            quantized += self.codebooks[level][index]
            residual = residual - self.codebooks[level][index]
            codes.append(index)
        return torch.stack(codes, dim=1), quantized

    @torch.no_grad()
    def init_kmeans(self, z, seed=0):
        """Initialise every level with k-means on the residuals of ``z`` [N, dim].

        Below :data:`MINIBATCH_KMEANS_ROWS` rows: exact sklearn ``KMeans`` (float64, one
        k-means++ start). From there on: sklearn ``MiniBatchKMeans`` in float32 and the chunked
        nearest-code search for the residuals, so time and memory grow linearly with N. When
        there are fewer distinct rows than K, the remaining codes are copies of data points plus
        small noise.
        """
        if len(z) >= MINIBATCH_KMEANS_ROWS:
            self._init_minibatch_kmeans(z, seed)
        else:
            self._init_exact_kmeans(z, seed)
        self.usage.zero_()

    def _init_exact_kmeans(self, z, seed):
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

    def _init_minibatch_kmeans(self, z, seed):
        generator = np.random.default_rng(seed)
        residual = z.detach().to("cpu", torch.float32).clone()  # updated in place level by level
        for level in range(self.levels):
            data = residual.numpy()
            n_clusters = distinct_rows(data, self.codebook_size)
            kmeans = MiniBatchKMeans(
                n_clusters=n_clusters,
                batch_size=MINIBATCH_BATCH_SIZE,
                n_init=1,
                random_state=seed,
                compute_labels=False,  # labels come from the chunked search below
            ).fit(data)
            centers = kmeans.cluster_centers_.astype(np.float32)
            if n_clusters < self.codebook_size:
                extra = data[generator.integers(len(data), size=self.codebook_size - n_clusters)]
                noise = 1e-3 * generator.normal(size=extra.shape)
                centers = np.concatenate([centers, (extra + noise).astype(np.float32)])
            self.codebooks.data[level] = torch.as_tensor(centers, dtype=self.codebooks.dtype)
            centers = torch.from_numpy(centers)
            for chunk in residual.split(NEAREST_CHUNK_ROWS):
                chunk -= centers[nearest_codes(chunk, centers)]

    @torch.no_grad()
    def reseed_dead_codes(self, z, generator=None):
        """Replace codes unused since the last call by random residuals of ``z`` [N, dim].

        The residuals are updated in place on one copy of ``z``, chunk by chunk, so memory
        stays at one extra ``[N, dim]`` matrix whatever the number of levels.

        Returns:
            int: Number of codes re-seeded.
        """
        residual, reseeded = z.detach().clone(), 0
        for level in range(self.levels):
            dead = torch.nonzero(self.usage[level] == 0).flatten()
            if len(dead):
                picks = torch.randint(len(residual), (len(dead),), generator=generator)
                self.codebooks.data[level, dead] = residual[picks].to(self.codebooks.dtype)
                reseeded += len(dead)
            if level < self.levels - 1:  # the last level's residual is never used
                codebook = self.codebooks[level].detach()
                for chunk in residual.split(NEAREST_CHUNK_ROWS):
                    chunk -= codebook[nearest_codes(chunk, codebook)]
        self.usage.zero_()
        return reseeded
