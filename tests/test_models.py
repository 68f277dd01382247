import dataclasses
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from conftest import tiny_model, tiny_train
from igla_jax.training.models import (ConfigError, ModelConfig, init_params, intermediates, logits_fn, loss_fn,
                                      non_embedding_params, ema_update, mup, traced_hparams, update_aux)
from igla_jax.training.models.jepa import JepaLM
from igla_jax.training.models.layers import dropout
from igla_jax.training.step import init_state
from igla_jax.training.train import train_state_to


def _x(cfg, seed=0, batch=2):
    return jax.random.randint(jax.random.PRNGKey(seed), (batch, cfg.context), 0, 256)


def test_shapes_and_finiteness(family):
    cfg = tiny_model(family)
    params, aux = init_params(cfg, jax.random.PRNGKey(0))
    x = _x(cfg)
    logits = logits_fn(cfg, params, x)
    chex.assert_shape(logits, (2, cfg.context, 256))
    chex.assert_tree_all_finite(logits)
    loss, metrics = loss_fn(cfg, params, aux, x, x)
    chex.assert_tree_all_finite((loss, metrics))
    # zero-initialised readout: the untrained model is exactly uniform
    assert float(metrics["ce_bits"]) == pytest.approx(8.0, abs=1e-6)


def _trained(cfg, steps=6):
    st = init_state(cfg, tiny_train(lr=3e-2))
    st, status, _ = train_state_to(st, tiny_train(lr=3e-2), steps)
    assert status == "ok"
    return st


def test_causality_gradient_of_early_loss_wrt_later_inputs_is_zero(family):
    """d loss_t / d input_{t'} = 0 for t' > t; inputs enter through their position embedding rows."""
    cfg = tiny_model(family)
    st = _trained(cfg)   # trained a few steps so readout and query are no longer zero
    x = _x(cfg, 1)
    pos_path = ("encoder", "embed", "pos_emb") if family != "hybrid" else ("embed", "pos_emb")
    t = cfg.context // 2

    def loss_at_t(pos):
        p = jax.tree_util.tree_map(lambda a: a, st.params)
        d = p
        for k in pos_path[:-1]:
            d = d[k]
        d[pos_path[-1]] = pos
        logits = logits_fn(cfg, p, x)
        return jax.nn.logsumexp(logits[:, t]).sum() - logits[:, t, 0].sum()

    pos = st.params
    for k in pos_path:
        pos = pos[k]
    g = jax.grad(loss_at_t)(pos)
    row_norm = np.abs(np.asarray(g)).sum(axis=1)
    assert np.all(row_norm[t + 1:] == 0.0), f"{family}: future positions leak into position {t}"
    assert np.all(row_norm[: t + 1] > 0.0), f"{family}: past positions should influence position {t}"


def test_jepa_latent_loss_backpropagates_into_context_encoder():
    cfg = tiny_model("jepa", jepa_lambda=1.0)
    st = _trained(cfg)
    x = _x(cfg, 2)

    def latent_only(params):
        _, m = loss_fn(cfg, params, st.aux, x, x)
        return m["latent"]

    g = jax.grad(latent_only)(st.params)
    enc = jax.tree_util.tree_leaves(g["encoder"])
    assert sum(float(jnp.abs(l).sum()) for l in enc) > 0.0
    # and the LM head gets none of it: BPB comes only from the LM head's cross-entropy
    assert float(jnp.abs(jax.tree_util.tree_leaves(g["readout"])[0]).sum()) == 0.0


def test_jepa_target_encoder_follows_ema():
    cfg = tiny_model("jepa", ema_beta=0.9)
    st0 = init_state(cfg, tiny_train())
    st1, _, _ = train_state_to(st0, tiny_train(), 1)
    leaf = lambda t: jax.tree_util.tree_leaves(t)[3]
    # after one step: ema = 0.9 * initial + 0.1 * updated online params
    init_params_, _ = init_params(cfg, jax.random.PRNGKey(42))
    want = 0.9 * leaf(init_params_["encoder"]) + 0.1 * leaf(st1.params["encoder"])
    np.testing.assert_allclose(leaf(st1.aux["ema"]), want, rtol=1e-6, atol=1e-7)


def test_shape_drops_only_the_traced_fields():
    a = tiny_model("jepa", dropout=0.2, ema_beta=0.9)
    assert a.shape() == tiny_model("jepa").shape() == tiny_model("jepa", dropout=0.1).shape()
    assert a.shape() != tiny_model("jepa", width=24).shape() and a.shape() != tiny_model("attn").shape()
    assert (a.shape().dropout, a.shape().ema_beta) == (ModelConfig.dropout, ModelConfig.ema_beta)
    assert {k: float(v) for k, v in traced_hparams(a).items()} == pytest.approx({"dropout": 0.2, "ema_beta": 0.9})


def test_dropout_at_traced_rate_zero_returns_its_input_bit_for_bit():
    y = jax.random.normal(jax.random.PRNGKey(0), (4, 16, 32))
    fn = jax.jit(dropout)
    out, vjp = jax.vjp(lambda v: fn(v, jnp.float32(0.0), jax.random.PRNGKey(1)), y)
    np.testing.assert_array_equal(out, y)
    np.testing.assert_array_equal(vjp(y)[0], y)
    # and under vmap (a population: the cond becomes a select and the mask is drawn, all ones)
    rates = jnp.asarray([0.0, 0.5], jnp.float32)
    both = jax.vmap(fn, in_axes=(None, 0, None))(y, rates, jax.random.PRNGKey(1))
    np.testing.assert_array_equal(both[0], y)
    np.testing.assert_array_equal(both[1], fn(y, jnp.float32(0.5), jax.random.PRNGKey(1)))


def test_dropout_keeps_one_minus_rate_and_rescales():
    y = jnp.ones((64, 64, 16))    # 65,536 draws: the kept fraction has std 0.002 at rate 0.3
    out = np.asarray(jax.jit(dropout)(y, jnp.float32(0.3), jax.random.PRNGKey(2)))
    kept = out != 0
    assert abs(kept.mean() - 0.7) < 0.01
    np.testing.assert_allclose(out[kept], 1 / np.float32(0.7), rtol=1e-6)


def test_traced_dropout_rate_zero_equals_the_deterministic_loss_and_gradients(family):
    """Rate 0 through the traced path (one program for every rate) is the dropout-free computation, bit for bit."""
    cfg = tiny_model(family)
    st = _trained(cfg)
    x = _x(cfg, 4, batch=4)
    y = jnp.roll(x, -1, axis=1)
    det = jax.jit(jax.value_and_grad(lambda p: loss_fn(cfg, p, st.aux, x, y)[0]))
    traced = jax.jit(jax.value_and_grad(lambda p, k, hp: loss_fn(cfg, p, st.aux, x, y, k, hp)[0]))
    (l0, g0) = det(st.params)
    (l1, g1) = traced(st.params, jax.random.PRNGKey(5), traced_hparams(cfg))
    assert float(l0) == float(l1)
    for a, b in zip(jax.tree_util.tree_leaves(g0), jax.tree_util.tree_leaves(g1)):
        np.testing.assert_array_equal(a, b)
    # a positive rate reaches the model through the same compiled program
    hp = {**traced_hparams(cfg), "dropout": jnp.float32(0.3)}
    l2, _ = traced(st.params, jax.random.PRNGKey(5), hp)
    assert float(l2) != float(l1)
    assert traced._cache_size() == 1


def test_update_aux_takes_the_traced_ema_beta():
    cfg = tiny_model("jepa")
    params, aux = init_params(cfg, jax.random.PRNGKey(0))
    online = jax.tree_util.tree_map(lambda v: v + 1.0, params)
    fn = jax.jit(lambda a, p, hp: update_aux(cfg, a, p, hp))
    for beta in (0.5, 0.9):
        new = fn(aux, online, {"ema_beta": jnp.float32(beta), "dropout": jnp.float32(0.0)})
        leaf = lambda t: jax.tree_util.tree_leaves(t)[0]
        want = beta * leaf(aux["ema"]) + (1 - beta) * leaf(online["encoder"])
        np.testing.assert_allclose(leaf(new["ema"]), want, rtol=1e-6, atol=1e-7)
    assert fn._cache_size() == 1


def test_hybrid_every_parameter_gets_a_gradient():
    cfg = tiny_model("hybrid", depth=2)
    st = _trained(cfg)
    x = _x(cfg, 3)
    g = jax.grad(lambda p: loss_fn(cfg, p, st.aux, x, jnp.roll(x, -1, axis=1))[0])(st.params)
    for path, leaf in jax.tree_util.tree_leaves_with_path(g):
        assert float(jnp.abs(leaf).sum()) > 0.0, f"no gradient reaches {jax.tree_util.keystr(path)}"


def test_hybrid_recurrence_matches_sequential_loop():
    from igla_jax.training.models.hybrid import linear_recurrence
    k1, k2 = jax.random.split(jax.random.PRNGKey(0))
    a = jax.nn.sigmoid(jax.random.normal(k1, (2, 9, 3)))
    u = jax.random.normal(k2, (2, 9, 3))
    h, ref = jnp.zeros((2, 3)), []
    for t in range(9):
        h = a[:, t] * h + u[:, t]
        ref.append(h)
    np.testing.assert_allclose(linear_recurrence(a, u), jnp.stack(ref, 1), rtol=1e-5, atol=1e-6)


@settings(max_examples=50, deadline=None)
@given(beta=st.floats(0.01, 0.99), xs=st.lists(st.floats(-100, 100), min_size=1, max_size=30),
       x0=st.floats(-100, 100))
def test_ema_stays_within_bounds(beta, xs, x0):
    """INV-6: for beta in (0, 1) the EMA stays within [min, max] of its initial value and inputs."""
    e = jnp.float64(x0) if jax.config.jax_enable_x64 else np.float64(x0)
    lo, hi = min([x0] + xs), max([x0] + xs)
    for v in xs:
        e = ema_update(e, np.float64(v), beta)
        assert lo - 1e-9 <= float(e) <= hi + 1e-9


def test_mup_roles_follow_the_table():
    cfg = ModelConfig(width=256, d_base=128)
    m = 2.0
    assert mup.lr_mult(mup.Role.HIDDEN, param="mup", width=256, d_base=128) == 1 / m
    assert mup.lr_mult(mup.Role.QUERY, param="mup", width=256, d_base=128) == 1 / m
    assert mup.lr_mult(mup.Role.READOUT, param="mup", width=256, d_base=128) == 1.0
    assert mup.lr_mult(mup.Role.EMBEDDING, param="mup", width=256, d_base=128) == 1.0
    assert mup.forward_mult(mup.Role.READOUT, param="mup", width=256, d_base=128, alpha_out=1.0) == 1 / m
    assert mup.wd_mult(mup.Role.HIDDEN, param="mup", width=256, d_base=128) == m   # lr x wd constant
    assert mup.attn_scale(32, param="mup") == 1 / 32
    assert mup.attn_scale(32, param="sp") == 1 / math.sqrt(32)
    assert mup.lr_mult(mup.Role.HIDDEN, param="sp", width=256, d_base=128) == 1.0
    params, _ = init_params(cfg, jax.random.PRNGKey(0))
    assert float(jnp.abs(params["readout"]["head"]["kernel_ro"]).sum()) == 0.0
    assert float(jnp.abs(params["encoder"]["block0"]["attn"]["q"]["kernel_wq"]).sum()) == 0.0
    emb = params["encoder"]["embed"]["tok_emb"]
    assert abs(float(jnp.std(emb)) - mup.EMBED_STD) < 0.05        # width-independent init


def test_sp_control_differs_from_mup():
    p_sp, _ = init_params(ModelConfig(width=64, param="sp"), jax.random.PRNGKey(0))
    assert float(jnp.abs(p_sp["readout"]["head"]["kernel_ro"]).sum()) > 0.0
    assert abs(float(jnp.std(p_sp["encoder"]["embed"]["tok_emb"])) - 1 / 8) < 0.02


def test_width_range_8_to_256():
    small = non_embedding_params(ModelConfig(width=8, head_dim=8, depth=4))
    big = non_embedding_params(ModelConfig(width=256, head_dim=32, depth=4))
    assert small < 10_000 and big > 2_000_000


def test_intermediates_name_every_layer(family):
    cfg = tiny_model(family)
    params, _ = init_params(cfg, jax.random.PRNGKey(0))
    names = set(intermediates(cfg, params, _x(cfg)))
    assert {"embedding", "final_hidden", "readout/logits"} <= names
    assert "block0/attn" in names and "block1/mlp" in names


@pytest.mark.parametrize("field,value,match", [
    ("family", "rnn", "family"), ("width", 20, "multiple of head_dim"), ("depth", 0, "depth"),
    ("param", "ntk", "param"), ("ema_beta", 1.0, "ema_beta"), ("dropout", 1.5, "dropout"),
    ("matmul_dtype", "float16", "matmul_dtype"),
])
def test_bad_model_config_names_the_field(field, value, match):
    with pytest.raises(ConfigError, match=match):
        ModelConfig(**{field: value})


@pytest.mark.parametrize("n_in,n_out", [(16, 8), (8, 16)])   # both weight-gradient orientations
def test_lowp_matmul_in_float32_equals_autodiff(n_in, n_out):
    """The custom VJP's three products (with its materialised transposes) are x @ w's, to float rounding."""
    from igla_jax.training.models.lowp import matmul_lowp
    x = jax.random.normal(jax.random.PRNGKey(0), (48, n_in))
    w = jax.random.normal(jax.random.PRNGKey(1), (n_in, n_out))
    mine = jax.jit(jax.value_and_grad(lambda x, w: jnp.sum(jnp.sin(matmul_lowp(x, w, "float32"))), (0, 1)))(x, w)
    ref = jax.value_and_grad(lambda x, w: jnp.sum(jnp.sin(x @ w)), (0, 1))(x, w)
    for a, b in zip(jax.tree_util.tree_leaves(mine), jax.tree_util.tree_leaves(ref)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_bf16_matmuls_track_float32_loss_and_gradients(family):
    """bfloat16 operands (float32 accumulation) move the loss and each gradient leaf by rounding only.

    Measured after 6 steps at lr 1e-2 and 3e-3: loss within 3e-4 relative, every leaf within 1.9e-2
    (a wrong or transposed product is O(1)). Not at lr 3e-2: that hybrid is sensitive enough for its
    attention block's gradients to move 0.18."""
    cfg = tiny_model(family)
    st, status, _ = train_state_to(init_state(cfg, tiny_train()), tiny_train(), 6)
    assert status == "ok"
    lo = dataclasses.replace(cfg, matmul_dtype="bfloat16")
    assert lo.shape() != cfg.shape()                      # its own compiled program
    x = _x(cfg, 4, batch=4)
    y = jnp.roll(x, -1, axis=1)
    f32 = jax.jit(jax.value_and_grad(lambda p: loss_fn(cfg, p, st.aux, x, y)[0]))(st.params)
    b16 = jax.jit(jax.value_and_grad(lambda p: loss_fn(lo, p, st.aux, x, y)[0]))(st.params)
    chex.assert_tree_all_finite(b16)
    assert float(b16[0]) == pytest.approx(float(f32[0]), rel=1e-3)
    for a, b in zip(jax.tree_util.tree_leaves(f32[1]), jax.tree_util.tree_leaves(b16[1])):
        assert np.linalg.norm(a - b) <= 5e-2 * max(np.linalg.norm(a), 1e-12)
