"""Pages 3-5 (Train, Sensitivity, Jobs) headless (streamlit AppTest), without and with real
tiny jobs; a fresh session (a new AppTest) sees the jobs an earlier one launched."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from page_helpers import run_page, text_of

from darkvalley_core import jobs

ROOT = Path(__file__).resolve().parent.parent
PAGES = ["pages/3_Train.py", "pages/4_Sensitivity.py", "pages/5_Jobs.py"]
TINY = ["--preset", "tiny", "--runs", "1", "--max-epochs", "2", "--eps-b", "0.1", "0.01",
        "--device", "cpu", "--quiet"]
LONG_TRAIN = ["train", "--preset", "tiny", "--runs", "5", "--max-epochs", "5000",
              "--patience", "5000", "--device", "cpu", "--quiet"]


def link_samples(cache: Path, tiny_samples) -> Path:
    cache.mkdir(parents=True, exist_ok=True)
    (cache / "events").symlink_to(Path(tiny_samples[0]).parent, target_is_directory=True)
    return cache


@pytest.fixture(scope="module")
def finished_jobs(tiny_samples, tmp_path_factory):
    """A cache with one finished training and one finished two-point sweep (real tiny jobs)."""
    cache = link_samples(tmp_path_factory.mktemp("pages-jobs") / "cache", tiny_samples)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DARKVALLEY_CACHE", str(cache))
        train = jobs.submit(["train", "--injection", "3", *TINY], label="one training", cores=1)
        sweep = jobs.submit(["scan", "--injections", "2", "5", *TINY], label="a sweep",
                            cores=1)
        for job in (train, sweep):
            jobs.wait(job.id, timeout=180)
            assert job.state == "done", job.log_tail()
    return cache


@pytest.fixture
def with_jobs(finished_jobs, monkeypatch):
    monkeypatch.setenv("DARKVALLEY_CACHE", str(finished_jobs))
    return finished_jobs


@pytest.fixture
def fresh_cache(tiny_samples, tmp_path, monkeypatch):
    cache = link_samples(tmp_path / "cache", tiny_samples)
    monkeypatch.setenv("DARKVALLEY_CACHE", str(cache))
    yield cache
    for job in jobs.list_jobs():
        if job.state in jobs.ACTIVE_STATES:
            jobs.cancel(job.id)


def metric(at, label):
    return next(m.value for m in at.metric if m.label == label)


@pytest.mark.parametrize("page, expected", [
    ("pages/3_Train.py", "No training yet"),
    ("pages/4_Sensitivity.py", "No finished training yet"),
    ("pages/5_Jobs.py", "No jobs yet"),
])
def test_pages_render_without_jobs(empty_cache, page, expected):
    at = run_page(page)
    assert expected in text_of(at)


def test_train_page_shows_the_plan_and_its_estimate(empty_cache):
    at = run_page("pages/3_Train.py")
    assert metric(at, "Trainings") == "2 × 1"  # tiny defaults: injections 2 and 5, one run
    assert metric(at, "Generation first") != "none"  # an empty cache: samples come first
    assert "scan" in at.code[0].value and "--injections 2 5" in at.code[0].value
    at.text_input(key="train-inj-tiny").set_value("3").run()
    assert metric(at, "Trainings") == "1 × 1"
    assert at.code[0].value.startswith("python -m darkvalley_core train")
    at.text_input(key="train-inj-tiny").set_value("two").run()
    assert not at.exception and "must be numbers" in text_of(at)
    at.text_input(key="train-inj-tiny").set_value("3").run()
    at.multiselect(key="train-methods").set_value([]).run()
    assert "choose at least a method" in text_of(at)


def test_sensitivity_page_with_results(with_jobs):
    at = run_page("pages/4_Sensitivity.py")
    text = text_of(at)
    assert "2 job(s) selected" in text and "trained network(s)" in text
    readoffs = at.dataframe[0].value
    assert list(readoffs.columns[:2]) == ["curve", "points"]
    assert "ID-10 · CWoLa · no augmentation" in readoffs["curve"].iloc[0]
    assert readoffs["points"].max() == 3  # injections 2 and 5 (sweep) and 3 (training)
    # the other significance and the per-job curves render too
    at.sidebar.radio(key="sens-z").set_value("z_asimov").run()
    assert not at.exception
    at.sidebar.checkbox(key="sens-byjob").check().run()
    assert not at.exception
    assert len(at.dataframe[0].value) == 2  # one curve per job
    data = at.dataframe[-1].value  # the Data tab: every run of the selection
    assert set(data["job"]) == {j.id for j in jobs.list_jobs()}


def test_jobs_page_with_finished_jobs(with_jobs):
    at = run_page("pages/5_Jobs.py")
    assert metric(at, "done") == "2" and metric(at, "running") == "0"
    table = at.dataframe[0].value
    assert set(table["label"]) == {"one training", "a sweep"}
    assert set(table["state"]) == {"done"} and set(table["progress"]) == {100}
    assert metric(at, "State") == "done"  # the inspected job
    assert any("python -m darkvalley_core" in c.value for c in at.code)


def test_train_page_lists_finished_jobs(with_jobs):
    at = run_page("pages/3_Train.py")
    assert "No training yet" not in text_of(at)
    assert "Sensitivity" in text_of(at)


def test_launch_from_the_train_page_and_see_it_in_a_new_session(fresh_cache):
    at = run_page("pages/3_Train.py")
    at.text_input(key="train-inj-tiny").set_value("3").run()
    at.button(key="train-launch").click().run()
    assert not at.exception
    launched = jobs.list_jobs()
    assert len(launched) == 1 and launched[0].kind == "train"
    job = jobs.wait(launched[0].id, timeout=180)
    assert job.state == "done", job.log_tail()
    # a new browser session: nothing in its session state, the folders are the truth
    jp = run_page("pages/5_Jobs.py")
    assert metric(jp, "done") == "1" and jp.dataframe[0].value["job"].iloc[0] == job.id
    sp = run_page("pages/4_Sensitivity.py", **{"sens-epsb": 0.1})
    assert "1 job(s) selected" in text_of(sp)


def test_jobs_page_cancels_a_running_job(fresh_cache):
    job = jobs.submit(LONG_TRAIN, label="long")
    deadline = time.time() + 60
    while job.state != "running" and time.time() < deadline:
        time.sleep(0.05)
    at = run_page("pages/5_Jobs.py")
    assert metric(at, "running") == "1"
    assert "long · running" in [e.label for e in at.expander]
    at.button(key=f"cancel-live-{job.id}").click().run()
    assert not at.exception
    assert job.state == "cancelled" and jobs.session_processes(job.raw_status["pid"]) == []
    # the Sensitivity page says nothing has finished; the Train page shows the cancelled job
    assert "No finished training yet" in text_of(run_page("pages/4_Sensitivity.py"))


def test_jobs_page_shows_a_lost_job_and_offers_to_run_it_again(empty_cache):
    from darkvalley_core.storage import write_json_atomic

    folder = jobs.jobs_dir() / "20260101-000000-train-abcdef"
    write_json_atomic(folder / "config.json", {
        "kind": "train", "argv": ["train", "--preset", "tiny"], "key": "abcdef",
        "label": "crashed", "created": time.time() - 60,
        "resources": {"gpu": False, "cores": 1}})
    (folder / "metrics.csv").write_text("stage,run,epoch,train_loss,val_loss\n"
                                        "cwola,0,0,0.7,0.69\ncwola,0,1,0.6,0.6")  # torn line
    write_json_atomic(folder / "status.json", {
        "state": "running", "pid": 2**22 + 12345, "progress": 0.4, "started": time.time() - 50,
        "heartbeat": time.time() - 30})
    at = run_page("pages/5_Jobs.py")
    assert metric(at, "lost") == "1"
    assert "stopped without finishing" in text_of(at)
    assert any(b.label == "Run again" for b in at.button)
    assert jobs.get_job(folder.name).raw_status["state"] == "lost"  # recorded on first sight
    assert len(jobs.get_job(folder.name).metrics()) == 1  # the torn line is skipped
