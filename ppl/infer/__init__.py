"""Monte Carlo inference on the generative function interface.

Importance sampling and SMC (particles), MCMC kernels and runners,
predictive distributions. Algorithms use models only through the GFI.
"""

# --- SMC / importance sampling (ppl.infer.importance, smc, particle_filter) ---

# --- MCMC (kernels, runners, predictive) ---
