"""``ppl.dist``: numpyro's distributions, re-exported wholesale.

Every ``numpyro.distributions`` name (``Normal``, ``Categorical``,
``constraints``, ``transforms``, ``biject_to``, ...) is available here, and
every such distribution can be sampled in a model with ``d @ "addr"``.
User-defined distributions: see :func:`ppl.distributions.make_distribution`.
"""

from numpyro.distributions import *  # noqa: F403
from numpyro.distributions import __all__ as _numpyro_all
from numpyro.distributions import constraints, transforms  # noqa: F401
from numpyro.distributions.transforms import biject_to  # noqa: F401

from ppl.distributions.custom import make_distribution

__all__ = list(_numpyro_all) + ["make_distribution"]
