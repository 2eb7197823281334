"""XLA:CPU kernels for the layers of `gen_jax.nn`: custom VJPs, stride-1 and per-part conv
forms, sub-pixel upsampling and oneDNN convolutions through XLA's FFI.

Each function here computes the same function as a plain flax / lax form in `gen_jax.nn`
(float rounding apart), the way XLA:CPU runs it fastest. Only `gen_jax.nn` imports this
package, and only when a run's `runtime.kernels` resolves to 'cpu'.
"""
