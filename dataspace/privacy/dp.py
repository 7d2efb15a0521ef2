"""The parts of OpenDP Redlake uses, under the names ``opendp.prelude`` gives them.

Not the prelude itself: it also imports OpenDP's scikit-learn, NumPy, Polars and ibis extras,
which pull in scikit-learn and SciPy (about 2.7 s at every process start on a 2-core host:
each web and worker process, every manage.py command) for nothing Redlake calls.
"""

from __future__ import annotations

from opendp import combinators as c
from opendp import measurements as m
from opendp import transformations as t
from opendp.domains import atom_domain, vector_domain
from opendp.measures import zero_concentrated_divergence
from opendp.metrics import absolute_distance, l2_distance, symmetric_distance
from opendp.mod import binary_search_param, enable_features

# The Gaussian on floats, the b-ary tree and quantiles from counts are OpenDP's "contrib" parts.
enable_features("contrib")

__all__ = [
    "absolute_distance",
    "atom_domain",
    "binary_search_param",
    "c",
    "l2_distance",
    "m",
    "symmetric_distance",
    "t",
    "vector_domain",
    "zero_concentrated_divergence",
]
