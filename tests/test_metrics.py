"""Metrics of mesm_jax.train.metrics against sklearn and the paper's formulas."""

import warnings

import numpy as np
import pytest
from sklearn import metrics as skm

from mesm_jax.train import metrics

EMOTIONS = ('anger', 'disgust', 'fear', 'happiness', 'sadness', 'surprise')


def _random_case(seed, n=50, e=6):
  rng = np.random.default_rng(seed)
  labels = rng.random((n, e)) < rng.uniform(0.1, 0.6, size=e)
  probs = np.clip(labels * 0.3 + rng.random((n, e)) * 0.7, 0, 1)
  probs = np.round(probs, 2)  # ties in the scores, as real sigmoid outputs
  return probs, labels


def _sk(fn, y, p, **kw):
  with warnings.catch_warnings():
    warnings.simplefilter('ignore')
    return fn(y, p, **kw)


@pytest.mark.parametrize('seed', range(5))
def test_per_emotion_metrics_equal_sklearn(seed):
  probs, labels = _random_case(seed)
  preds = probs > 0.5
  for e in range(labels.shape[1]):
    y, p = labels[:, e], preds[:, e]
    np.testing.assert_allclose(metrics.accuracy(preds, labels)[e],
                               skm.accuracy_score(y, p))
    np.testing.assert_allclose(metrics.f1(preds, labels)[e],
                               _sk(skm.f1_score, y, p))
    np.testing.assert_allclose(metrics.precision(preds, labels)[e],
                               _sk(skm.precision_score, y, p))
    np.testing.assert_allclose(metrics.recall(preds, labels)[e],
                               _sk(skm.recall_score, y, p))
    np.testing.assert_allclose(metrics.roc_auc(probs, labels)[e],
                               skm.roc_auc_score(y, probs[:, e]))


@pytest.mark.parametrize('seed', range(5))
def test_weighted_accuracy_is_the_mosei_formula(seed):
  probs, labels = _random_case(seed)
  preds = probs > 0.4
  got = metrics.weighted_accuracy(preds, labels)
  for e in range(labels.shape[1]):
    y, p = labels[:, e], preds[:, e]
    tp, tn = np.sum(p & y), np.sum(~p & ~y)
    pos, neg = np.sum(y), np.sum(~y)
    np.testing.assert_allclose(got[e], (tp * neg / pos + tn) / (2 * neg))
    np.testing.assert_allclose(got[e], skm.balanced_accuracy_score(y, p))


@pytest.mark.parametrize('seed', range(3))
def test_weighted_f1_variants_equal_sklearn(seed):
  probs, labels = _random_case(seed)
  preds = probs > 0.5
  # Multilabel 'weighted': emotions weighted by their positive counts.
  np.testing.assert_allclose(
      metrics.multilabel_weighted_f1(preds, labels),
      _sk(skm.f1_score, labels, preds, average='weighted'))
  # The original's MOSEI evaluator: binary 'weighted' per emotion, then mean.
  per_emotion = [_sk(skm.f1_score, labels[:, e], preds[:, e],
                     average='weighted') for e in range(labels.shape[1])]
  np.testing.assert_allclose(metrics.class_weighted_f1(preds, labels),
                             per_emotion)
  out = metrics.compute_metrics(probs, labels, np.full(6, 0.5), EMOTIONS,
                                'mosei')
  np.testing.assert_allclose(out['f1_class_weighted/avg'],
                             np.mean(per_emotion))
  np.testing.assert_allclose(out[f'f1_class_weighted/{EMOTIONS[2]}'],
                             per_emotion[2])
  assert 'f1_weighted' not in out   # the ambiguous name is gone


def test_degenerate_no_positives_and_all_positives():
  n = 10
  labels = np.zeros((n, 3), bool)
  labels[:, 1] = True                      # emotion 1: every clip positive
  probs = np.linspace(0, 1, n)[:, None].repeat(3, axis=1)
  preds = probs > 0.5
  # No positive clip (emotion 0): F1/precision/recall 0 like sklearn, weighted
  # accuracy is the true negative rate alone (sklearn balanced accuracy).
  for e in (0, 1):
    y, p = labels[:, e], preds[:, e]
    assert metrics.f1(preds, labels)[e] == _sk(skm.f1_score, y, p)
    assert metrics.precision(preds, labels)[e] == _sk(skm.precision_score, y, p)
    assert metrics.recall(preds, labels)[e] == _sk(skm.recall_score, y, p)
    np.testing.assert_allclose(metrics.weighted_accuracy(preds, labels)[e],
                               _sk(skm.balanced_accuracy_score, y, p))
  np.testing.assert_allclose(metrics.weighted_accuracy(preds, labels)[0],
                             np.mean(~preds[:, 0]))
  np.testing.assert_allclose(metrics.weighted_accuracy(preds, labels)[1],
                             np.mean(preds[:, 1]))
  # Single-class ROC AUC is NaN (sklearn raises); averages skip it.
  auc = metrics.roc_auc(probs, labels)
  assert np.all(np.isnan(auc))
  out = metrics.compute_metrics(probs, labels, np.full(3, 0.5),
                                ('a', 'b', 'c'), 'mosei')
  assert np.isnan(out['auc/avg'])
  np.testing.assert_allclose(out['f1/avg'], np.mean(metrics.f1(preds, labels)))
  # Nothing predicted, nothing present: every count-based metric is defined.
  zeros = np.zeros((n, 3), bool)
  assert np.all(metrics.f1(zeros, zeros) == 0)
  assert np.all(metrics.accuracy(zeros, zeros) == 1)
  assert metrics.multilabel_weighted_f1(zeros, zeros) == 0.0
  # Only the negative class present and predicted: 1, as sklearn.
  assert np.all(metrics.class_weighted_f1(zeros, zeros) == 1)
  for e in (0, 1):
    np.testing.assert_allclose(
        metrics.class_weighted_f1(preds, labels)[e],
        _sk(skm.f1_score, labels[:, e], preds[:, e], average='weighted'))
  assert metrics.choose_thresholds(probs * 0, zeros).tolist() == [0.05] * 3


def test_thresholds_maximise_f1_on_the_grid():
  probs, labels = _random_case(7, n=80)
  thr = metrics.choose_thresholds(probs, labels)
  for e in range(labels.shape[1]):
    grid_f1 = [_sk(skm.f1_score, labels[:, e], probs[:, e] > t)
               for t in metrics.THRESHOLD_GRID]
    best = int(np.argmax(grid_f1))  # first maximum: the lowest threshold
    assert thr[e] == pytest.approx(metrics.THRESHOLD_GRID[best])
  assert metrics.THRESHOLD_GRID[0] == 0.05 and metrics.THRESHOLD_GRID[-1] == 0.95
  assert len(metrics.THRESHOLD_GRID) == 19


def test_evaluate_splits_applies_valid_thresholds_to_test():
  valid = dict(zip(('probs', 'labels'), _random_case(1)))
  test = dict(zip(('probs', 'labels'), _random_case(2)))
  thr, out = metrics.evaluate_splits(valid, test, EMOTIONS, 'mosei')
  np.testing.assert_array_equal(
      thr, metrics.choose_thresholds(valid['probs'], valid['labels']))
  preds = test['probs'] > thr
  for e, name in enumerate(EMOTIONS):
    np.testing.assert_allclose(
        out[f'test/f1/{name}'],
        _sk(skm.f1_score, test['labels'][:, e], preds[:, e]))
  np.testing.assert_allclose(
      out['test/mosei_wacc/avg'],
      np.mean([skm.balanced_accuracy_score(test['labels'][:, e], preds[:, e])
               for e in range(6)]))
  assert out['test/num_clips'] == 50
  assert 'test/acc/avg' in out and 'valid/auc/anger' in out


def test_iemocap_metric_set_has_plain_accuracy_not_weighted():
  probs, labels = _random_case(3)
  out = metrics.compute_metrics(probs, labels, np.full(6, 0.5), EMOTIONS,
                                'iemocap')
  assert metrics.headline_metrics('iemocap') == ('acc', 'f1')
  assert metrics.headline_metrics('mosei') == ('mosei_wacc', 'f1')
  assert not any(k.startswith('mosei_wacc') for k in out)
  np.testing.assert_allclose(
      out['acc/avg'],
      np.mean([skm.accuracy_score(labels[:, e], probs[:, e] > 0.5)
               for e in range(6)]))
