"""Joint normal guides over the flat unconstrained vector: full rank and low rank.

Both are a multivariate normal over ``u`` (all latents' unconstrained values,
flattened and concatenated in program order, see
:class:`~ppl.vi.guides.layout.LatentLayout`), pushed through each latent's
``T = biject_to(support)``. A guide's choices must be the model's own
addresses, so the joint normal is sampled *site by site* with the chain rule,
``q(u) = prod_a q(u_a | u_<a)``; every conditional is again normal, which
keeps each site an ordinary reparameterisable choice and the guide's score
exactly ``log q(x)``.

**Full rank** (``AutoMultivariateNormal``): ``u = loc + L e``, ``e ~ N(0, I)``,
``L`` lower triangular. With ``z = L^{-1}(u - loc)`` the standardised noise,
block ``a`` is

    u_a | u_<a ~ N(loc_a + L[a, <a] z_<a,  L[a, a] L[a, a]^T),

and ``z_a = L[a, a]^{-1}(u_a - mean_a)``, one triangular solve per site.
Parameters ``{"loc": (D,), "tril": (D, D), "log_diag": (D,)}`` with
``L = tril(tril, -1) + diag(exp(log_diag))`` (only the strictly lower part of
``tril`` is used).

**Low rank** (``AutoLowRankMultivariateNormal``): ``Sigma = W W^T + diag(d)``.
Writing ``K = W_<a^T D_<a^{-1} W_<a`` and ``M = (I + K)^{-1}`` (Woodbury),

    u_a | u_<a ~ N(loc_a + W_a M W_<a^T D_<a^{-1} (u_<a - loc_<a),  W_a M W_a^T + D_a),

a low-rank-plus-diagonal normal again, so each site costs ``O(n_a r^2 + r^3)``
and the whole guide ``O(D r^2)``. Parameters ``{"loc": (D,), "cov_factor":
(D, r), "log_diag": (D,)}`` with ``d = exp(2 log_diag)`` (``log_diag`` is the
log standard deviation of the diagonal part).
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import jax.scipy.linalg as jsl
import numpy as np
from numpyro.distributions import LowRankMultivariateNormal, MultivariateNormal, TransformedDistribution

from ppl.core.gen import sample
from ppl.core.generative_function import GenerativeFunction
from ppl.errors import GuideError
from ppl.vi.guides.base import AutoGuide
from ppl.vi.guides.layout import LatentSite


def _site_sample(site: LatentSite, base: Any) -> Any:
    """Sample ``site`` from ``base`` (a distribution over its flat u); return the flat u."""
    ts = site.transforms(flat=True)
    x = sample(site.address, TransformedDistribution(base, ts) if ts else base)
    return jnp.reshape(site.to_unconstrained(x), (site.size,))


class AutoMultivariateNormal(AutoGuide):
    """Full-rank normal guide in unconstrained space (see the module docstring)."""

    def _initial_params(self, flat_loc: Any) -> Any:
        d = self.layout.size
        return {
            "loc": flat_loc,
            "tril": jnp.zeros((d, d)),
            "log_diag": jnp.full((d,), jnp.log(self.init_scale)),
        }

    def scale_tril(self, params: Any) -> Any:
        """The Cholesky factor ``L`` of the unconstrained covariance."""
        d = self.layout.size
        tril = self._check_shape(params, "['tril']", self._entry(params, "tril"), (d, d))
        log_diag = self._check_shape(params, "['log_diag']", self._entry(params, "log_diag"), (d,))
        return jnp.tril(tril, -1) + jnp.diag(jnp.exp(log_diag))

    def covariance(self, params: Any) -> Any:
        """``L L^T``: the covariance of the unconstrained vector."""
        L = self.scale_tril(params)
        return L @ L.T

    def unconstrained_loc(self, params: Any) -> Any:
        return self._check_shape(params, "['loc']", self._entry(params, "loc"), (self.layout.size,))

    def _body(self, params: Any) -> Any:
        loc = self.unconstrained_loc(params)
        L = self.scale_tril(params)
        z = jnp.zeros((self.layout.size,), loc.dtype)
        last = len(self.layout.sites) - 1
        for i, s in enumerate(self.layout.sites):
            a, b = s.offset, s.offset + s.size
            mean = loc[a:b] + L[a:b, :a] @ z[:a]
            u = _site_sample(s, MultivariateNormal(mean, scale_tril=L[a:b, a:b]))
            if i < last:
                z = z.at[a:b].set(jsl.solve_triangular(L[a:b, a:b], u - mean, lower=True))
        return None

    @staticmethod
    def params_from_gaussian(loc: Any, covariance: Any) -> dict:
        """Parameters giving the unconstrained normal ``N(loc, covariance)`` exactly."""
        cov = np.asarray(covariance, dtype=np.float64)
        cov = 0.5 * (cov + cov.T)
        try:
            L = np.linalg.cholesky(cov)
        except np.linalg.LinAlgError:
            raise GuideError("the covariance is not positive definite") from None
        return {
            "loc": jnp.asarray(loc, jnp.float32),
            "tril": jnp.asarray(np.tril(L, -1), jnp.float32),
            "log_diag": jnp.asarray(np.log(np.diag(L)), jnp.float32),
        }


class AutoLowRankMultivariateNormal(AutoGuide):
    """Low-rank-plus-diagonal normal guide in unconstrained space (see the module docstring).

    ``rank`` defaults to ``round(sqrt(D))`` (at least 1), ``D`` the number of
    unconstrained dimensions.
    """

    def __init__(
        self,
        model: GenerativeFunction,
        args: tuple = (),
        observations: Any = None,
        *,
        rank: int | None = None,
        **kwargs: Any,
    ):
        self._rank = rank
        super().__init__(model, args, observations, **kwargs)
        if rank is not None and (not isinstance(rank, int) or rank < 1):
            raise GuideError(f"AutoLowRankMultivariateNormal: rank must be a positive int, got {rank!r}")

    @property
    def rank(self) -> int:
        return self._rank if self._rank is not None else max(1, round(float(np.sqrt(self.layout.size))))

    def _initial_params(self, flat_loc: Any) -> Any:
        d = self.layout.size
        return {
            "loc": flat_loc,
            "cov_factor": jnp.zeros((d, self.rank)),
            "log_diag": jnp.full((d,), jnp.log(self.init_scale)),
        }

    def unconstrained_loc(self, params: Any) -> Any:
        return self._check_shape(params, "['loc']", self._entry(params, "loc"), (self.layout.size,))

    def _factors(self, params: Any) -> tuple[Any, Any]:
        d = self.layout.size
        W = self._check_shape(params, "['cov_factor']", self._entry(params, "cov_factor"), (d, self.rank))
        log_diag = self._check_shape(params, "['log_diag']", self._entry(params, "log_diag"), (d,))
        return W, jnp.exp(2.0 * log_diag)

    def covariance(self, params: Any) -> Any:
        """``W W^T + diag(d)``: the covariance of the unconstrained vector."""
        W, diag = self._factors(params)
        return W @ W.T + jnp.diag(diag)

    def _body(self, params: Any) -> Any:
        loc = self.unconstrained_loc(params)
        W, diag = self._factors(params)
        r = self.rank
        K = jnp.zeros((r, r), loc.dtype)
        v = jnp.zeros((r,), loc.dtype)
        eye = jnp.eye(r, dtype=loc.dtype)
        last = len(self.layout.sites) - 1
        for i, s in enumerate(self.layout.sites):
            a, b = s.offset, s.offset + s.size
            Wa, Da = W[a:b], diag[a:b]
            if a == 0:
                mean, factor = loc[a:b], Wa
            else:
                chol = jnp.linalg.cholesky(eye + K)
                M = jsl.cho_solve((chol, True), eye)
                mean = loc[a:b] + Wa @ (M @ v)
                factor = Wa @ jnp.linalg.cholesky(M)
            u = _site_sample(s, LowRankMultivariateNormal(mean, factor, Da))
            if i < last:
                K = K + Wa.T @ (Wa / Da[:, None])
                v = v + Wa.T @ ((u - loc[a:b]) / Da)
        return None


def auto_multivariate_normal(
    model: GenerativeFunction, args: tuple = (), observations: Any = None, **kwargs: Any
) -> tuple[AutoMultivariateNormal, tuple]:
    """``(guide, guide_args)``: a full-rank normal guide for ``model`` and its initial arguments."""
    guide = AutoMultivariateNormal(model, args, observations, **kwargs)
    return guide, guide.init_args


def auto_low_rank_multivariate_normal(
    model: GenerativeFunction, args: tuple = (), observations: Any = None, **kwargs: Any
) -> tuple[AutoLowRankMultivariateNormal, tuple]:
    """``(guide, guide_args)``: a low-rank normal guide for ``model`` and its initial arguments."""
    guide = AutoLowRankMultivariateNormal(model, args, observations, **kwargs)
    return guide, guide.init_args


__all__ = [
    "AutoLowRankMultivariateNormal",
    "AutoMultivariateNormal",
    "auto_low_rank_multivariate_normal",
    "auto_multivariate_normal",
]
