"""MESM's attention maps for clips of a built split (the paper's Figure 3).

  python experiments/visualize.py --workdir /tmp/demo --split test --top_k 1 --out_dir /tmp/figs
  python experiments/visualize.py --workdir W --split test --clip_ids a_1,b_3

Reads the work directory's saved config and best checkpoint (as
``experiments/predict.py``), takes the clips from the TFDS data the run was
trained on (the same batches as evaluation, one clip at a time), and writes
per clip ``<out_dir>/<clip_id>.png`` (``experiments/attention_figure.py``:
face frames and the mel spectrogram with the three cross-modal layers'
attention and nucleus) and the arrays as ``.npz``.  ``--top_k N`` picks, per
emotion, the N clips the model is most confident have it.
"""

import sys  # pylint: disable=g-bad-import-order
from pathlib import Path  # pylint: disable=g-bad-import-order
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # checkout

import argparse
import os
from typing import Dict, List, Optional, Sequence

import numpy as np

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')  # before TensorFlow loads

# pylint: disable=g-import-not-at-top,wrong-import-position
from data_pipelines import paths
from experiments import attention_figure
from mesm_jax import input_pipeline
from mesm_jax import platforms
from mesm_jax import predict
# pylint: enable=g-import-not-at-top,wrong-import-position


def parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(prog='python experiments/visualize.py',
                              description=__doc__.split('\n')[0])
  p.add_argument('--workdir', required=True,
                 help='a MESM training run (a folder or gs://)')
  p.add_argument('--split', default='test', help='train | valid | test')
  p.add_argument('--clip_ids', default='',
                 help='comma-separated clip ids to draw')
  p.add_argument('--top_k', type=int, default=0,
                 help='per emotion, the k clips with the highest probability')
  p.add_argument('--out_dir', default='attention',
                 help='where the PNG and .npz files go (a folder or gs://)')
  return p


def _clip_batches(predictor: predict.Predictor, split: str):
  """(clip id, one-clip batch) of every clip of ``split``, in order."""
  config = predictor.config
  builder = input_pipeline.build_tfds(config, progress=False)
  ds = input_pipeline.make_dataset(config, split, train=False,
                                   global_batch_size=1, builder=builder,
                                   process_index=0, process_count=1)
  for batch in ds.as_numpy_iterator():
    if batch['clip_mask'][0]:
      yield batch['clip_id'][0].decode(), batch


def choose(probs: Dict[str, np.ndarray], emotions: Sequence[str],
           top_k: int) -> List[str]:
  """Per emotion the ``top_k`` clips of highest probability (no repeats)."""
  ids = list(probs)
  table = np.stack([probs[i] for i in ids])
  chosen = []
  for e in range(len(emotions)):
    for i in np.argsort(-table[:, e], kind='stable')[:top_k]:
      if ids[i] not in chosen:
        chosen.append(ids[i])
  return chosen


def main(argv: Optional[Sequence[str]] = None) -> int:
  args = parser().parse_args(argv)
  platforms.leave_out_absent_tpu()  # before the first device
  try:
    predictor = predict.load(args.workdir)
  except (FileNotFoundError, ValueError) as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  if predictor.config.model != 'mesm':
    print('error: attention maps need a MESM run (model=mesm)',
          file=sys.stderr)
    return 2
  wanted = [c for c in args.clip_ids.split(',') if c]
  if args.top_k:
    probs = {cid: predictor.probabilities(b)[0]
             for cid, b in _clip_batches(predictor, args.split)}
    wanted += [c for c in choose(probs, predictor.emotions, args.top_k)
               if c not in wanted]
  if not wanted:
    print('error: name clips with --clip_ids or --top_k', file=sys.stderr)
    return 2
  out_dir, done = paths.as_path(args.out_dir), set()
  for clip_id, batch in _clip_batches(predictor, args.split):
    if clip_id not in wanted:
      continue
    p = predictor.probabilities(batch)[0]
    names = predictor.emotions
    labels = [n for n, y in zip(names, batch['labels'][0]) if y > 0.5]
    predicted = [n for i, n in enumerate(names)
                 if predictor.thresholds is not None and
                 p[i] > predictor.thresholds[i]]
    path = attention_figure.write(
        out_dir / f'{clip_id}.png', batch, predictor.attention(batch),
        f'{clip_id}: labels {", ".join(labels) or "-"}; predicted '
        f'{", ".join(predicted) or "-"}')
    print(path)
    done.add(clip_id)
  missing = [c for c in wanted if c not in done]
  if missing:
    print(f'error: not in split {args.split!r}: {missing}', file=sys.stderr)
    return 1
  return 0


if __name__ == '__main__':
  sys.exit(main())
