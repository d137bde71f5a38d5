import jax

# Determinism and exact comparisons in these tests are in float64.
jax.config.update("jax_enable_x64", True)
