"""nucleus_mask / nucleus_topk / nucleus_capacity against a plain numpy rule.

The reference (float64, one frame at a time): visit the valid positions by
descending probability, ties towards the lower index; keep a position while
the sum of the probabilities kept before it is below p (so the first position
at which the cumulative sum reaches p is kept too); p >= 1 keeps every valid
position.
"""

import math

import hypothesis
from hypothesis import strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mesm_jax.nucleus import nucleus_capacity, nucleus_mask, nucleus_topk

P_VALUES = (0.1, 0.5, 0.7, 0.99, 1.0)


def reference_mask(probs: np.ndarray, p: float, valid: np.ndarray):
  """Returns (mask, exclusive sums met) for one frame; see module doc."""
  probs = probs.astype(np.float64)
  order = sorted(np.flatnonzero(valid), key=lambda i: (-probs[i], i))
  mask, cum, sums = np.zeros(len(probs), bool), 0.0, []
  for i in order:
    sums.append(cum)
    if p >= 1 or cum < p:
      mask[i] = True
    cum += probs[i]
  return mask, np.array(sums)


def softmax_rows(logits: np.ndarray, valid: np.ndarray) -> np.ndarray:
  scores = jnp.where(valid, jnp.asarray(logits, jnp.float32), -jnp.inf)
  return np.asarray(jnp.where(valid, jax.nn.softmax(scores, axis=-1), 0.0))


@hypothesis.settings(max_examples=40, deadline=None)
@hypothesis.given(
    seed=st.integers(0, 2**31 - 1), n=st.sampled_from([1, 2, 5, 9, 16, 36, 144, 576]),
    p=st.sampled_from(P_VALUES), scale=st.sampled_from([0.3, 2.0, 6.0]),
    integer_logits=st.booleans(), all_valid=st.booleans())
def test_nucleus_mask_matches_numpy_rule(seed, n, p, scale, integer_logits,
                                         all_valid):
  rng = np.random.RandomState(seed)
  rows = 6
  logits = rng.randn(rows, n) * scale
  if integer_logits:  # many exact ties
    logits = np.round(logits)
  valid = np.ones((rows, n), bool) if all_valid else rng.rand(rows, n) < 0.6
  valid[:, rng.randint(n)] = True  # at least one valid position per frame
  probs = softmax_rows(logits, valid)
  got = np.asarray(nucleus_mask(probs, p, valid))
  for r in range(rows):
    want, sums = reference_mask(probs[r], p, valid[r])
    if p < 1 and np.any(np.abs(sums - p) < 1e-6):
      continue  # float boundary: float32 and float64 may disagree
    np.testing.assert_array_equal(got[r], want, err_msg=f'row {r}')
  assert np.all(got.sum(-1) <= nucleus_capacity(n, p))
  assert not np.any(got & ~valid)


@pytest.mark.parametrize('p', P_VALUES)
def test_capacity_bound_on_adversarial_inputs(p):
  """Uniform, nearly uniform and one-hot frames never exceed ceil(p * n)."""
  for n in (1, 2, 3, 10, 36, 144, 576):
    rng = np.random.RandomState(n)
    every = np.ones((4, n), bool)
    subset = rng.rand(4, n) < 0.5
    subset[:, 0] = True
    valid = np.concatenate([every, every, every[:1], subset])
    probs = np.concatenate([
        np.full((4, n), 1.0 / n, np.float32),            # uniform
        softmax_rows(1e-4 * rng.randn(4, n), every),     # nearly uniform
        np.eye(1, n, dtype=np.float32),                  # one-hot
        softmax_rows(np.zeros((4, n)), subset),          # uniform on a subset
    ])
    kept = np.asarray(nucleus_mask(probs, p, valid)).sum(-1)
    cap = nucleus_capacity(n, p)
    assert np.all(kept <= cap), (n, p, kept, cap)
    assert np.all(kept >= 1)
    # Uniform frames reach the bound exactly: the nucleus is ceil(p * n).
    want = n if p >= 1 else math.ceil(round(p * n, 9))
    np.testing.assert_array_equal(kept[:4], want)


def test_capacity_values():
  assert nucleus_capacity(576, 0.5) == 288
  assert nucleus_capacity(10, 0.7) == 7      # 0.7 * 10 is 7.000000000000001
  assert nucleus_capacity(36, 0.1) == 4      # ceil(3.6)
  assert nucleus_capacity(5, 1.0) == 5
  assert nucleus_capacity(3, 0.01) == 1
  with pytest.raises(ValueError):
    nucleus_capacity(0, 0.5)
  with pytest.raises(ValueError):
    nucleus_capacity(4, 0.0)


@pytest.mark.parametrize('probs, p, want', [
    # exclusive sums 0, .25, .5, .75: keep while below .5 -> 2, ties by index
    ([0.25, 0.25, 0.25, 0.25], 0.5, [1, 1, 0, 0]),
    # sorted .5 (1), .25 (0), .25 (2): exclusive 0, .5, .75 -> keep 1 and 0
    ([0.25, 0.5, 0.25], 0.6, [1, 1, 0]),
    # the first position reaching p exactly is kept: .5 + .25 = .75 -> 2 kept
    ([0.25, 0.5, 0.25], 0.75, [1, 1, 0]),
    # cumulative .5 reaches p = .5 at the first position: only it is kept
    ([0.125, 0.5, 0.125, 0.25], 0.5, [0, 1, 0, 0]),
    # tie between positions 1 and 3 for the second place: lower index wins
    ([0.125, 0.25, 0.125, 0.25, 0.25], 0.5, [0, 1, 0, 1, 0]),
])
def test_exact_ties_by_hand(probs, p, want):
  got = nucleus_mask(jnp.asarray([probs], jnp.float32), p)
  np.testing.assert_array_equal(np.asarray(got)[0], np.asarray(want, bool))


def test_valid_mask_excludes_positions():
  # position 0 has the largest probability but is not valid
  probs = jnp.asarray([[0.5, 0.25, 0.125, 0.125]], jnp.float32)
  valid = jnp.asarray([[False, True, True, True]])
  got = np.asarray(nucleus_mask(probs, 0.2, valid))[0]
  np.testing.assert_array_equal(got, [False, True, False, False])
  got = np.asarray(nucleus_mask(probs, 1.0, valid))[0]
  np.testing.assert_array_equal(got, [False, True, True, True])


@pytest.mark.parametrize('p', (0.3, 0.7, 1.0))
def test_topk_lists_the_mask(p):
  rng = np.random.RandomState(0)
  valid = rng.rand(5, 20) < 0.7
  valid[:, 3] = True
  probs = softmax_rows(rng.randn(5, 20) * 2, valid)
  mask = np.asarray(nucleus_mask(probs, p, valid))
  index, keep = map(np.asarray, nucleus_topk(probs, p, valid))
  assert index.shape == keep.shape == (5, nucleus_capacity(20, p))
  for r in range(5):
    listed = np.zeros(20, bool)
    listed[index[r][keep[r]]] = True
    np.testing.assert_array_equal(listed, mask[r])
    # kept slots come first, in descending probability
    assert np.all(np.diff(keep[r].astype(int)) <= 0)
    assert np.all(np.diff(probs[r][index[r][keep[r]]]) <= 0)


def test_mask_has_no_gradient():
  probs = jnp.asarray([[0.1, 0.6, 0.3]])
  grad = jax.grad(lambda x: jnp.sum(nucleus_mask(x, 0.5) * x))(probs)
  # d/dx sum(mask * x) = mask, with the mask itself treated as constant
  np.testing.assert_array_equal(np.asarray(grad), [[0.0, 1.0, 0.0]])
