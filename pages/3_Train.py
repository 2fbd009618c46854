"""Train page: choose methods, benchmarks, resolution, augmentation and +n copies, injected
signals, repetitions, working points and device; see an estimate of the run time; launch the
training (one configuration) or the sweep (several) as a background job and watch it."""

import os

import streamlit as st

from app_ui import (format_duration, job_controls, job_progress, measured_train_rate, page_setup,
                    poll_interval)
from darkvalley_core import jobs
from darkvalley_core.benchmarks import BENCHMARKS
from darkvalley_core.errors import DarkValleyError
from darkvalley_core.presets import get_preset
from darkvalley_core.storage import cache_root
from darkvalley_core.scan import (METHOD_LABELS, ScanConfig, estimate, scan_command,
                                  train_command)
from darkvalley_core.training import AUGMENTATIONS, METHODS, StudyConfig

benchmark, preset_name, seed = page_setup("train")
preset = get_preset(preset_name)
tiny = preset_name == "tiny"

st.title("Train")
st.markdown(
    "Train the shared-jet CNN on the two leading jets' images and measure the discovery "
    "significance after its cut. **CWoLa** learns signal region vs sidebands on data with an "
    "injected signal; **transfer learning** first pre-trains the feature extractor on the other "
    "13 benchmarks' signal vs QCD; **supervised** (pure signal vs pure QCD) is the upper bound. "
    "Several values of a setting make a sweep, run as one job."
)

k = f"-{preset_name}"  # defaults follow the preset (a tiny sample holds little signal)
left, right = st.columns(2)
with left:
    methods = st.multiselect("Method", list(METHODS), default=["cwola"],
                             format_func=lambda m: METHOD_LABELS[m], key="train-methods")
    names = list(BENCHMARKS)
    benchmarks = st.multiselect("Benchmarks", names, default=[benchmark],
                                key=f"train-benchmarks-{benchmark}",
                                help="defaults to the sidebar's benchmark")
    resolution = st.selectbox("Image resolution", [25, 50, 75], key="train-resolution",
                              format_func=lambda r: f"{r} × {r} pixels")
    augments = st.multiselect("Augmentation", list(AUGMENTATIONS), default=["none"],
                              key="train-augments",
                              help="rotation of the jet images, pT smearing, or both; applied "
                                   "to the training events only")
    copies = st.multiselect("+n copies per training event", [1, 2, 3, 5, 10, 20],
                            default=[5], key="train-copies",
                            disabled=augments in ([], ["none"]))
with right:
    inj_text = st.text_input("Injected S/√B in the signal region",
                             value="2, 5" if tiny else "0, 1, 2, 3, 5, 7", key=f"train-inj{k}",
                             help="comma-separated; each value is one training per method")
    runs = st.number_input("Repetitions (fresh data each)", 1, 50, 1 if tiny else 3,
                           key=f"train-runs{k}")
    eps_b = st.multiselect("Working points ε_B", [0.1, 0.01, 0.001],
                           default=[0.1, 0.01, 0.001], key="train-epsb",
                           format_func=lambda e: f"{100 * e:g} %")
    device = st.selectbox("Device", ["auto", "cpu", "cuda", "mps"], key="train-device",
                          help="auto: a CUDA or Apple GPU when there is one, else the CPU")

with st.expander("Training and parallel settings"):
    c1, c2, c3, c4 = st.columns(4)
    max_epochs = c1.number_input("Max epochs", 1, 1000, 5 if tiny else 100, key=f"train-ep{k}")
    patience = c2.number_input("Early-stopping patience", 1, 100, 10, key="train-patience")
    batch_size = c3.number_input("Batch size", 16, 8192, 512, step=16, key="train-batch")
    dropout = c4.number_input("Dropout", 0.0, 0.9, 0.0, step=0.05, key="train-dropout")
    c1, c2, c3, c4 = st.columns(4)
    precision = c1.selectbox("Precision", ["auto", "fp32", "bf16"], key="train-precision")
    sidebands = c2.selectbox("Sidebands", ["narrow", "wide"], key="train-sidebands")
    normalise = c3.selectbox("Pixel normalisation", ["raw", "event"], key="train-normalise")
    lr = c4.number_input("Learning rate", 1e-6, 1e-1, 1e-4, format="%.1e", key="train-lr")
    c1, c2, c3 = st.columns(3)
    n_cores = max(1, os.cpu_count() or 1)
    workers = c1.number_input("Sweep workers (children at once)", 1, 64, 1, key="train-workers")
    backend = c2.selectbox("Sweep backend", ["loky", "dask", "ray"], key="train-backend",
                           help="loky: processes here; dask: a distributed scheduler (a "
                                "dask-jobqueue HTCondor/SLURM cluster); ray: a Ray cluster")
    scheduler = c3.text_input("Scheduler address", "", key="train-scheduler",
                              placeholder="tcp://host:8786 (empty: a LocalCluster here)",
                              disabled=backend == "loky")

# ---- validate and build the configurations
errors = []
try:
    injections = sorted({float(x) for x in inj_text.replace(";", ",").split(",") if x.strip()})
except ValueError:
    injections = []
    errors.append(f"the injected S/√B must be numbers separated by commas, got {inj_text!r}")
for name, value in (("a method", methods), ("a benchmark", benchmarks),
                    ("an augmentation", augments), ("a working point", eps_b)):
    if not value:
        errors.append(f"choose at least {name}")
if not injections and not errors:
    errors.append("give at least one injected S/√B")
if any(a != "none" for a in augments) and not copies:
    errors.append("choose the number of augmented copies")

configs, argv = [], []
if not errors:
    try:
        base = StudyConfig(
            method=methods[0], benchmark=benchmarks[0], injection=injections[0],
            resolution=int(resolution), augment=augments[0], copies=int((copies or [5])[0]),
            runs=int(runs), seed=int(seed), eps_b=tuple(sorted(eps_b, reverse=True)),
            preset=preset_name, sample_seed=int(seed), device=device, precision=precision,
            sidebands=sidebands, normalise=normalise, dropout=float(dropout),
            max_epochs=int(max_epochs), patience=int(patience), batch_size=int(batch_size),
            lr=float(lr))
        sweep = ScanConfig(base=base, benchmarks=tuple(benchmarks), methods=tuple(methods),
                           augments=tuple(augments), copies=tuple(copies or [5]),
                           injections=tuple(injections))
        configs = sweep.children()
        if len(configs) == 1:
            argv = train_command(configs[0])
        else:
            argv = scan_command(sweep, backend, int(workers), scheduler.strip() or None)
    except DarkValleyError as exc:
        errors.append(str(exc))

for e in errors:
    st.error(e)

if configs:
    gpu = device in ("cuda", "mps") or (device == "auto" and jobs.gpu_present())
    kind = "cuda" if gpu else "cpu"
    est = estimate(configs, workers=int(workers), cores=n_cores, device=kind,
                   rate=measured_train_rate(kind, str(cache_root())), measure=False)
    c1, c2, c3, c4 = st.columns(4)
    c1.metric("Trainings", f"{len(configs)} × {int(runs)}",
              help="configurations × repetitions")
    c2.metric("Estimated time", format_duration(est["seconds"]),
              help=f"training at {est['rate']:,.0f} events/s at 25×25 "
                   f"({est['rate_source']}); about {est['epochs']} epochs in all; "
                   "early stopping often ends sooner")
    c3.metric("Events per epoch", f"{est['events_per_epoch']:,}",
              help="largest configuration, augmented copies included")
    c4.metric("Generation first", format_duration(est["generation_s"])
              if est["generation_s"] > 0 else "none",
              help="samples that are not in the cache yet are generated first")
    if not est["exact_counts"]:
        st.caption("The samples are not generated yet: the event counts are rough until they "
                   "are.")
    st.code("python -m darkvalley_core " + " ".join(argv), language="bash")
    label = (f"{METHOD_LABELS[configs[0].method]} {configs[0].benchmark} "
             f"S/√B={configs[0].injection:g}" if len(configs) == 1 else
             f"sweep: {len(configs)} trainings ({', '.join(benchmarks[:3])}"
             f"{'…' if len(benchmarks) > 3 else ''})")
    if st.button("Launch", type="primary", key="train-launch"):
        try:
            job = jobs.submit(argv, label=label)
            st.session_state["train-last-job"] = job.id
            st.toast(f"{job.id}: {job.state}")
        except DarkValleyError as exc:
            st.error(str(exc))

# ---- this page's jobs (all training and sweep jobs; the folders are the truth)
st.subheader("Training jobs")
mine = [j for j in jobs.list_jobs() if j.kind in ("train", "scan")]
active = [j for j in mine if j.state in jobs.ACTIVE_STATES]


@st.fragment(run_every=poll_interval(bool(active)))
def training_jobs():
    current = [j for j in mine if j.state in jobs.ACTIVE_STATES]
    recent = [j for j in mine if j not in current][:5]
    if not current and not recent:
        st.info("No training yet: set the options above and press **Launch**. The job keeps "
                "running when you close the tab; follow it here or on **Jobs**.")
    for job in current + recent:
        job_progress(job)
        if job.state in jobs.ACTIVE_STATES:
            job_controls(job, key="train-")
    if active and not any(j.state in jobs.ACTIVE_STATES for j in active):
        st.rerun()  # one just finished: redraw the page (estimate, list)
    if current or recent:
        st.caption("Finished results appear on **Sensitivity**; logs and loss curves on "
                   "**Jobs**.")


training_jobs()
