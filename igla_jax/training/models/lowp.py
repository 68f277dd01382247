"""Low-precision matmuls (bfloat16 operands, float32 accumulation) for ModelConfig.matmul_dtype != "float32".

A custom VJP, so that the two backward matmuls run in the low dtype too: plain autodiff of a bf16 dot
with a float32 result promotes the float32 cotangent and the bf16 operand to float32. Everything
outside the dense layers' matmuls (attention scores, softmax, norms, GELU, the loss, the optimizer,
the parameters) stays float32.

XLA:CPU (jaxlib 0.10) runs a bf16 dot in its matmul library (YNNPACK) only when both operands are
row-major and neither is read transposed (ynn_support.cc, IsDotSupportedByYnn); any other bf16 dot
is upcast to float32 before the library is asked. The backward products read x^T and w^T, and a
transpose in the graph is folded into the dot or left as a transposed layout. So `_t` materialises
each transpose as a row-major copy, and the weight gradient transposes the narrower of x and g
(XLA:CPU's transposes are slow: 768 x 512 in bf16 took longer than the bf16 matmul reading it,
0.30 vs 0.24 ms, on the shared cores). Measured: issue 15.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp


def _t(x_MxN: jax.Array) -> jax.Array:
    """x^T as a row-major copy (see the module docstring): flattened behind a barrier, so that XLA can
    neither fold the transpose into the dot nor give the result a transposed layout."""
    m, n = x_MxN.shape
    return jax.lax.optimization_barrier(x_MxN.T.reshape(m * n)).reshape(n, m)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def matmul_lowp(x_NxK: jax.Array, w_KxM: jax.Array, dtype: str) -> jax.Array:
    """x @ w with `dtype` operands and float32 accumulation, forward and backward."""
    return _matmul_fwd(x_NxK, w_KxM, dtype)[0]


def _matmul_fwd(x_NxK: jax.Array, w_KxM: jax.Array, dtype: str) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
    xl, wl = x_NxK.astype(dtype), w_KxM.astype(dtype)
    return jnp.dot(xl, wl, preferred_element_type=jnp.float32), (xl, wl)


def _matmul_bwd(dtype: str, res: tuple[jax.Array, jax.Array], g_NxM: jax.Array) -> tuple[jax.Array, jax.Array]:
    xl_NxK, wl_KxM = res
    gl_NxM = g_NxM.astype(dtype)
    dx_NxK = jnp.dot(gl_NxM, _t(wl_KxM), preferred_element_type=jnp.float32)
    # transpose the narrower of x and g (XLA:CPU transposes are slow next to the matmul)
    if xl_NxK.shape[1] <= gl_NxM.shape[1]:
        dw_KxM = jnp.dot(_t(xl_NxK), gl_NxM, preferred_element_type=jnp.float32)
    else:
        # the barrier first: XLA would fold this transpose into the dot, a non-canonical bf16 dot that
        # then reaches a fallback without bf16 kernels (UNIMPLEMENTED at run time)
        dw_KxM = _t(jax.lax.optimization_barrier(jnp.dot(_t(gl_NxM), xl_NxK, preferred_element_type=jnp.float32)))
    return dx_NxK, dw_KxM


matmul_lowp.defvjp(_matmul_fwd, _matmul_bwd)
