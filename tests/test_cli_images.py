"""``python -m darkvalley_core images``: a real subprocess on a real (tiny Pythia) events file."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from darkvalley_core.augment import augmented_images
from darkvalley_core.images import jet_images
from darkvalley_core.storage import read_events

ROOT = Path(__file__).resolve().parent.parent


def run(*args, cache):
    env = {**os.environ, "DARKVALLEY_CACHE": str(cache)}
    return subprocess.run([sys.executable, "-m", "darkvalley_core", "images", *args], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture
def events_file(tiny_samples, tmp_path):
    """A copy of the tiny signal file in its own folder."""
    path = tmp_path / "signal.h5"
    shutil.copy(tiny_samples[0], path)
    return path


def h5_files(folder):
    return sorted(p.name for p in Path(folder).rglob("*.h5"))


def test_images_rotation_copies_json(events_file, tmp_path):
    r = run(str(events_file), "--resolution", "25", "--augment", "rotation", "--copies", "2",
            "--json", cache=tmp_path)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 1  # exactly one JSON object on stdout
    obj = json.loads(lines[0])
    sample = read_events(events_file)
    n = len(sample)
    assert obj["ok"] is True and obj["command"] == "images"
    assert obj["shape"] == [n, 3, 2, 25, 25]
    out = Path(obj["path"])
    assert out.exists() and out.parent == tmp_path / "images"  # cache/images, not the events folder
    with h5py.File(out, "r") as f:
        images = f["images"][...]
        assert f.attrs["format"] == "darkvalley-images"
        assert json.loads(f.attrs["settings"])["copies"] == 2
        np.testing.assert_array_equal(f["mjj"][...], sample.events["mjj"])
    assert images.shape == (n, 3, 2, 25, 25) and images.dtype == np.float32
    c = sample.constituents
    arrays = (c["pt"], c["eta"], c["phi"], c["offsets"])
    np.testing.assert_array_equal(images[:, 0], jet_images(*arrays, 25))  # copy 0: the original
    ids = np.arange(n)
    for k in (1, 2):  # the copies are the reproducible rotations of seed 0
        np.testing.assert_array_equal(images[:, k],
                                      augmented_images(*arrays, ids, k, "rotate", 25, seed=0))
        assert not np.array_equal(images[:, k], images[:, 0])
    assert not np.array_equal(images[:, 1], images[:, 2])
    # rotation keeps the pT: over all jets the in-window sum changes by far less than 1 %
    sums = images.sum(axis=(3, 4), dtype=np.float64)
    assert np.abs(sums[:, 1:] / sums[:, :1] - 1).mean() < 1e-3


@pytest.mark.parametrize("args, message", [
    (["--resolution", "200"], "unsupported image resolution 200"),
    (["--resolution", "0"], "unsupported image resolution 0"),
    (["--augment", "flip"], "unknown augmentation 'flip'"),
])
def test_bad_options_exit_2_and_write_nothing(events_file, tmp_path, args, message):
    before = h5_files(tmp_path)
    r = run(str(events_file), *args, "--copies", "1", "--json", cache=tmp_path)
    assert r.returncode == 2
    obj = json.loads(r.stdout)
    assert obj["ok"] is False and message in obj["error"]
    assert message in r.stderr and "Traceback" not in r.stderr
    assert h5_files(tmp_path) == before


def test_corrupt_input_exits_2_naming_the_file(tmp_path):
    bad = tmp_path / "corrupt-events.h5"
    bad.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    r = run(str(bad), "--json", cache=tmp_path)
    assert r.returncode == 2
    assert "corrupt-events.h5" in json.loads(r.stdout)["error"]
    assert "corrupt-events.h5" in r.stderr and "Traceback" not in r.stderr
    assert h5_files(tmp_path) == ["corrupt-events.h5"]
