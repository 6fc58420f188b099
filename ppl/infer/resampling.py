"""Resampling schemes: ancestor indices from log weights.

Each scheme maps normalised weights ``w`` (from ``log_weights``) to ``n``
ancestor indices ``a_1..a_n`` with *unbiased offspring counts*:
``E[#{k : a_k = i}] = n * w_i``. They differ in variance: multinomial draws
the ``n`` ancestors independently; stratified, systematic and residual
resampling correlate them (lower variance, same expectation).

All schemes work by inverting the cumulative weights ``c_i = w_1 + ... + w_i``
at ``n`` sorted points ``u_1 <= ... <= u_n`` in (0, 1): ``a_k = #{i : c_i <=
u_k}``. Sorted points make this O(N + n) without ``searchsorted`` (which is
O(n log N) and about twice the cost of the whole resampling at 100,000
particles): count, for each particle, how many points fall below ``c_i``,

    m_i = #{k : u_k < c_i}              (cumulative offspring count),

then ``a_k = #{i : m_i <= k}``, a histogram of the ``m_i`` and a cumulative
sum. Systematic resampling (``u_k = (k + U) / n``) and stratified resampling
(``u_k = (k + U_k) / n``) have ``m_i`` in closed form; multinomial and
residual use sorted uniforms from exponential spacings (``u_(k) = S_k /
S_{n+1}`` with ``S`` the cumulative sums of ``n + 1`` Exp(1) draws).

Indices come out sorted. Weights of ``-inf`` get no offspring; if every
weight is ``-inf`` the indices are still valid (never NaN; the caller reports
the degeneracy). The schemes themselves expect NaN-free weights (they share
the ``logsumexp`` with :func:`log_mean_weight`, so a filter computes it once);
:func:`resample_indices` treats NaN as ``-inf`` first. Everything is ``jnp`` on
whole arrays, so it runs unchanged on particles sharded across devices.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax.scipy.special import gammaln, logsumexp
from numpyro.distributions import Distribution, constraints

from ppl.errors import ArgumentValueError, EstimatorError

Resampler = Callable[[Any, Any, int], Any]


def sanitize(log_weights: Any) -> Any:
    """NaN log weights count as ``-inf`` (zero weight)."""
    return jnp.where(jnp.isnan(log_weights), -jnp.inf, log_weights)


def normalized_weights(log_weights: Any) -> Any:
    """``w_i = exp(l_i - logsumexp(l))``; NaN counts as ``-inf``; all ``-inf`` gives uniform."""
    lw = sanitize(log_weights)
    lw = jnp.where(jnp.isfinite(jnp.max(lw)), lw, 0.0)
    return jnp.exp(lw - logsumexp(lw))


def _weights(log_weights: Any) -> Any:
    """``exp(l_i - logsumexp(l))`` for NaN-free weights (all zero if all are ``-inf``)."""
    lse = logsumexp(log_weights)
    return jnp.exp(log_weights - jnp.where(jnp.isfinite(lse), lse, 0.0))


def _cumulative(log_weights: Any, n: int) -> Any:
    """``n * c_i`` with the last entry exactly ``n`` (guards float round-off)."""
    c = jnp.cumsum(_weights(log_weights)) * n
    return c.at[-1].set(n)


def _ancestors_from_counts(m: Any, n: int) -> Any:
    """``a_k = #{i : m_i <= k}`` for cumulative offspring counts ``m`` (0..n)."""
    m = jnp.clip(m, 0, n).astype(jnp.int32)
    hist = jnp.zeros(n + 1, jnp.int32).at[m].add(1)
    idx = jnp.cumsum(hist[:n])
    return jnp.minimum(idx, m.shape[0] - 1)


def systematic(key: Any, log_weights: Any, n: int | None = None) -> Any:
    """Systematic resampling: ``u_k = (k + U) / n`` with one ``U ~ Uniform(0, 1)``.

    ``m_i = #{k : k + U < n c_i} = ceil(n c_i - U)`` (clipped to ``[0, n]``).
    """
    n = log_weights.shape[0] if n is None else n
    c = _cumulative(log_weights, n)
    u = jax.random.uniform(key, dtype=c.dtype)
    m = jnp.ceil(c - u)
    return _ancestors_from_counts(m, n)


def stratified(key: Any, log_weights: Any, n: int | None = None) -> Any:
    """Stratified resampling: ``u_k = (k + U_k) / n`` with independent ``U_k``.

    With ``j = floor(n c_i)``, all ``k < j`` fall below ``n c_i`` and ``k = j``
    does when ``U_j < n c_i - j``: ``m_i = j + [U_j < n c_i - j]``.
    """
    n = log_weights.shape[0] if n is None else n
    c = _cumulative(log_weights, n)
    us = jax.random.uniform(key, (n + 1,), dtype=c.dtype)
    j = jnp.floor(c)
    ji = jnp.clip(j.astype(jnp.int32), 0, n)
    m = j + (us[ji] < c - j)
    return _ancestors_from_counts(m, n)


def _sorted_uniforms(key: Any, n: int, dtype: Any) -> Any:
    """``n`` sorted Uniform(0, 1) draws in O(n): normalised exponential spacings."""
    e = jax.random.exponential(key, (n + 1,), dtype=dtype)
    s = jnp.cumsum(e)
    return s[:n] / s[n]


def _count_below(points: Any, c: Any) -> Any:
    """``#{k : points_k < c_i}`` for sorted ``points``."""
    return jnp.searchsorted(points, c, side="left")


def multinomial(key: Any, log_weights: Any, n: int | None = None) -> Any:
    """Multinomial resampling: ``n`` independent draws from the weights."""
    n = log_weights.shape[0] if n is None else n
    c = _cumulative(log_weights, 1)
    u = _sorted_uniforms(key, n, c.dtype)
    m = _count_below(u, c).at[-1].set(n)
    return _ancestors_from_counts(m, n)


def residual(key: Any, log_weights: Any, n: int | None = None) -> Any:
    """Residual resampling: ``floor(n w_i)`` copies each, the rest multinomial.

    The ``R = n - sum_i floor(n w_i)`` remaining ancestors are drawn from the
    residual weights ``r_i ∝ n w_i - floor(n w_i)``; ``R`` sorted uniforms come
    from the first ``R`` spacings normalised by ``S_{R+1}``, so shapes stay
    static while ``R`` is traced.
    """
    n = log_weights.shape[0] if n is None else n
    w = _weights(log_weights)
    nw = w * n
    det = jnp.floor(nw)
    r = nw - det
    big_r = n - jnp.sum(det).astype(jnp.int32)
    rsum = jnp.sum(r)
    rc = jnp.cumsum(r) / jnp.where(rsum > 0, rsum, 1.0)
    rc = rc.at[-1].set(1.0)
    e = jax.random.exponential(key, (n + 1,), dtype=w.dtype)
    s = jnp.cumsum(e)
    k = jnp.arange(n)
    u = jnp.where(k < big_r, s[:n] / s[jnp.clip(big_r, 0, n)], 2.0)
    residual_counts = jnp.searchsorted(u, rc, side="left")
    residual_counts = residual_counts.at[-1].set(big_r)
    m = jnp.cumsum(det).astype(jnp.int32) + residual_counts
    return _ancestors_from_counts(m, n)


RESAMPLERS: dict[str, Resampler] = {
    "multinomial": multinomial,
    "systematic": systematic,
    "stratified": stratified,
    "residual": residual,
}


def get_resampler(method: str | Resampler) -> Resampler:
    """A resampling function by name (or a callable ``(key, log_weights, n) -> indices``)."""
    if callable(method):
        return method
    try:
        return RESAMPLERS[method]
    except (KeyError, TypeError):
        raise ArgumentValueError(
            f"unknown resampling method {method!r}; choose one of {sorted(RESAMPLERS)} "
            "or pass a function (key, log_weights, n) -> ancestor indices"
        ) from None


def resample_indices(key: Any, log_weights: Any, n: int | None = None, method: str | Resampler = "systematic") -> Any:
    """Ancestor indices (shape ``(n,)``) drawn by ``method`` from ``log_weights`` (NaN counts as ``-inf``)."""
    return get_resampler(method)(key, sanitize(jnp.asarray(log_weights)), n)


def log_mean_weight(log_weights: Any) -> Any:
    """``log((1/N) sum_i exp(l_i))``: the factor a resampling step adds to log Z."""
    n = log_weights.shape[0]
    return logsumexp(log_weights) - jnp.log(n)


def ess(log_weights: Any) -> Any:
    """Effective sample size ``(sum w)^2 / sum w^2`` (0 when every weight is ``-inf``)."""
    lw = sanitize(log_weights)
    out = jnp.exp(2.0 * logsumexp(lw) - logsumexp(2.0 * lw))
    return jnp.where(jnp.isfinite(jnp.max(lw)), out, 0.0)


__all__ = [
    "RESAMPLERS",
    "draw_ancestors",
    "ess",
    "get_resampler",
    "log_mean_weight",
    "multinomial",
    "normalized_weights",
    "resample_indices",
    "residual",
    "sanitize",
    "stratified",
    "systematic",
]


# ------------------------------------------- ancestors as a random choice
class _AncestorsDist(Distribution):
    """The law of the ancestor vector a scheme draws, as a distribution (for gradient estimators).

    ``sample`` is exactly the scheme's draw (same key, same indices);
    ``log_prob`` is the log probability of that (sorted) ancestor vector
    under the scheme, a differentiable function of the weights:

    * systematic: points ``k + U`` (scaled by ``n``), so ``P(a)`` is the length of
      ``{U in [0, 1): n c_{a_k - 1} <= k + U < n c_{a_k} for all k}``;
    * stratified: points ``k + U_k``, independent: ``P(a) = prod_k |[k, k + 1)
      cap [n c_{a_k - 1}, n c_{a_k})|``;
    * multinomial: ``n! / prod_i m_i! prod_k w_{a_k}`` (``m_i`` offspring counts);
    * residual: the multinomial law of the residual counts
      ``m_i - floor(n w_i)`` under the residual weights (``floor`` is locally
      constant, so only this part varies with the weights).

    ``active`` (a traced bool) is whether the draw is used; an unused draw
    (adaptive resampling that did not resample) has log probability 0, so an
    estimator scoring it adds nothing.
    """

    support = constraints.nonnegative_integer  # discrete: REINFORCE (or enum) under ppl.vi

    def __init__(self, log_weights: Any, n: int, method: str, active: Any = True):
        self.log_weights = sanitize(jnp.asarray(log_weights))
        self.n = n
        self.method = method
        self.active = jnp.asarray(active)
        super().__init__(batch_shape=(), event_shape=(n,))

    def sample(self, key: Any, sample_shape: tuple = ()) -> Any:
        if sample_shape:
            raise ArgumentValueError(
                f"ancestor draws are one vector of {self.n} indices at a time; got sample_shape={tuple(sample_shape)}"
            )
        return get_resampler(self.method)(key, self.log_weights, self.n)

    def log_prob(self, value: Any) -> Any:
        lw, n = self.log_weights, self.n
        a = jnp.asarray(value, jnp.int32)
        k = jnp.arange(n, dtype=lw.dtype)
        if self.method in ("systematic", "stratified"):
            c = _cumulative(lw, n)
            hi = c[a]
            lo = jnp.where(a > 0, c[jnp.maximum(a - 1, 0)], 0.0)
            if self.method == "systematic":
                length = jnp.minimum(jnp.min(hi - k), 1.0) - jnp.maximum(jnp.max(lo - k), 0.0)
                lp = jnp.log(jnp.maximum(length, 0.0))
            else:
                lengths = jnp.minimum(hi, k + 1.0) - jnp.maximum(lo, k)
                lp = jnp.sum(jnp.log(jnp.maximum(lengths, 0.0)))
        elif self.method == "multinomial":
            counts = jnp.zeros(lw.shape[0], lw.dtype).at[a].add(1.0)
            log_w = lw - logsumexp(lw)
            lp = gammaln(n + 1.0) - jnp.sum(gammaln(counts + 1.0)) + jnp.sum(log_w[a])
        elif self.method == "residual":
            nw = _weights(lw) * n
            det = jax.lax.stop_gradient(jnp.floor(nw))
            r = nw - det
            counts = jnp.zeros(lw.shape[0], lw.dtype).at[a].add(1.0)
            rc = counts - det
            big_r = jnp.sum(rc)
            log_r = jnp.log(jnp.where(r > 0, r, 1.0)) - jnp.log(jnp.maximum(jnp.sum(r), 1e-30))
            lp = gammaln(big_r + 1.0) - jnp.sum(gammaln(rc + 1.0)) + jnp.sum(jnp.where(rc > 0, rc * log_r, 0.0))
        else:
            name = getattr(self.method, "__name__", self.method)
            raise EstimatorError(
                f"the probability of the ancestors drawn by the custom resampling function {name!r} is unknown, "
                "so a gradient estimator (ppl.vi.expectation) cannot account for resampling; use one of "
                f"{sorted(RESAMPLERS)} inside an expectation"
            )
        return jnp.where(self.active, lp, 0.0)


def draw_ancestors(
    key: Any, log_weights: Any, n: int | None = None, method: str | Resampler = "systematic", active: Any = True
) -> Any:
    """:func:`resample_indices` as a random choice (the SMC algorithms' resampling step).

    The same indices as ``resample_indices(key, log_weights, n, method)``,
    drawn through the handler stack (at address ``"ancestors"`` under the
    current path): inside ``ppl.vi.expectation`` the draw is a discrete
    choice like any other, so its REINFORCE score (the log probability of the
    ancestor vector, :class:`_AncestorsDist`) enters the gradient estimate.
    Without it the estimate misses how the weights (hence the parameters)
    change which particles survive, and is biased for ``grad E[log Z_hat]``.
    Outside an expectation this is exactly ``resample_indices``.
    """
    from ppl.core import context
    from ppl.core.primitive import sample_value

    lw = jnp.asarray(log_weights)
    n = lw.shape[0] if n is None else n
    with context.path(("ancestors",)):
        return sample_value(key, _AncestorsDist(lw, n, method, active))
