import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from igla_jax.training import data


def test_shipped_data_matches_hash_and_size():
    raw = data.load_bytes()
    assert len(raw) == data.DATA_BYTES


def test_altered_data_raises_one_clear_error():
    raw = bytearray(data.load_bytes())
    raw[100] ^= 1
    with pytest.raises(data.DataError, match="sha256"):
        data.check_bytes(bytes(raw), "altered-copy")


def test_missing_data_file_raises(tmp_path):
    with pytest.raises(data.DataError, match="missing"):
        data.load_bytes.__wrapped__(str(tmp_path / "nope.txt"))


def test_split_train_validation_test_sizes_and_offsets():
    train, val, test = data.splits()
    assert (train.size, val.size, test.size) == (1_003_854, 55_552, 55_988)
    assert val.size % 256 == 0  # the validation/test cut is a window boundary for every context dividing 256
    tokens = np.frombuffer(data.load_bytes(), np.uint8)
    a, b = data.split_bounds(tokens.size)
    assert (a, b) == (1_003_854, 1_003_854 + 55_552)
    # each split is exactly the corpus at its own offsets, and together they are the corpus once:
    # any overlap or gap between two splits would make the sizes or the bytes disagree
    assert train.size + val.size + test.size == tokens.size
    assert np.array_equal(train, tokens[:a]) and np.array_equal(val, tokens[a:b]) and np.array_equal(test, tokens[b:])


@pytest.mark.parametrize("split", ["val", "test", "heldout"])
def test_eval_windows_score_exactly_their_split(split):
    train, val, test = data.splits()
    want = {"val": val, "test": test, "heldout": np.concatenate([val, test])}[split]
    before = {"val": train[-1], "test": val[-1], "heldout": train[-1]}[split]
    x, y, m = data.eval_windows(64, split)
    keep = m.reshape(-1) > 0
    assert np.array_equal(y.reshape(-1)[keep], want.astype(np.int32))
    flat_x = x.reshape(-1)[keep]
    assert flat_x[0] == before and np.array_equal(flat_x[1:], want[:-1].astype(np.int32))
    with pytest.raises(ValueError, match="split='train'"):
        data.eval_windows(64, "train")


def test_byte_weighted_halves_equal_the_heldout_bpb():
    # a non-trivial deterministic model: logits from the current byte and position
    w = jax.random.normal(jax.random.PRNGKey(0), (256, 256)) * 0.5
    fn = lambda x: w[x] + 0.01 * jnp.arange(x.shape[1])[None, :, None]  # noqa: E731
    _, val, test = data.splits()
    v = data.evaluate_bpb(fn, context=64, split="val")
    t = data.evaluate_bpb(fn, context=64, split="test")
    h = data.evaluate_bpb(fn, context=64, split="heldout")
    assert abs(v - t) > 1e-4  # the halves differ, so the identity below is not trivial
    assert abs((v * val.size + t * test.size) / (val.size + test.size) - h) < 1e-6


def test_training_batches_never_read_past_the_array_they_are_given():
    # Values equal positions, so every window must be a run of consecutive in-range indices;
    # a window reaching past the end (into what would be validation) breaks the run.
    n, ctx = 200, 32
    pos_N = jnp.arange(n, dtype=jnp.int32)
    for step in range(0, 400, 7):
        x, y = data.get_batch(pos_N, 7, step, batch=64, context=ctx)
        w = np.concatenate([np.asarray(x), np.asarray(y)[:, -1:]], axis=1)
        assert w.min() >= 0 and w.max() <= n - 1
        assert np.all(np.diff(w, axis=1) == 1)
    train_N = jnp.asarray(data.splits()[0])
    x, y = data.get_batch(train_N, 7, 3, batch=64, context=32)
    assert x.shape == (64, 32) and y.shape == (64, 32)
    assert np.array_equal(np.asarray(x)[:, 1:], np.asarray(y)[:, :-1])


def test_every_training_byte_can_be_a_target_including_the_last():
    # off-by-one guard: the window start's upper bound must let the last byte be a target
    n, ctx = 40, 8
    pos_N = jnp.arange(n, dtype=jnp.int32)
    targets = set()
    for step in range(200):
        _, y = data.get_batch(pos_N, 1, step, batch=16, context=ctx)
        targets.update(np.asarray(y).reshape(-1).tolist())
    assert targets == set(range(1, n))


def test_batch_is_pure_function_of_seed_and_step():
    train_N = jnp.asarray(data.splits()[0])
    a = data.get_batch(train_N, 42, 10, batch=4, context=16)
    b = data.get_batch(train_N, 42, 10, batch=4, context=16)
    c = data.get_batch(train_N, 42, 11, batch=4, context=16)
    d = data.get_batch(train_N, 43, 10, batch=4, context=16)
    assert np.array_equal(a[0], b[0])
    assert not np.array_equal(a[0], c[0]) and not np.array_equal(a[0], d[0])


def test_validation_windows_cover_every_byte_once():
    _, val, _ = data.splits()
    x, y, m = data.validation_windows(64)
    assert m.sum() == val.size
    assert np.array_equal(y.reshape(-1)[m.reshape(-1) > 0], val.astype(np.int32))
    # inputs are the bytes before each target: the last train byte, then validation bytes
    flat_x = x.reshape(-1)[m.reshape(-1) > 0]
    assert flat_x[0] == data.splits()[0][-1]
    assert np.array_equal(flat_x[1:], val[:-1].astype(np.int32))


def test_uniform_logits_score_exactly_eight_bits():
    bpb = data.evaluate_bpb(lambda x: jnp.zeros(x.shape + (256,), jnp.float32), context=64)
    assert bpb == 8.0


def test_perfect_logits_score_near_zero():
    x, y, _ = data.validation_windows(32)
    lookup = {}
    def oracle(xb):
        # logits that put all mass on the true next byte: find the batch in the table by identity
        idx = lookup[np.asarray(xb).tobytes()]
        return jax.nn.one_hot(jnp.asarray(idx), 256) * 100.0
    ev = 256
    for i in range(0, x.shape[0], ev):
        xb = x[i:i + ev]; yb = y[i:i + ev]
        if xb.shape[0] < ev:
            pad = ev - xb.shape[0]
            xb = np.concatenate([xb, np.zeros((pad, 32), np.int32)]); yb = np.concatenate([yb, np.zeros((pad, 32), np.int32)])
        lookup[xb.tobytes()] = yb
    assert data.evaluate_bpb(oracle, context=32, eval_batch=ev) < 1e-3
