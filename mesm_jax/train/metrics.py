"""Evaluation metrics of MESM/FE2E in plain numpy.

Axis letters:
  N : evaluated clips (padded eval clips already removed)
  E : emotions (``num_emotions``)

The evaluator of the paper: sigmoid of the fused logits, one threshold per
emotion chosen on the validation set from 0.05, 0.10, ..., 0.95 by best binary
F1 (ties go to the lowest threshold), the validation thresholds applied to the
test set.  A clip is predicted positive for an emotion when its probability is
strictly above the threshold.

Headline metrics: IEMOCAP accuracy and F1; CMU-MOSEI (and the synthetic data,
which follows the MOSEI layout) weighted accuracy and F1, per emotion and
averaged over the emotions.  Also reported: precision, recall, ROC AUC and
two F1 variants that carry "weighted" in sklearn's vocabulary but are
different numbers:
  * ``f1_multilabel_weighted``: the per-emotion (positive-class) F1 averaged
    over emotions, weighted by each emotion's number of positive clips
    (sklearn's ``f1_score(Y, P, average='weighted')`` on the [N, E] matrix);
  * ``f1_class_weighted/<emotion>``: the original's (unused) MOSEI evaluator:
    per emotion, sklearn's binary ``f1_score(y, p, average='weighted')``, the
    F1 of the positive and of the negative class weighted by their support;
    ``f1_class_weighted/avg`` is their mean over emotions, as that evaluator
    reports it.

Degenerate cases (documented values, no exception):
  * precision, recall, F1 with a zero denominator are 0 (sklearn's
    ``zero_division`` default), e.g. F1 of an emotion with no positive clip and
    no positive prediction is 0.
  * weighted accuracy ``(TP * N / P + TN) / (2N)`` is the mean of the true
    positive rate and the true negative rate; with no positive clip (P = 0)
    it is the true negative rate alone, with no negative clip (N = 0) the true
    positive rate alone (as sklearn's ``balanced_accuracy_score``).
  * ROC AUC with a single class present is undefined: NaN, and averages skip
    NaN entries (NaN when every entry is NaN).
  * ``f1_multilabel_weighted`` with no positive clip at all is 0.
  * ``f1_class_weighted`` of an emotion counts only the classes present in
    the labels (a class absent from them has weight 0), so an emotion with
    no positive clip, predicted all negative, scores 1 (as sklearn).
"""

from typing import Dict, Mapping, Optional, Sequence

import numpy as np
import scipy.stats

THRESHOLD_GRID = np.round(np.arange(1, 20) * 0.05, 2)  # 0.05 .. 0.95

# Which metrics each dataset reports; the first two are the paper's headline.
METRIC_SETS = {
    'iemocap': ('acc', 'f1', 'precision', 'recall', 'auc'),
    'mosei': ('mosei_wacc', 'f1', 'acc', 'precision', 'recall', 'auc'),
    'synthetic': ('mosei_wacc', 'f1', 'acc', 'precision', 'recall', 'auc'),
}


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
  num, den = np.asarray(num, np.float64), np.asarray(den, np.float64)
  return np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)


def confusion_counts(preds: np.ndarray, labels: np.ndarray):
  """TP, FP, TN, FN per emotion of 0/1 arrays [N, E] -> four [E] arrays."""
  p, y = np.asarray(preds, bool), np.asarray(labels, bool)
  tp = np.sum(p & y, axis=0)
  fp = np.sum(p & ~y, axis=0)
  tn = np.sum(~p & ~y, axis=0)
  fn = np.sum(~p & y, axis=0)
  return tp, fp, tn, fn


def accuracy(preds, labels) -> np.ndarray:
  """Plain accuracy per emotion [E] (NaN for zero clips)."""
  tp, fp, tn, fn = confusion_counts(preds, labels)
  total = tp + fp + tn + fn
  return np.where(total > 0, (tp + tn) / np.maximum(total, 1), np.nan)


def precision(preds, labels) -> np.ndarray:
  tp, fp, _, _ = confusion_counts(preds, labels)
  return _safe_div(tp, tp + fp)


def recall(preds, labels) -> np.ndarray:
  tp, _, _, fn = confusion_counts(preds, labels)
  return _safe_div(tp, tp + fn)


def f1(preds, labels) -> np.ndarray:
  """Binary F1 per emotion: 2TP / (2TP + FP + FN), 0 when that is 0/0."""
  tp, fp, _, fn = confusion_counts(preds, labels)
  return _safe_div(2 * tp, 2 * tp + fp + fn)


def weighted_accuracy(preds, labels) -> np.ndarray:
  """MOSEI weighted accuracy per emotion: (TP * N / P + TN) / (2N)."""
  tp, fp, tn, fn = confusion_counts(preds, labels)
  pos, neg = tp + fn, tn + fp
  tpr, tnr = _safe_div(tp, pos), _safe_div(tn, neg)
  both = (tpr + tnr) / 2
  return np.where(pos == 0, np.where(neg == 0, np.nan, tnr),
                  np.where(neg == 0, tpr, both))


def roc_auc(scores, labels) -> np.ndarray:
  """ROC AUC per emotion via the Mann-Whitney U statistic (ties count 1/2)."""
  scores, y = np.asarray(scores, np.float64), np.asarray(labels, bool)
  out = np.full(y.shape[1], np.nan)
  for e in range(y.shape[1]):
    pos, neg = y[:, e].sum(), (~y[:, e]).sum()
    if pos == 0 or neg == 0:
      continue
    ranks = scipy.stats.rankdata(scores[:, e])  # average ranks for ties
    out[e] = (ranks[y[:, e]].sum() - pos * (pos + 1) / 2) / (pos * neg)
  return out


def multilabel_weighted_f1(preds, labels) -> float:
  """Per-emotion F1 averaged with the emotions' positive counts as weights
  (sklearn's multilabel ``average='weighted'``)."""
  support = np.asarray(labels, bool).sum(axis=0)
  if support.sum() == 0:
    return 0.0
  return float(np.sum(f1(preds, labels) * support) / support.sum())


def class_weighted_f1(preds, labels) -> np.ndarray:
  """Per emotion [E]: F1 of the positive and of the negative class, weighted
  by their support (sklearn's binary ``average='weighted'``; the original's
  MOSEI evaluator).  NaN for zero clips."""
  tp, fp, tn, fn = confusion_counts(preds, labels)
  pos, neg = tp + fn, tn + fp
  f1_neg = _safe_div(2 * tn, 2 * tn + fn + fp)
  total = pos + neg
  return np.where(total > 0, (f1(preds, labels) * pos + f1_neg * neg)
                  / np.maximum(total, 1), np.nan)


def choose_thresholds(probs: np.ndarray, labels: np.ndarray,
                      grid: Sequence[float] = THRESHOLD_GRID) -> np.ndarray:
  """Per-emotion threshold from ``grid`` with the best binary F1 [E]."""
  grid = np.asarray(grid)
  scores = np.stack([f1(probs > t, labels) for t in grid])  # [T, E]
  return grid[np.argmax(scores, axis=0)]  # argmax: first (lowest) best


def _nanmean(x: np.ndarray) -> float:
  x = np.asarray(x, np.float64)
  return float(np.mean(x[~np.isnan(x)])) if np.any(~np.isnan(x)) else np.nan


METRIC_FNS = {
    'acc': accuracy, 'mosei_wacc': weighted_accuracy, 'f1': f1,
    'precision': precision, 'recall': recall,
    'f1_class_weighted': class_weighted_f1,
}


def compute_metrics(probs: np.ndarray, labels: np.ndarray,
                    thresholds: np.ndarray, emotions: Sequence[str],
                    dataset: str) -> Dict[str, float]:
  """Every metric of ``dataset``'s set, per emotion and averaged.

  Returns a flat dict ``{'<metric>/<emotion>': v, '<metric>/avg': v,
  'f1_multilabel_weighted': v, 'num_clips': n}`` (the metrics of the set and
  ``f1_class_weighted``); the caller adds the split prefix.
  """
  labels = np.asarray(labels) > 0.5
  preds = np.asarray(probs) > np.asarray(thresholds)[None, :]
  out = {}
  for name in METRIC_SETS[_metric_set(dataset)] + ('f1_class_weighted',):
    values = (roc_auc(probs, labels) if name == 'auc'
              else METRIC_FNS[name](preds, labels))
    for emotion, v in zip(emotions, values):
      out[f'{name}/{emotion}'] = float(v)
    out[f'{name}/avg'] = _nanmean(values)
  out['f1_multilabel_weighted'] = multilabel_weighted_f1(preds, labels)
  out['num_clips'] = int(labels.shape[0])
  return out


def _metric_set(dataset: str) -> str:
  if dataset not in METRIC_SETS:
    raise ValueError(f'no metric set for dataset {dataset!r}; '
                     f'known: {sorted(METRIC_SETS)}')
  return dataset


def headline_metrics(dataset: str) -> tuple:
  """The paper's two headline metric names for ``dataset``."""
  return METRIC_SETS[_metric_set(dataset)][:2]


def evaluate_splits(valid: Mapping[str, np.ndarray],
                    test: Optional[Mapping[str, np.ndarray]],
                    emotions: Sequence[str], dataset: str,
                    thresholds: Optional[np.ndarray] = None):
  """Thresholds from valid (unless given), metrics of valid and test.

  ``valid``/``test`` hold ``probs`` [N, E] and ``labels`` [N, E] of real clips.
  Returns ``(thresholds, {'valid/...': v, 'test/...': v})``.
  """
  if thresholds is None:
    thresholds = choose_thresholds(valid['probs'], valid['labels'] > 0.5)
  out = {}
  for split, data in (('valid', valid), ('test', test)):
    if data is None:
      continue
    metrics = compute_metrics(data['probs'], data['labels'], thresholds,
                              emotions, dataset)
    out.update({f'{split}/{k}': v for k, v in metrics.items()})
  return np.asarray(thresholds), out
