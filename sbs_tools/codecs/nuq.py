"""NUQ (spec §6.3): groups of 256 values, each ``[16 SFP centres][ceil(n_g/2) nibble bytes]``.

Byte ``j`` of a group's index area holds value ``2j`` in its low nibble and
``2j+1`` in its high nibble; ``value = SFP_decode(centre[index])``. A final
odd value leaves the high nibble zero. Full groups take 144 bytes.

Encoder (not gemma.cpp-identical; about 5% lower MSE than gemma.cpp on every
corpus tensor, better in 319 of its 320 groups): per group,
values sorted (a partial last group padded with copies of its maximum, as
gemma.cpp does), optimal 1-D k-means with 16 clusters by dynamic programming
(cluster costs from float64 prefix sums of mean-centred values, compared in
float32; gemma.cpp uses float32 sums over values whose low 8 mantissa bits
carry its sort payload); centres = cluster means, rounded to the *nearest* SFP
value (gemma.cpp truncates); each value then takes the index of its nearest
*decoded* centre (gemma.cpp keeps the cluster index), which can only reduce the
error. Unused centres (fewer than 16 distinct values) are 0. Inputs must obey
``|x| <= 1.875`` (scale first with ``scale_for_sfp``).

Error bound, per group (full or partial) with ``R = max - min`` and
``M = max|x|``: the root mean square error over the group's values is at most
``R/30 + d(M)``, where ``d(a) = max(a/16, min(a, 2**-7)/8) + 2**-23`` bounds
the nearest-SFP rounding of a centre. Why: one cluster for the maximum (and
the padding copies of it) plus 15 equal-width cells over the rest is a valid
partition whose midpoint error is <= R/30 per value, so the optimal SSE is
no larger; moving each centre by <= d adds at most d to the RMS (Minkowski);
nearest-centre re-assignment only lowers it. A group with at most 16 distinct
values is reproduced up to the SFP rounding of each value, ``d(|x|)`` (plus
``2**-20 * R`` when two values are so close that the float cost comparison
cannot separate them). There is no useful per-value max bound beyond
``R + d(M)``: k-means may leave a lone outlier in a cluster with many others.

The DP is vectorised across groups (chunks of ``_DP_GROUPS`` bound its
O(16 * 256**2 / 2) working set) with Python loops only over the 16 clusters
and 8 row blocks; it costs about 1.5 ms per group on a 2-core test machine.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from ..types import NUQ_CLUSTERS, NUQ_GROUP
from . import sfp
from ._buffers import CHUNK

__all__ = ["decode", "encode", "GROUP", "CLUSTERS", "GROUP_BYTES", "cluster_centers"]

GROUP = NUQ_GROUP
CLUSTERS = NUQ_CLUSTERS
GROUP_BYTES = CLUSTERS + GROUP // 2
_DP_GROUPS = 16
_DP_BLOCK = 32


def _decode_groups(g: np.ndarray, out2d: np.ndarray, nvals: int) -> None:
    """Decode groups ``g`` (rows of 16 centre bytes + nibbles) into ``out2d`` (G, nvals)."""
    count = g.shape[0]
    table = sfp.decode_bytes(g[:, :CLUSTERS]).reshape(-1)  # (G*16,) float32
    nib = g[:, CLUSTERS:]
    idx = np.empty((count, 2 * nib.shape[1]), dtype=np.intp)
    np.bitwise_and(nib, 15, out=idx[:, 0::2], casting="unsafe")
    np.right_shift(nib, 4, out=idx[:, 1::2], casting="unsafe")
    idx += (np.arange(count, dtype=np.intp) * CLUSTERS)[:, None]
    np.take(table, idx[:, :nvals], out=out2d, mode="clip")


def decode(u8: np.ndarray, n: int, out: np.ndarray) -> np.ndarray:
    """Decode ``n`` NUQ values (size-checked bytes) into float32 ``out``."""
    full = n // GROUP
    step = max(1, CHUNK // GROUP)
    if full:
        groups = u8[:full * GROUP_BYTES].reshape(full, GROUP_BYTES)
        dst = out[:full * GROUP].reshape(full, GROUP)
        for i in range(0, full, step):
            _decode_groups(groups[i:i + step], dst[i:i + step], GROUP)
    tail = n - full * GROUP
    if tail:
        g = u8[full * GROUP_BYTES:].reshape(1, -1)
        _decode_groups(g, out[full * GROUP:].reshape(1, tail), tail)
    return out


@lru_cache(maxsize=None)
def _block_tables(m0: int, m1: int) -> tuple[np.ndarray, np.ndarray]:
    """(1/length, 0-or-inf mask) for clusters [f..m], m in [m0, m1), f < m1."""
    length = np.arange(m0, m1)[:, None] - np.arange(m1)[None, :] + 1
    inv_len = np.where(length > 0, 1.0 / np.maximum(length, 1), 0.0)
    mask = np.where(length > 0, 0.0, np.inf).astype(np.float32)
    return inv_len, mask


def _block_costs(s1: np.ndarray, s2: np.ndarray, m0: int, m1: int) -> np.ndarray:
    """float32 cost[g, m - m0, f] of one cluster ``x[f..m]`` for m in [m0, m1), f < m1.

    Entries with ``f > m`` are +inf. Computed in float64 from prefix sums.
    """
    inv_len, mask = _block_tables(m0, m1)
    ssum = np.subtract(s1[:, m0 + 1:m1 + 1, None], s1[:, None, :m1])
    cost = np.subtract(s2[:, m0 + 1:m1 + 1, None], s2[:, None, :m1])
    np.multiply(ssum, ssum, out=ssum)
    np.multiply(ssum, inv_len, out=ssum)
    np.subtract(cost, ssum, out=cost)
    np.maximum(cost, 0.0, out=cost)  # rounding noise; as gemma.cpp
    out = cost.astype(np.float32)
    out += mask
    return out


def cluster_centers(sorted_x: np.ndarray) -> np.ndarray:
    """Optimal 16-means centres (float64, ascending, unused low ones 0) of sorted rows.

    ``sorted_x``: (G, 256) float64, each row ascending. Exact DP on prefix sums
    (``best[k][m]`` = least SSE of ``x[0..m]`` in at most ``k+1`` clusters), same
    recurrence and tie rule as gemma.cpp's ``ClusterExactL2``. Cluster costs
    are computed in float64 (on mean-centred values) and compared in float32.
    The cost matrix is lower-triangular (``first <= last``), so it is kept in
    row blocks that skip most of the empty upper triangle.
    """
    count, n = sorted_x.shape
    shift = sorted_x.mean(axis=1, keepdims=True)  # costs are shift-invariant
    xs = sorted_x - shift
    s1 = np.zeros((count, n + 1))
    s2 = np.zeros((count, n + 1))
    np.cumsum(xs, axis=1, out=s1[:, 1:])
    np.cumsum(xs * xs, axis=1, out=s2[:, 1:])
    bounds = [(m0, min(m0 + _DP_BLOCK, n)) for m0 in range(0, n, _DP_BLOCK)]
    costs = [_block_costs(s1, s2, m0, m1) for m0, m1 in bounds]

    best = np.concatenate([c[:, :, 0] for c in costs], axis=1)  # one cluster
    args = [np.zeros((count, n), dtype=np.intp)]
    prev_ext = np.empty((count, n), dtype=np.float32)
    rows = np.arange(count)[:, None]
    cost_tmp = np.empty((count, _DP_BLOCK, n), dtype=np.float32)
    for k in range(1, CLUSTERS):
        prev_ext[:, 0] = np.inf  # the rightmost of >= 2 clusters never starts at 0
        prev_ext[:, 1:] = best[:, :-1]
        val = np.empty_like(best)
        arg = np.empty((count, n), dtype=np.intp)
        # only best[15][n-1] is used from the last row
        for (m0, m1), cost in zip(bounds if k < CLUSTERS - 1 else bounds[-1:],
                                  costs if k < CLUSTERS - 1 else costs[-1:]):
            tmp = np.add(cost, prev_ext[:, None, :m1], out=cost_tmp[:, :m1 - m0, :m1])
            a = tmp.argmin(axis=2)
            arg[:, m0:m1] = a
            val[:, m0:m1] = tmp[rows, np.arange(m1 - m0)[None, :], a]
        if k == CLUSTERS - 1:
            val[:, :bounds[-1][0]] = np.inf
        better = val < best  # keep fewer clusters unless strictly better
        best = np.where(better, val, best)
        args.append(np.where(better, arg, args[-1]))

    centers = np.zeros((count, CLUSTERS))
    last = np.full(count, n - 1)
    done = np.zeros(count, dtype=bool)
    grp = np.arange(count)
    for k in range(CLUSTERS - 1, -1, -1):
        start = args[k][grp, last]
        size = last - start + 1
        mean = (s1[grp, last + 1] - s1[grp, start]) / size + shift[:, 0]
        centers[:, k] = np.where(done, 0.0, mean)
        done |= start == 0
        last = np.where(done, last, start - 1)
    return centers


def _encode_groups(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """SFP centre bytes (G, 16) and indices (G, L) of float32 groups ``x`` (G, L)."""
    count, length = x.shape
    padded = np.empty((count, GROUP))
    padded[:, :length] = x
    if length < GROUP:
        padded[:, length:] = x.max(axis=1, keepdims=True)
    padded.sort(axis=1)
    codes = np.empty((count, CLUSTERS), dtype=np.uint8)
    for i in range(0, count, _DP_GROUPS):
        centers = cluster_centers(padded[i:i + _DP_GROUPS])
        np.clip(centers, -sfp.SFP_MAX, sfp.SFP_MAX, out=centers)  # mean rounding at +-1.875
        codes[i:i + _DP_GROUPS] = sfp.encode_nearest(centers)
    dec = sfp.decode_bytes(codes).astype(np.float64)  # (G, 16)
    idx = np.empty((count, length), dtype=np.uint8)
    for i in range(0, count, _DP_GROUPS * 8):
        dist = np.abs(x[i:i + _DP_GROUPS * 8, :, None] - dec[i:i + _DP_GROUPS * 8, None, :])
        idx[i:i + _DP_GROUPS * 8] = dist.argmin(axis=2)
    return codes, idx


def _pack(idx: np.ndarray) -> np.ndarray:
    """Pack (G, L) nibbles to (G, ceil(L/2)) bytes, value 2j low, 2j+1 high."""
    count, length = idx.shape
    if length % 2:
        idx = np.concatenate([idx, np.zeros((count, 1), dtype=np.uint8)], axis=1)
    return idx[:, 0::2] | (idx[:, 1::2] << 4)


def encode(x: np.ndarray) -> bytes:
    """NUQ bytes of finite float32 ``x`` (1-D) with ``|x| <= 1.875``."""
    sfp._check_range(x)
    n = x.size
    full = n // GROUP
    tail = n - full * GROUP
    buf = np.empty(full * GROUP_BYTES + (CLUSTERS + (tail + 1) // 2 if tail else 0),
                   dtype=np.uint8)
    if full:
        groups = buf[:full * GROUP_BYTES].reshape(full, GROUP_BYTES)
        xs = x[:full * GROUP].reshape(full, GROUP)
        step = 4 * _DP_GROUPS * 8
        for i in range(0, full, step):
            codes, idx = _encode_groups(xs[i:i + step])
            groups[i:i + step, :CLUSTERS] = codes
            groups[i:i + step, CLUSTERS:] = _pack(idx)
    if tail:
        codes, idx = _encode_groups(x[full * GROUP:].reshape(1, tail))
        base = full * GROUP_BYTES
        buf[base:base + CLUSTERS] = codes[0]
        buf[base + CLUSTERS:] = _pack(idx)[0]
    return buf.tobytes()
