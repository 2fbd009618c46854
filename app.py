"""darkvalley home page: what the app does, the chosen benchmark, what is in the cache."""

import streamlit as st

from app_ui import page_setup, sample_paths
from darkvalley_core.benchmarks import get_benchmark
from darkvalley_core.presets import get_preset

benchmark, preset, seed = page_setup("home")
bench = get_benchmark(benchmark)

st.title("darkvalley")
st.markdown(
    "Would a **weakly supervised search** find a dark sector? darkvalley redoes, point and click, "
    "the dark-jet study of Beauchesne, Chen & Chiang "
    "([arXiv:2312.06152](https://arxiv.org/abs/2312.06152)) and Chen, Chiang & Hsieh "
    "([arXiv:2412.00198](https://arxiv.org/abs/2412.00198)): a 5.5 TeV Z′ decays to dark quarks "
    "that shower in a confining dark sector; the dark mesons decay back to quarks and make "
    "*dark jets*. A CNN looks at the two leading jets as images and learns, from data alone "
    "(CWoLa: signal region vs sidebands), to tell them from QCD."
)

c1, c2, c3, c4 = st.columns(4)
c1.metric("Benchmark", bench.name)
c2.metric("Λ_D", f"{bench.lambda_d:g} GeV")
c3.metric("m_πD / m_ρD", f"{bench.m_pi:g} / {bench.m_rho:.2f} GeV")
c4.metric("Preset", preset)

st.subheader("How to use it")
st.markdown(
    "1. **Benchmark**: choose a model in the sidebar, generate events (Pythia 8 → CMS-like "
    "detector → anti-kT R = 0.8 jets) and look at m_jj with its signal region and sidebands.\n"
    "2. **Jet images**: the two leading jets as images, with rotation and pT smearing.\n"
    "3. **Train / Sensitivity / Jobs**: CWoLa or transfer learning, and the discovery "
    "significance versus injected signal (coming pages are listed in the README)."
)

st.subheader("Data in the cache")
sig_cfg, bkg_cfg, sig_path, bkg_path = sample_paths(benchmark, preset, seed)
p = get_preset(preset)
rows = [
    {"sample": f"signal {bench.name}", "events generated": sig_cfg.n_events,
     "file": sig_path.name if sig_path else "not generated yet"},
    {"sample": "QCD dijets", "events generated": bkg_cfg.n_events,
     "file": bkg_path.name if bkg_path else "not generated yet"},
]
st.dataframe(rows, hide_index=True, width="stretch")
if not (sig_path and bkg_path):
    st.info(f"No {preset} sample for {bench.name} yet: open **Benchmark** in the sidebar and press "
            f"*Generate* ({p.description}).")
else:
    st.success("Both samples are ready: open **Benchmark** to look at them.")
