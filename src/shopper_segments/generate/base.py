"""What every stage of the generator shares: the REES46 file layout, the compact in-memory event
columns and the vectorised numpy helpers (hashing, sampling, counts per segment).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

HEADER = "event_time,event_type,product_id,category_id,category_code,brand,price,user_id,user_session"
COLUMNS = tuple(HEADER.split(","))
EVENT_TYPES = ("view", "cart", "remove_from_cart", "purchase")
VIEW, CART, REMOVE, PURCHASE = range(4)

_WORKERS = 2  # threads that simulate chunks and encode file blocks
_DAY = 86_400
_EVENT_COLUMNS = ("time", "type", "product", "cents", "session")  # compact in-memory event columns
_KEY, _KEY_HALF = np.dtype("<u8"), np.dtype("<u4")  # explicit little-endian: low half = position


# --------------------------------------------------------------------------------------------------
# Vectorised helpers
# --------------------------------------------------------------------------------------------------


def _mix64(values: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser: a bijective, well-mixing hash of uint64 values (so distinct inputs
    give distinct outputs, which makes derived session ids unique)."""
    x = values.astype(np.uint64)
    x ^= x >> np.uint64(30)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(27)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    return x


def _draw_rows(cdf: np.ndarray, rows: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Inverse-CDF draw of a column index for each (row, uniform) pair in one searchsorted call:
    row r's cumulative weights are shifted into (r, r + 1]."""
    n_rows, n_cols = cdf.shape
    flat = (cdf + np.arange(n_rows)[:, None]).ravel()
    pos = np.searchsorted(flat, rows + u, side="right") - rows * n_cols
    return np.minimum(pos, n_cols - 1)


def _lognormal_counts(rng: np.random.Generator, median: np.ndarray, sigma: np.ndarray,
                      low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Heavy-tailed integer counts, clipped to [low, high]."""
    values = median * np.exp(sigma * rng.standard_normal(len(median)))
    return np.clip(np.rint(values), low, high).astype(np.int32)


def _segment_starts(counts: np.ndarray) -> np.ndarray:
    """Index of the first element of each non-empty segment in a flat array of segments."""
    return np.concatenate(([0], np.cumsum(counts[:-1], dtype=np.int64)))


def _segmented_cumsum(values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Running sum restarting at each segment (all counts must be >= 1)."""
    total = np.cumsum(values)
    starts = _segment_starts(counts)
    return total - np.repeat(total[starts] - values[starts], counts)


def _fixed_width_strings(chars: np.ndarray) -> pa.Array:
    """Zero-copy arrow string column from an (n, width) byte matrix."""
    n, width = chars.shape
    offsets = np.arange(0, (n + 1) * width, width, dtype=np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(np.ascontiguousarray(chars)))
