"""Writing a generation: event files (one per month or per day, optionally gzipped) with the
requested share of real-world defects, the truth file of each shopper's archetype, and the manifest
that caches a finished generation and records which files it owns.

Strings are never built per event in Python: timestamps and session ids are gathered from
fixed-width byte tables, categories and brands are dictionary columns, prices are decimals built
straight from integer cents; blocks are encoded by worker threads (pyarrow's CSV writer and zlib
release the GIL).
"""

from __future__ import annotations

import collections
import dataclasses
import json
import pathlib
import zlib
from concurrent.futures import Future, ThreadPoolExecutor
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
from tqdm import tqdm

from .base import COLUMNS, EVENT_TYPES, HEADER, _DAY, _fixed_width_strings, _mix64, _WORKERS
from .catalogue import _Catalogue
from .shoppers import TRUTH_LABELS, _Period, _user_ids

TRUTH_DIR = "truth"
TRUTH_FILE = "user_archetypes.csv"
MANIFEST_FILE = "generation.json"
# Bump whenever the output for the same arguments changes, so cached generations are rebuilt.
FORMAT_VERSION = 4  # 4: the calibrated world draws its archetypes as groups (issue 14)
_BATCH_ROWS = 250_000  # rows per encoded CSV block; bounds memory of the writer threads
_GZIP_LEVEL = 1  # fastest zlib level: files are scratch data, speed matters more than size


@dataclasses.dataclass
class GeneratedEvents:
    """What a generation wrote."""

    files: list[pathlib.Path]  # event files written, sorted
    truth_file: pathlib.Path  # CSV user_id,archetype (an archetype or "background")
    events: int  # total rows written (without header lines)
    users: int


class _Encoder:
    """Turns slices of sorted compact events into CSV bytes (called from worker threads)."""

    def __init__(self, period: _Period, catalogue: _Catalogue, sessions: dict[str, np.ndarray],
                 seed: int, header: bool, defect_rate: float = 0.0) -> None:
        self.catalogue = catalogue
        self.day_prefix = np.frombuffer(
            "".join(f"{d:%Y-%m-%d} " for d in period.dates()).encode(), np.uint8).reshape(-1, 11)
        self.time_of_day = _time_of_day_table()
        self.session_user = sessions["user"]
        self.session_uuid = sessions["uuid"]
        self.seed = seed
        self.defect_rate = defect_rate
        self.header = (HEADER + "\n").encode() if header else b""
        self.event_types = pa.array(EVENT_TYPES, pa.string())
        self.options = pa_csv.WriteOptions(include_header=False, quoting_style="none", batch_size=_BATCH_ROWS)

    def encode(self, columns: dict[str, np.ndarray], rows: np.ndarray) -> tuple[bytes | pa.Buffer, int]:
        """CSV text of the given rows (indices into ``columns``), in that order, with defects
        injected; and the number of lines added (duplicates)."""
        t = columns["time"][rows]
        product = columns["product"][rows]
        session = columns["session"][rows]
        cat = self.catalogue
        category = cat.category[product]
        user = self.session_user[session]
        day = t // _DAY
        stamp = np.empty((len(t), 23), np.uint8)
        stamp[:, :11] = np.take(self.day_prefix, day, axis=0)
        stamp[:, 11:] = np.take(self.time_of_day, t - day * _DAY, axis=0)
        table = pa.Table.from_arrays(
            [
                _fixed_width_strings(stamp),
                pa.DictionaryArray.from_arrays(pa.array(columns["type"][rows]), self.event_types),
                pa.array(cat.product_id[product]),
                pa.array(cat.category_id[category]),
                pa.DictionaryArray.from_arrays(pa.array(category), cat.category_codes),
                pa.DictionaryArray.from_arrays(pa.array(cat.brand[product]), cat.brand_names),
                _decimal_prices(columns["cents"][rows]),
                pa.array(_user_ids(user, self.seed)),
                _fixed_width_strings(np.take(self.session_uuid, session, axis=0)),
            ],
            names=list(COLUMNS),
        )
        sink = pa.BufferOutputStream()
        pa_csv.write_csv(table, sink, self.options)
        if self.defect_rate == 0.0:
            return sink.getvalue(), 0
        return self._inject_defects(sink.getvalue().to_pybytes(), rows)

    _DEFECTS = ("duplicate_line", "truncated_line", "negative_price", "missing_session")

    def _inject_defects(self, text: bytes, rows: np.ndarray) -> tuple[bytes, int]:
        """Damage a deterministic few lines (chosen by a hash of their position): a loop over
        the damaged lines only, never over every event."""
        draw = _mix64(rows.astype(np.uint64) ^ np.uint64(self.seed * 0x9E3779B1 + 1))
        chosen = np.flatnonzero(draw % np.uint64(1_000_000) < np.uint64(round(self.defect_rate * 1_000_000)))
        if len(chosen) == 0:
            return text, 0
        lines = text.split(b"\n")
        added = 0
        for position in chosen[::-1]:  # from the end, so inserted lines do not shift the others
            kind = self._DEFECTS[int(draw[position] >> np.uint64(40)) % len(self._DEFECTS)]
            line = lines[position]
            fields = line.split(b",")
            if kind == "duplicate_line":
                lines.insert(position, line)
                added += 1
            elif kind == "truncated_line":
                lines[position] = line[: line.rindex(b",")]
            elif kind == "negative_price":
                fields[6] = b"-" + fields[6]
                lines[position] = b",".join(fields)
            else:
                fields[8] = b""
                lines[position] = b",".join(fields)
        return b"\n".join(lines), added


def _time_of_day_table() -> np.ndarray:
    """'HH:MM:SS UTC' for every second of a day as a (86400, 12) byte matrix: formatting by
    lookup is far faster than strftime per event."""
    s = np.arange(_DAY)
    table = np.tile(np.frombuffer(b"00:00:00 UTC", np.uint8), (_DAY, 1))
    for column, digit in ((0, s // 36000), (1, s // 3600 % 10), (3, s // 600 % 6),
                          (4, s // 60 % 10), (6, s // 10 % 6), (7, s % 10)):
        table[:, column] += digit.astype(np.uint8)
    return table


def _decimal_prices(cents: np.ndarray) -> pa.Array:
    """decimal128(12, 2) column straight from integer cents (prints as e.g. 543.10)."""
    words = np.zeros((len(cents), 2), np.int64)
    words[:, 0] = cents
    return pa.Array.from_buffers(pa.decimal128(12, 2), len(cents), [None, pa.py_buffer(words)])


def _write_event_file(path: pathlib.Path, columns: dict[str, np.ndarray], order: np.ndarray, encoder: _Encoder,
                      gzip: bool, pool: ThreadPoolExecutor, bar: tqdm) -> int:
    """Encode (and compress) blocks of rows in worker threads and write them in order; a few
    blocks in flight keep both cores busy while bounding memory.  Returns the lines added by
    injected duplicates."""
    sink = _Sink(gzip)
    added = 0

    def encode(rows: np.ndarray) -> tuple[bytes | pa.Buffer, bytes | pa.Buffer, int, int]:
        text, extra = encoder.encode(columns, rows)
        return text, sink.pack(text), len(rows), extra

    def write_next() -> None:
        nonlocal added
        text, packed, rows, extra = pending.popleft().result()
        sink.write(raw, text, packed)
        bar.update(rows)
        added += extra

    with open(path, "wb") as raw:
        sink.open(raw, encoder.header)
        pending: collections.deque[Future] = collections.deque()
        for lo in range(0, len(order), _BATCH_ROWS):
            pending.append(pool.submit(encode, order[lo:lo + _BATCH_ROWS]))
            if len(pending) > 2 * _WORKERS:
                write_next()
        while pending:
            write_next()
        sink.close(raw)
    return added


class _Sink:
    """Writes CSV blocks in order, plain or as one gzip member made of independently deflated
    blocks (like pigz), so that blocks can be compressed in parallel threads.  The gzip mtime
    is 0 to keep the output byte-identical between runs."""

    def __init__(self, gzip: bool) -> None:
        self.gzip = gzip
        self.crc = 0
        self.size = 0

    def pack(self, text: bytes | pa.Buffer) -> bytes | pa.Buffer:
        """The bytes to store for a block of CSV text (thread-safe)."""
        if not self.gzip:
            return text
        deflate = zlib.compressobj(_GZIP_LEVEL, zlib.DEFLATED, -15)
        return deflate.compress(text) + deflate.flush(zlib.Z_SYNC_FLUSH)

    def open(self, raw: BinaryIO, header: bytes) -> None:
        if self.gzip:
            raw.write(b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff")
        if header:
            self.write(raw, header, self.pack(header))

    def write(self, raw: BinaryIO, text: bytes | pa.Buffer, packed: bytes | pa.Buffer) -> None:
        """Append the packed form of ``text`` (blocks must come in order)."""
        if self.gzip:
            self.crc = zlib.crc32(text, self.crc)
            self.size += len(text)
        raw.write(packed)

    def close(self, raw: BinaryIO) -> None:
        if self.gzip:
            final = zlib.compressobj(_GZIP_LEVEL, zlib.DEFLATED, -15).flush()  # empty last block
            raw.write(final + self.crc.to_bytes(4, "little") + (self.size & 0xFFFFFFFF).to_bytes(4, "little"))


def _write_truth(path: pathlib.Path, user_ids: np.ndarray, archetype: np.ndarray) -> None:
    """user_id,archetype per user, sorted by user_id."""
    order = np.argsort(user_ids)
    table = pa.table({
        "user_id": pa.array(user_ids[order]),
        "archetype": pa.DictionaryArray.from_arrays(pa.array(archetype[order]), pa.array(TRUTH_LABELS)),
    })
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.write(b"user_id,archetype\n")
        pa_csv.write_csv(table, f, pa_csv.WriteOptions(include_header=False, quoting_style="none"))


# --------------------------------------------------------------------------------------------------
# Manifest: caching and ownership of generated files
# --------------------------------------------------------------------------------------------------


def _manifest_path(out: pathlib.Path) -> pathlib.Path:
    return out / TRUTH_DIR / MANIFEST_FILE


def _read_manifest(out: pathlib.Path) -> dict | None:
    try:
        return json.loads(_manifest_path(out).read_text())
    except (OSError, ValueError):
        return None


def _write_manifest(out: pathlib.Path, settings: dict, paths: list[pathlib.Path], truth: pathlib.Path, *,
                    complete: bool, events: int = 0, users: int = 0) -> None:
    manifest = {
        "settings": settings, "complete": complete, "files": [p.name for p in paths],
        "truth_file": truth.name, "events": events, "users": users,
        "sizes": {p.name: p.stat().st_size for p in paths} if complete else {},
    }
    path = _manifest_path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(manifest, indent=2) + "\n")


def _cached_generation(out: pathlib.Path, settings: dict) -> GeneratedEvents | None:
    """The previous result if out_dir holds a complete, untouched generation with these settings."""
    manifest = _read_manifest(out)
    if not manifest or not manifest.get("complete") or manifest.get("settings") != settings:
        return None
    paths = [out / name for name in manifest["files"]]
    truth = out / TRUTH_DIR / manifest["truth_file"]
    intact = truth.is_file() and all(p.is_file() and p.stat().st_size == manifest["sizes"].get(p.name)
                                     for p in paths)
    if not intact:
        return None
    return GeneratedEvents(files=sorted(paths), truth_file=truth, events=manifest["events"], users=manifest["users"])


def _remove_previous_generation(out: pathlib.Path) -> None:
    """Delete the files a previous generation recorded as its own (and nothing else)."""
    manifest = _read_manifest(out)
    if not manifest:
        return
    owned = [out / pathlib.Path(name).name for name in manifest.get("files", [])]
    owned.append(out / TRUTH_DIR / pathlib.Path(manifest.get("truth_file", TRUTH_FILE)).name)
    for path in owned:
        path.unlink(missing_ok=True)
    _manifest_path(out).unlink(missing_ok=True)
