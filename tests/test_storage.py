import os

import h5py
import numpy as np
import pytest

from darkvalley_core.errors import InvalidFileError, StorageError
from darkvalley_core.storage import config_key, read_events, write_events


def fake_content(n=4, seed=0):
    """A small, self-consistent file content (the real pipeline is tested in test_generation)."""
    rng = np.random.default_rng(seed)
    ncon = rng.integers(5, 20, size=(n, 2)).astype(np.int32)
    m = int(ncon.sum())
    events = {
        "mjj": rng.uniform(4000, 6000, n), "jet_pt": rng.uniform(800, 2500, (n, 2)),
        "jet_eta": rng.uniform(-2, 2, (n, 2)), "jet_phi": rng.uniform(-3, 3, (n, 2)),
        "jet_m": rng.uniform(0, 500, (n, 2)), "n_constituents": ncon,
        "region": rng.integers(0, 3, n).astype(np.int8),
        "region_wide": rng.integers(0, 3, n).astype(np.int8),
        "weight": np.full(n, 0.01), "event_number": np.arange(n),
    }
    const = {"pt": rng.uniform(1, 100, m).astype(np.float32),
             "eta": rng.normal(0, 1, m).astype(np.float32),
             "phi": rng.uniform(-3, 3, m).astype(np.float32),
             "offsets": np.concatenate([[0], np.cumsum(ncon.ravel())])}
    attrs = {"process": "background", "benchmark": "", "config": {"n_events": 100},
             "sigma_pb": 5.0, "sigma_err_pb": 0.1, "n_generated": 100,
             "cutflow": {"generated": 100, "selected": n}}
    return events, const, attrs


def test_round_trip(tmp_path):
    events, const, attrs = fake_content()
    path = write_events(tmp_path / "a.h5", events, const, attrs)
    sample = read_events(path)
    for k, v in events.items():
        np.testing.assert_array_equal(sample.events[k], v)
    for k, v in const.items():
        np.testing.assert_array_equal(sample.constituents[k], v)
    assert sample.config == {"n_events": 100}
    assert sample.cutflow["selected"] == 4
    assert sample.sigma_pb == 5.0 and sample.n_generated == 100
    assert read_events(path, constituents=False).constituents is None
    assert [p.name for p in tmp_path.iterdir()] == ["a.h5"]  # no temporary left behind


def test_interrupted_write_leaves_no_file(tmp_path):
    events, const, attrs = fake_content()
    del const["eta"]  # the writer fails half way through
    with pytest.raises(KeyError):
        write_events(tmp_path / "b.h5", events, const, attrs)
    assert list(tmp_path.iterdir()) == []


def test_unwritable_folder(tmp_path):
    if os.geteuid() == 0:
        target = tmp_path / "file-not-folder"
        target.write_text("x")
        out = target / "c.h5"  # a path *inside a file* cannot be created, even by root
    else:
        tmp_path.chmod(0o500)
        out = tmp_path / "c.h5"
    with pytest.raises(StorageError):
        write_events(out, *fake_content())
    assert not out.exists()


@pytest.mark.parametrize("problem", ["garbage", "truncated", "foreign", "wrong-version",
                                     "bad-offsets", "missing"])
def test_invalid_files_are_named_in_the_error(tmp_path, problem):
    path = tmp_path / f"{problem}.h5"
    if problem == "garbage":
        path.write_bytes(b"this is not hdf5" * 100)
    elif problem == "truncated":
        write_events(path, *fake_content(n=200))
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif problem == "foreign":
        with h5py.File(path, "w") as f:
            f["x"] = np.arange(3)
    elif problem == "wrong-version":
        write_events(path, *fake_content())
        with h5py.File(path, "a") as f:
            f.attrs["schema_version"] = 99
    elif problem == "bad-offsets":
        events, const, attrs = fake_content()
        const["offsets"] = const["offsets"][::-1].copy()
        write_events(path, events, const, attrs)
    with pytest.raises(InvalidFileError) as err:
        read_events(path)
    assert path.name in str(err.value)


def test_config_key_is_stable_and_order_independent():
    assert config_key({"a": 1, "b": [1, 2]}) == config_key({"b": [1, 2], "a": 1})
    assert config_key({"a": 1}) != config_key({"a": 2})
