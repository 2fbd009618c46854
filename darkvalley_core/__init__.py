"""darkvalley_core: the physics library behind the darkvalley app.

Dark-valley (Hidden Valley) dijet benchmarks, Pythia 8 generation, a parametric detector
simulation modelled on the Delphes CMS card, anti-kT jets, jet images, CWoLa / transfer-learning
training and discovery significance, after arXiv:2312.06152 and arXiv:2412.00198.

Heavy dependencies (torch, pythia8mc, fastjet) are imported only inside the modules that need
them, so ``import darkvalley_core`` stays fast.
"""

__version__ = "0.2.0"
