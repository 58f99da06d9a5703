"""Codebooks for the SOG writer (pure numpy): 1-D k-means for 256-entry codebooks and a median-cut palette.

book, idx = kmeans_1d(values)          # book [256] float64 (ascending), idx uint8 with book[idx] ~ values
entries, labels = palette(rows, 65536) # entries [M, D], labels [N] with entries[labels] ~ rows
"""

from __future__ import annotations

import numpy as np


def kmeans_1d(values: np.ndarray, k: int = 256, iterations: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """Lloyd's k-means on a line: quantile start, nearest-centre assignment by `searchsorted` on the
    midpoints. Exact (every value its own centre) when there are at most `k` distinct values. Returns a
    `k`-entry ascending codebook (padded by repeating the last centre) and uint8 indices."""
    v = np.asarray(values, np.float64).reshape(-1)
    distinct = np.unique(v)
    if distinct.size <= k:
        book = np.concatenate([distinct, np.full(k - distinct.size, distinct[-1])])
        return book, np.searchsorted(distinct, v).astype(np.uint8)
    centres = np.quantile(distinct, (np.arange(k) + 0.5) / k)  # distinct values: no piles of equal centres
    for _ in range(iterations):
        idx = np.searchsorted((centres[1:] + centres[:-1]) / 2, v)
        counts = np.bincount(idx, minlength=k)
        sums = np.bincount(idx, weights=v, minlength=k)
        new = np.where(counts > 0, sums / np.maximum(counts, 1), centres)
        new.sort()
        if np.array_equal(new, centres):
            break
        centres = new
    idx = np.searchsorted((centres[1:] + centres[:-1]) / 2, v)
    return centres, idx.astype(np.uint8)


def palette(rows: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """At most `size` palette entries for [N, D] rows: the distinct rows when there are few enough (exact),
    else a median cut (split every cell at the median of its widest-variance dimension, log2(size) times)
    with each cell's mean as its entry."""
    x = np.asarray(rows, np.float64)
    n = x.shape[0]
    distinct, inverse = np.unique(x, axis=0, return_inverse=True)
    if distinct.shape[0] <= size:
        return distinct, inverse.reshape(-1).astype(np.int64)
    labels = np.zeros(n, np.int64)
    for _ in range(int(np.log2(size))):
        groups = int(labels.max()) + 1
        counts = np.bincount(labels, minlength=groups).astype(np.float64)
        var = np.empty((groups, x.shape[1]))
        for d in range(x.shape[1]):
            s1 = np.bincount(labels, weights=x[:, d], minlength=groups)
            s2 = np.bincount(labels, weights=x[:, d] * x[:, d], minlength=groups)
            var[:, d] = s2 / np.maximum(counts, 1) - (s1 / np.maximum(counts, 1)) ** 2
        key = x[np.arange(n), np.argmax(var, axis=1)[labels]]
        order = np.lexsort((key, labels))
        start = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
        rank = np.empty(n, np.int64)
        rank[order] = np.arange(n) - start[labels[order]]
        labels = labels * 2 + (rank >= (counts[labels] // 2)).astype(np.int64)
    used, labels = np.unique(labels, return_inverse=True)
    m = used.size
    counts = np.bincount(labels, minlength=m)[:, None]
    entries = np.stack([np.bincount(labels, weights=x[:, d], minlength=m) for d in range(x.shape[1])], 1)
    return entries / counts, labels.reshape(-1)
