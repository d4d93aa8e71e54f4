"""Perceptual image hashes (64- and 256-bit DCT pHash) and their vectorised near-duplicate search.

Why a module of its own: the leakage check (:mod:`medvl.data.leakage`) and the content-grouped
split (:mod:`medvl.data.grouping`) must call two images "the same" by one rule, so both use these
functions and thresholds. The thresholds are explained in :mod:`medvl.data.leakage`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

PHASH_DISTANCE = 18  # of 256 bits: copies measured <= 10 (16 if harsher), different images >= 26
CANDIDATE_DISTANCE = 12  # of 64 bits: copies measured <= 4; only a fast pre-filter
_HASH_SIDE = 64  # images are shrunk to 64x64 before the DCT
_CHUNK = 256  # query hashes compared per vectorised step (256 x 20k uint64 = 40 MB)


def _dct_matrix(n: int) -> np.ndarray:
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    return np.cos(np.pi * (2 * i + 1) * k / (2 * n))


_DCT = _dct_matrix(_HASH_SIDE)


def _gray(image: Image.Image) -> Image.Image:
    """8-bit grayscale; 16-bit and float images are min-max scaled first so contrast is kept."""
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        values = np.asarray(image, dtype=np.float64)
        low, high = float(values.min()), float(values.max())
        scaled = (values - low) * (255.0 / (high - low)) if high > low else values * 0
        return Image.fromarray(scaled.astype(np.uint8))
    return image.convert("L")


def _bits(coefficients: np.ndarray) -> int:
    """One bit per coefficient: above the median of them all or not, packed row-major."""
    flat = coefficients.ravel()
    return int.from_bytes(np.packbits(flat > np.median(flat)).tobytes(), "big")


def phashes(image: Image.Image | str | Path) -> tuple[int, int]:
    """The 64-bit and 256-bit DCT perceptual hashes of an image (the imagehash ``phash`` recipe).

    The image is made grayscale, shrunk to 64x64 with Lanczos and transformed with a 2-D DCT-II;
    each of the 8x8 (16x16) lowest-frequency coefficients gives one bit: above their median or not.
    Resizing and JPEG re-encoding barely move these coefficients, so copies keep almost the same
    bits. The 64-bit hash is cheap to compare in bulk; the 256-bit one sees enough detail (a lesion,
    an organ's outline) to tell similar-looking scans apart.
    """
    if not isinstance(image, Image.Image):
        with Image.open(image) as opened:
            opened.draft("L", (2 * _HASH_SIDE, 2 * _HASH_SIDE))  # JPEG: decode at reduced scale
            return phashes(opened.copy())
    small = _gray(image).resize((_HASH_SIDE, _HASH_SIDE), Image.Resampling.LANCZOS)
    dct = _DCT @ np.asarray(small, dtype=np.float64) @ _DCT.T
    return _bits(dct[:8, :8]), _bits(dct[:16, :16])


def hamming(a: int, b: int) -> int:
    """Number of differing bits between two hashes."""
    return (a ^ b).bit_count()


def _popcount(values: np.ndarray) -> np.ndarray:
    if hasattr(np, "bitwise_count"):  # numpy >= 2.0
        return np.bitwise_count(values)
    as_bytes = values.view(np.uint8).reshape(*values.shape, 8)
    return np.unpackbits(as_bytes, axis=-1).sum(axis=-1)


def _words(hashes: Sequence[int], n_words: int) -> np.ndarray:
    """Hashes as an (n, n_words) uint64 array, most significant word first."""
    raw = b"".join(h.to_bytes(8 * n_words, "big") for h in hashes)
    return np.frombuffer(raw, dtype=">u8").astype(np.uint64).reshape(len(hashes), n_words)


def _hash_arrays(hashes: Sequence[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """(64-bit words, 256-bit words) of (64-bit, 256-bit) pHash pairs, as uint64 arrays."""
    return _words([h for h, _ in hashes], 1)[:, 0], _words([h for _, h in hashes], 4)


def _near_chunks(
    queries: Sequence[tuple[int, int]],
    pool: Sequence[tuple[int, int]],
    phash_distance: int,
    candidate_distance: int,
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(query rows, pool columns, 256-bit distances) of every pair within both thresholds.

    Vectorised in chunks of queries: 64-bit XOR-and-popcount against the whole pool picks the
    candidates within ``candidate_distance``, whose 256-bit distances are then computed in one go
    and kept when within ``phash_distance``.
    """
    pool64, pool256 = _hash_arrays(pool)
    query64, query256 = _hash_arrays(queries)
    for start in range(0, len(queries), _CHUNK):
        coarse = _popcount(query64[start : start + _CHUNK, None] ^ pool64[None, :])
        rows, cols = np.nonzero(coarse <= candidate_distance)
        rows += start
        fine = _popcount(query256[rows] ^ pool256[cols]).sum(axis=1)
        keep = fine <= phash_distance
        yield rows[keep], cols[keep], fine[keep]


def match_hashes(
    queries: Sequence[tuple[int, int]],
    pool: Sequence[tuple[int, int]],
    *,
    phash_distance: int = PHASH_DISTANCE,
    candidate_distance: int = CANDIDATE_DISTANCE,
) -> list[tuple[int, int, int]]:
    """(query index, pool index, 256-bit distance) of the closest near-duplicate of each query.

    ``queries`` and ``pool`` hold (64-bit, 256-bit) pHash pairs. A pair is near when the 64-bit
    hashes differ in at most ``candidate_distance`` bits and the 256-bit ones in at most
    ``phash_distance``. Ties go to the lower pool index. Queries with no near-duplicate are left
    out.
    """
    if not queries or not pool:
        return []
    found: list[tuple[int, int, int]] = []
    for rows, cols, fine in _near_chunks(queries, pool, phash_distance, candidate_distance):
        order = np.lexsort((cols, fine, rows))  # by query, then distance, then pool index
        rows, cols, fine = rows[order], cols[order], fine[order]
        first = np.ones(len(rows), dtype=bool)
        first[1:] = rows[1:] != rows[:-1]
        found += zip(rows[first].tolist(), cols[first].tolist(), fine[first].tolist(), strict=True)
    return found


def near_pairs(
    hashes: Sequence[tuple[int, int]],
    *,
    phash_distance: int = PHASH_DISTANCE,
    candidate_distance: int = CANDIDATE_DISTANCE,
) -> list[tuple[int, int, int]]:
    """Every (i, j, 256-bit distance), i < j, of near hashes by the rule of :func:`match_hashes`.

    Why all pairs and not the closest one: grouping near-duplicates for a split needs every edge
    (A near B and B near C puts A, B and C in one group), or two near images could land in
    different splits and :func:`find_leakage` would then report a leak.
    """
    pairs: list[tuple[int, int, int]] = []
    for rows, cols, fine in _near_chunks(hashes, hashes, phash_distance, candidate_distance):
        upper = rows < cols
        pairs += zip(rows[upper].tolist(), cols[upper].tolist(), fine[upper].tolist(), strict=True)
    return pairs
