"""The Jet images page, headless (streamlit AppTest): empty cache and real tiny samples."""

import re
from pathlib import Path

from page_helpers import run_page as _run_page, text_of

ROOT = Path(__file__).resolve().parent.parent
PAGE = str(ROOT / "pages" / "2_Jet_images.py")


def run_page(**state):
    return _run_page("pages/2_Jet_images.py", **state)


def event_shown(at) -> int:
    m = re.search(r"Event (\d+) of (\d+)", text_of(at))
    assert m, text_of(at)
    return int(m.group(1))


def rerun(element):
    """Run the page again after a widget change (``element.run()`` runs its AppTest)."""
    at = element.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_empty_cache_says_what_to_do(empty_cache):
    at = run_page()
    text = text_of(at)
    assert "No events yet" in text and "Benchmark" in text and "Generate" in text
    assert not at.main.number_input  # no event browser without data


def test_a_corrupt_file_is_an_error_message_not_a_crash(empty_cache):
    from darkvalley_core.generation import preset_configs

    sig_cfg, _ = preset_configs("tiny", "ID-10", 0)
    path = sig_cfg.default_path()
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    at = run_page()
    assert path.name in "\n".join(e.value for e in at.error)
    assert "Benchmark page" in at.error[0].value


def test_page_with_data_browses_events(cache_with_samples):
    at = run_page()
    assert at.title[0].value == "Jet images · ID-10"
    assert event_shown(at) == 0 and not at.info  # both samples are there
    rerun(at.button[1].click())  # next
    assert event_shown(at) == 1 and at.number_input(key="img_event").value == 1
    rerun(at.number_input(key="img_event").set_value(7))
    assert event_shown(at) == 7
    rerun(at.button[0].click())  # previous
    assert event_shown(at) == 6
    rerun(at.radio(key="img_source").set_value("background"))
    assert "(QCD dijets)" in text_of(at)
    # average images and the broadness of the jets, signal vs background
    radii = {m.label: [float(v) for v in m.value.split(" / ")] for m in at.metric}
    sig = radii["⟨r⟩ ID-10, leading / subleading"]
    bkg = radii["⟨r⟩ QCD dijets, leading / subleading"]
    assert sig[0] > bkg[0] and sig[1] > bkg[1]


def test_rotation_with_copies_shows_augmented_copies(cache_with_samples):
    at = run_page()
    assert "augmented copies" not in text_of(at)
    rerun(at.checkbox(key="img_rotate").check())
    rerun(at.number_input(key="img_copies").set_value(2))
    assert "Original and 2 augmented copies of event 0 (rotation within ±180°" in text_of(at)
    rerun(at.slider(key="img_max_angle").set_value(45))
    assert "rotation within ±45°" in text_of(at)
    rerun(at.checkbox(key="img_smear").check())
    rerun(at.radio(key="img_formula").set_value("delphes"))
    assert "pT smearing (delphes) then rotation within ±45°" in text_of(at)


def test_resolution_75_and_event_normalisation(cache_with_samples):
    at = run_page()
    rerun(at.radio(key="img_resolution").set_value(75))
    assert "75×75 pixels, raw pT" in text_of(at)
    rerun(at.radio(key="img_normalise").set_value("event"))
    assert "75×75 pixels, event-normalised" in text_of(at)
    rerun(at.checkbox(key="img_log").uncheck())
    rerun(at.selectbox(key="img_avg_events").set_value(1000))
    assert len(at.metric) == 2
