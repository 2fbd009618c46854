"""Every page renders headless (streamlit AppTest), with an empty cache and with data."""

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest
from page_helpers import run_page, text_of

ROOT = Path(__file__).resolve().parent.parent
PAGES = ["app.py", "pages/1_Benchmark.py"]


@pytest.mark.parametrize("page", PAGES)
def test_pages_render_with_an_empty_cache(empty_cache, page):
    at = run_page(page)
    assert "not generated yet" in text_of(at) or "No events yet" in text_of(at) \
        or "No tiny sample" in text_of(at)


def test_benchmark_page_with_data(cache_with_samples):
    at = run_page("pages/1_Benchmark.py")
    text = text_of(at)
    assert "σ =" in text and "Expected at 139 fb^-1" in text
    assert len(at.dataframe) >= 3  # masses + two cutflows
    cutflow = at.dataframe[1].value
    assert cutflow["step"].iloc[0] == "generated"


def test_benchmark_choice_follows_the_user(cache_with_samples):
    at = AppTest.from_file(str(ROOT / "pages/1_Benchmark.py"), default_timeout=60)
    at.session_state["dv_preset"] = "tiny"
    at.run()
    at.sidebar.selectbox[0].set_value("DD-30").run()
    assert not at.exception
    assert at.session_state["dv_benchmark"] == "DD-30"
    assert at.title[0].value == "Benchmark DD-30"
    # DD-30 has no data in the cache: the page says what to do next
    assert "No events yet" in text_of(at) or "not generated yet" in text_of(at)


def test_home_page_shows_the_cached_samples(cache_with_samples):
    at = run_page("app.py")
    assert "Both samples are ready" in text_of(at)
