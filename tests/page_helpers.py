"""Helpers shared by the page tests (streamlit AppTest)."""

from pathlib import Path

from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parent.parent


def run_page(page, preset="tiny", **state):
    """Run one page script headless with the sidebar preset and extra session state set;
    fail on any exception the page raised."""
    at = AppTest.from_file(str(ROOT / page), default_timeout=60)
    at.session_state["dv_preset"] = preset
    for key, value in state.items():
        at.session_state[key] = value
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def text_of(at) -> str:
    """All the text a user reads on the page: markdown, captions and alerts."""
    parts = [m.value for m in at.markdown] + [i.value for i in at.info] + \
            [s.value for s in at.success] + [e.value for e in at.error] + \
            [c.value for c in at.caption] + [w.value for w in at.warning]
    return "\n".join(str(p) for p in parts)
