"""HDF5 event files: layout, cache keys, atomic writes and validation of every file read.

Layout of an events file (``format = "darkvalley-events"``, ``schema_version = 1``)::

    /events/mjj             float64 (n,)     dijet invariant mass [GeV]
    /events/jet_pt          float64 (n, 2)   leading, subleading jet pT [GeV]
    /events/jet_eta         float64 (n, 2)
    /events/jet_phi         float64 (n, 2)   [rad]
    /events/jet_m           float64 (n, 2)   jet mass [GeV]
    /events/n_constituents  int32   (n, 2)
    /events/region          int8    (n,)     0 outside, 1 SR, 2 SB (narrow sidebands 4400-4700,
                                             5500-5800 GeV)
    /events/region_wide     int8    (n,)     same with the wide sidebands 4300-4700, 5500-5900 GeV
    /events/weight          float64 (n,)     cross-section per generated event [pb]
    /events/event_number    int64   (n,)     index of the event in the generated sequence
    /constituents/pt, eta, phi  float32 (m,) constituents of the 2n leading jets, event-major
    /constituents/offsets   int64   (2n + 1,) jet 2i = leading jet of event i, 2i+1 subleading

Attributes on the root: process, benchmark, config (JSON), sigma_pb, sigma_err_pb, n_generated,
cutflow (JSON), code_version, pythia_version (no timestamps: the same configuration and seed
give the same bytes). Only events passing the dijet selection
are stored. Files are written under a temporary name and renamed, so a crash never leaves a
partial file under the final name.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import InvalidFileError, StorageError

FORMAT = "darkvalley-events"
SCHEMA_VERSION = 1

EVENT_FIELDS_1D = {"mjj": "f8", "region": "i1", "region_wide": "i1", "weight": "f8",
                   "event_number": "i8"}
EVENT_FIELDS_2D = {"jet_pt": "f8", "jet_eta": "f8", "jet_phi": "f8", "jet_m": "f8",
                   "n_constituents": "i4"}
CONSTITUENT_FIELDS = ("pt", "eta", "phi")


def cache_root() -> Path:
    """``$DARKVALLEY_CACHE`` if set, else ``cache/`` beside the app (the repository root)."""
    env = os.environ.get("DARKVALLEY_CACHE")
    root = Path(env) if env else Path(__file__).resolve().parent.parent / "cache"
    return root


def events_dir() -> Path:
    return cache_root() / "events"


@dataclass
class EventSample:
    """An events file in memory. Arrays as in the module docstring; attrs as plain Python."""

    path: Path
    events: dict[str, np.ndarray]
    constituents: dict[str, np.ndarray] | None
    attrs: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.events["mjj"])

    @property
    def process(self) -> str:
        return self.attrs["process"]

    @property
    def benchmark(self) -> str | None:
        return self.attrs.get("benchmark") or None

    @property
    def sigma_pb(self) -> float:
        return float(self.attrs["sigma_pb"])

    @property
    def n_generated(self) -> int:
        return int(self.attrs["n_generated"])

    @property
    def config(self) -> dict:
        return self.attrs["config"]

    @property
    def cutflow(self) -> dict:
        return self.attrs["cutflow"]

    def region(self, sidebands: str = "narrow") -> np.ndarray:
        return self.events["region" if sidebands == "narrow" else "region_wide"]


def _atomic_target(path: Path):
    path = Path(path)
    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageError(f"cannot create folder {folder}: {exc.strerror or exc}") from exc
    if not os.access(folder, os.W_OK):
        raise StorageError(f"cannot write to {folder}: permission denied")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=folder)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; the final file gets normal permissions
    return Path(tmp)


def _storage_error(path: Path, exc: OSError) -> StorageError:
    if getattr(exc, "errno", None) == errno.ENOSPC:
        return StorageError(f"disk full while writing {path}; nothing was written, free space "
                            "and try again")
    return StorageError(f"cannot write {path}: {exc}")


@contextlib.contextmanager
def atomic_write(path: Path):
    """Yield a temporary path in the destination folder; on success rename it to ``path``.

    On any failure the temporary file is removed and nothing appears under ``path``; OS errors
    (permission, full disk) become StorageError.
    """
    path = Path(path)
    tmp = _atomic_target(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise _storage_error(path, exc) from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_events(path: Path, events: dict[str, np.ndarray], constituents: dict[str, np.ndarray],
                 attrs: dict) -> Path:
    """Write an events file atomically (temporary file in the same folder, then os.replace)."""
    import h5py

    path = Path(path)
    with atomic_write(path) as tmp, h5py.File(tmp, "w") as f:
        f.attrs["format"] = FORMAT
        f.attrs["schema_version"] = SCHEMA_VERSION
        for key, value in attrs.items():
            f.attrs[key] = json.dumps(value) if isinstance(value, (dict, list)) else value
        ev = f.create_group("events")
        for name, dtype in {**EVENT_FIELDS_1D, **EVENT_FIELDS_2D}.items():
            ev.create_dataset(name, data=np.asarray(events[name], dtype=dtype))
        co = f.create_group("constituents")
        for name in CONSTITUENT_FIELDS:
            co.create_dataset(name, data=np.asarray(constituents[name], dtype="f4"),
                              compression="lzf" if len(constituents[name]) else None)
        co.create_dataset("offsets", data=np.asarray(constituents["offsets"], dtype="i8"))
    return path


def write_json_atomic(path: Path, payload: dict) -> None:
    """Write a JSON file atomically; used for job status and results."""
    text = json.dumps(payload, indent=1, default=_json_default)
    with atomic_write(path) as tmp:
        tmp.write_text(text)


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _decode_attr(value):
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, str) and value[:1] in "{[":
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def read_events(path: Path | str, constituents: bool = True) -> EventSample:
    """Read and validate an events file.

    Raises InvalidFileError naming the file and the problem for a missing, foreign, truncated or
    wrong-schema file. ``constituents=False`` skips the (large) constituent arrays.
    """
    import h5py

    path = Path(path)
    if not path.exists():
        raise InvalidFileError(f"{path}: no such file")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise InvalidFileError(f"{path}: not a readable HDF5 file (truncated or foreign?): "
                               f"{exc}") from exc
    with f:
        fmt = _decode_attr(f.attrs.get("format", ""))
        if fmt != FORMAT:
            raise InvalidFileError(f"{path}: not a darkvalley events file (format attribute "
                                   f"{fmt!r}, expected {FORMAT!r})")
        version = _decode_attr(f.attrs.get("schema_version", -1))
        if version != SCHEMA_VERSION:
            raise InvalidFileError(f"{path}: schema version {version}, this code reads "
                                   f"{SCHEMA_VERSION}; regenerate the sample")
        attrs = {k: _decode_attr(v) for k, v in f.attrs.items()}
        for key in ("process", "config", "sigma_pb", "n_generated", "cutflow"):
            if key not in attrs:
                raise InvalidFileError(f"{path}: attribute {key!r} is missing")
        try:
            events = {name: f["events"][name][...] for name in {**EVENT_FIELDS_1D,
                                                               **EVENT_FIELDS_2D}}
            const = None
            if constituents:
                const = {name: f["constituents"][name][...] for name in CONSTITUENT_FIELDS}
                const["offsets"] = f["constituents"]["offsets"][...]
        except KeyError as exc:
            raise InvalidFileError(f"{path}: dataset missing ({exc})") from exc
        except OSError as exc:
            raise InvalidFileError(f"{path}: data cannot be read (truncated file?): {exc}") from exc
    _validate(path, events, const)
    return EventSample(path=path, events=events, constituents=const, attrs=attrs)


def _validate(path: Path, events: dict, const: dict | None) -> None:
    n = len(events["mjj"])
    for name in EVENT_FIELDS_1D:
        if events[name].shape != (n,):
            raise InvalidFileError(f"{path}: events/{name} has shape {events[name].shape}, "
                                   f"expected ({n},)")
    for name in EVENT_FIELDS_2D:
        if events[name].shape != (n, 2):
            raise InvalidFileError(f"{path}: events/{name} has shape {events[name].shape}, "
                                   f"expected ({n}, 2)")
    if not np.all(np.isfinite(events["mjj"])):
        raise InvalidFileError(f"{path}: events/mjj holds non-finite values")
    if const is None:
        return
    offsets = const["offsets"]
    m = len(const["pt"])
    if (offsets.shape != (2 * n + 1,) or offsets[0] != 0 or offsets[-1] != m
            or np.any(np.diff(offsets) < 0)):
        raise InvalidFileError(f"{path}: constituents/offsets are inconsistent with {n} events "
                               f"and {m} constituents")
    if not np.array_equal(np.diff(offsets).reshape(-1, 2), events["n_constituents"]):
        raise InvalidFileError(f"{path}: constituents/offsets disagree with "
                               "events/n_constituents")
    for name in CONSTITUENT_FIELDS:
        if const[name].shape != (m,):
            raise InvalidFileError(f"{path}: constituents/{name} has the wrong length")


def config_key(config: dict) -> str:
    """Stable 12-hex-digit hash of a configuration (canonical JSON, sorted keys)."""
    import hashlib

    blob = json.dumps(config, sort_keys=True, default=_json_default).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def list_event_files() -> list[Path]:
    """All events files in the cache, newest first."""
    folder = events_dir()
    if not folder.is_dir():
        return []
    files = [p for p in folder.glob("*.h5") if not p.name.startswith(".")]
    return sorted(files, key=lambda p: p.stat().st_mtime, reverse=True)


def file_summary(path: Path) -> dict:
    """Small dict describing a file (attributes only; constituents not read)."""
    sample = read_events(path, constituents=False)
    region = sample.events["region"]
    return {
        "path": str(path),
        "process": sample.process,
        "benchmark": sample.benchmark,
        "n_selected": len(sample),
        "n_generated": sample.n_generated,
        "sigma_pb": sample.sigma_pb,
        "n_sr": int((region == 1).sum()),
        "n_sb": int((region == 2).sum()),
        "modified": time.strftime("%Y-%m-%d %H:%M", time.localtime(path.stat().st_mtime)),
        "size_mb": round(path.stat().st_size / 1e6, 2),
    }


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


IMAGES_FORMAT = "darkvalley-images"


def write_images(path: Path | str, images: np.ndarray, sample: EventSample,
                 settings: dict) -> Path:
    """Write jet images for users' own networks, atomically.

    /images        float32 (events, copies + 1, 2, res, res): copy 0 is the original event,
                   jets are (leading, subleading), pixels (eta', phi') in the jet frame, [GeV]
    /mjj, /region, /region_wide, /event_number: per-event, as in the events file
    attrs: format, source file, process, benchmark, sigma_pb, n_generated and the settings.
    """
    import h5py

    path = Path(path)
    with atomic_write(path) as tmp, h5py.File(tmp, "w") as f:
        f.attrs["format"] = IMAGES_FORMAT
        f.attrs["schema_version"] = SCHEMA_VERSION
        f.attrs["source"] = str(sample.path)
        f.attrs["process"] = sample.process
        f.attrs["benchmark"] = sample.benchmark or ""
        f.attrs["sigma_pb"] = sample.sigma_pb
        f.attrs["n_generated"] = sample.n_generated
        f.attrs["settings"] = json.dumps(settings)
        chunk = (1,) + images.shape[1:] if images.ndim == 5 and len(images) else None
        f.create_dataset("images", data=images.astype(np.float32, copy=False),
                         chunks=chunk, compression="lzf" if chunk else None)
        for name in ("mjj", "region", "region_wide", "event_number"):
            f.create_dataset(name, data=sample.events[name])
    return path
