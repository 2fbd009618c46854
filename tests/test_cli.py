"""The command line as a user runs it: a real subprocess, real files."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run(*args, cache):
    env = {**os.environ, "DARKVALLEY_CACHE": str(cache)}
    return subprocess.run([sys.executable, "-m", "darkvalley_core", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def test_benchmarks_json_is_one_object(tmp_path):
    r = run("benchmarks", "--json", cache=tmp_path)
    assert r.returncode == 0
    obj = json.loads(r.stdout)
    assert obj["ok"] and len(obj["benchmarks"]) == 14 and obj["default"] == "ID-10"


def test_generate_and_info_json(tmp_path):
    out = tmp_path / "bkg.h5"
    r = run("generate", "--background", "--events", "120", "--seed", "3", "--chunk-size", "60",
            "--jobs", "2", "--out", str(out), "--json", cache=tmp_path)
    assert r.returncode == 0, r.stderr
    obj = json.loads(r.stdout)  # exactly one JSON object: the fastjet banner went to stderr
    assert obj["path"] == str(out) and out.exists()
    assert obj["n_generated"] == 120 and obj["sigma_pb"] > 0
    assert set(obj["expected"]["139 fb^-1"]) == {"B_SR", "B_SB", "B_SB_wide"}
    info = json.loads(run("info", str(out), "--json", cache=tmp_path).stdout)
    assert info["n_selected"] == obj["n_selected"]
    human = run("info", str(out), cache=tmp_path)
    assert "cutflow" in human.stdout and "expected at 139 fb^-1" in human.stdout


@pytest.mark.parametrize("args, message", [
    (["generate", "--events", "0"], "positive integer"),
    (["generate", "--benchmark", "ID-11", "--events", "10"], "unknown benchmark"),
    (["generate", "--events", "10", "--jobs", "0"], "workers"),
    (["generate", "--events", "10", "--preset", "huge"], "unknown preset"),
])
def test_bad_input_is_a_clear_error_and_writes_nothing(tmp_path, args, message):
    r = run(*args, "--json", cache=tmp_path)
    assert r.returncode == 2
    assert message in json.loads(r.stdout)["error"]
    assert message in r.stderr
    assert not any(tmp_path.rglob("*.h5"))


def test_unwritable_output(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    r = run("generate", "--events", "10", "--out", str(blocker / "x.h5"), cache=tmp_path)
    assert r.returncode == 2 and "cannot write" in r.stderr
    assert not any(tmp_path.rglob("*.h5"))


def test_info_on_a_corrupt_file(tmp_path):
    bad = tmp_path / "corrupt.h5"
    bad.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    r = run("info", str(bad), "--json", cache=tmp_path)
    assert r.returncode == 2
    assert "corrupt.h5" in json.loads(r.stdout)["error"]
