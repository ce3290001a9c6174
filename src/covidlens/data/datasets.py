"""Data sets as tables of samples: the public face of :mod:`covidlens.data.sets`.

The registry, the loaders and their traps live in that package (one module per modality); this module
keeps the import path every caller uses.
"""

from covidlens.data.sets import *  # noqa: F401,F403  (the public names, listed in __all__ there)
from covidlens.data.sets import __all__  # noqa: F401
