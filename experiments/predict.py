"""Predict the emotions of new videos with a trained work directory.

  python experiments/predict.py --workdir /tmp/demo --text "I can't believe \
it" clip.mp4
  python experiments/predict.py --workdir W --audio clip.wav --start 3.2 \
--end 7.9 --text_file clip.txt --out pred.json long_video.mp4

The work directory's saved config gives every setting (frames every
``img_interval`` ms, face detector, mel chunks, tokenizer, caps); its best
checkpoint (or ``--checkpoint latest``) gives the weights and its validation
thresholds the decisions.  Each video is one clip: its own audio track unless
``--audio``, the span ``--start`` / ``--end`` (seconds) if given.  Writes JSON
(``--out``, else standard output): per video, per emotion the probability,
threshold and decision, and what was used (frames, face fallbacks, chunks,
tokens, whether the caps cut frames or chunks).  A thin layer over
``mesm_jax.predict``.
"""

import sys  # pylint: disable=g-bad-import-order
from pathlib import Path  # pylint: disable=g-bad-import-order
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # checkout

import argparse
import csv
import json
import os
from typing import Any, Dict, List, Optional, Sequence

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')  # before TensorFlow loads

# pylint: disable=g-import-not-at-top
from data_pipelines import paths
from data_pipelines import preprocess
from experiments import attention_figure
from mesm_jax import platforms
from mesm_jax import predict
from mesm_jax.train import workdir as workdir_lib
# pylint: enable=g-import-not-at-top


def parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(
      prog='python experiments/predict.py',
      description='Emotions of new videos from a trained work directory '
                  '(its saved config, checkpoint and validation thresholds).')
  p.add_argument('videos', nargs='*', metavar='VIDEO',
                 help='video file(s); each is one clip')
  p.add_argument('--clips', default=None, metavar='CSV',
                 help='a CSV of clips instead of (or besides) VIDEO: columns '
                      'video, text and optionally audio, start, end (a '
                      "dataset manifest works too; paths relative to the "
                      "CSV's folder); --text / --audio / --start / --end "
                      'fill cells left empty')
  p.add_argument('--workdir', required=True,
                 help='work directory of a training run (config.json, '
                      'checkpoints/)')
  p.add_argument('--checkpoint', default='best', choices=predict.CHECKPOINTS,
                 help='which checkpoint: the best validation epoch (default) '
                      'or the latest state')
  text = p.add_mutually_exclusive_group()
  text.add_argument('--text', default=None,
                    help='transcript of the clip(s); needed when the model '
                         'reads text (MESM always does)')
  text.add_argument('--text_file', default=None,
                    help='file holding the transcript (instead of --text)')
  p.add_argument('--audio', default=None,
                 help='wav file to take the audio from; default: the audio '
                      "track of each video")
  p.add_argument('--start', type=float, default=None,
                 help='clip start in seconds (video and wav); default 0')
  p.add_argument('--end', type=float, default=None,
                 help='clip end in seconds; default: the end of the file')
  p.add_argument('--out', default=None,
                 help='write the JSON here; default: standard output')
  p.add_argument('--attention', default=None, metavar='DIR',
                 help='MESM: write each video\'s cross-modal attention to '
                      'DIR/<video name>.png (faces and spectrogram with the '
                      'three layers\' attention and nucleus) and .npz')
  return p


def read_clips(path: str, defaults: Dict[str, Any]) -> List[Dict[str, Any]]:
  """The clips of a CSV: video, text, audio, start, end (empty: defaults)."""
  root = Path(path).parent
  with open(path, newline='', encoding='utf-8') as f:
    rows = list(csv.DictReader(f))
  if rows and 'video' not in rows[0]:
    raise ValueError(f'{path}: no video column')
  jobs = []
  for row in rows:
    job = {'video': str(root / row['video']),
           'clip_id': (row.get('clip_id') or '').strip() or None}
    for key in ('text', 'audio', 'start', 'end'):
      cell = (row.get(key) or '').strip()
      if not cell:
        job[key] = defaults.get(key)
      elif key == 'audio':
        job[key] = str(root / cell)
      elif key in ('start', 'end'):
        job[key] = float(cell)
      else:
        job[key] = cell
    jobs.append(job)
  return jobs


def main(argv: Optional[Sequence[str]] = None) -> int:
  """Runs the command; returns the exit status (1 if a video failed)."""
  args = parser().parse_args(argv)
  platforms.leave_out_absent_tpu()  # before the first device
  text = args.text
  if args.text_file:
    text = Path(args.text_file).read_text(encoding='utf-8').strip()
  try:
    predictor = predict.load(args.workdir, args.checkpoint)
  except (FileNotFoundError, ValueError) as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  if predictor.needs_text and not (text and text.strip()) and not args.clips:
    print(f'error: {predictor.config.model.upper()} reads the transcript: '
          'pass --text or --text_file', file=sys.stderr)
    return 2
  jobs = [dict(video=v, text=text, audio=args.audio, start=args.start,
               end=args.end) for v in args.videos]
  if args.clips:
    try:
      jobs += read_clips(args.clips, dict(text=text, audio=args.audio,
                                          start=args.start, end=args.end))
    except (OSError, ValueError) as e:
      print(f'error: --clips: {e}', file=sys.stderr)
      return 2
  if not jobs:
    print('error: give VIDEO files or --clips CSV', file=sys.stderr)
    return 2
  results, failed = [], 0
  for job in jobs:
    video, clip_id = job.pop('video'), job.pop('clip_id', None)
    try:
      features = predictor.features(video, clip_id=clip_id, **job)
      result = predictor.predict(video, features=features, **job)
      if clip_id:
        result['clip_id'] = clip_id
      if args.attention and predictor.config.model == 'mesm':
        result['attention'] = str(attention_figure.write(
            paths.as_path(args.attention) /
            f'{clip_id or Path(video).stem}.png',
            features[0],
            predictor.attention(features[0]),
            f'{Path(video).name}: predicted {", ".join(result["predicted"])}'
            f' (p > validation thresholds)'))
      results.append(result)
    except (preprocess.ClipError, ValueError) as e:
      failed += 1
      print(f'error: {video}: {e}', file=sys.stderr)
      results.append({'video': video, 'error': str(e)})
  out = {'workdir': args.workdir, 'checkpoint': predictor.checkpoint,
         'emotions': list(predictor.emotions), 'predictions': results}
  if args.out:
    workdir_lib.write_json_atomic(args.out, out)
  else:
    json.dump(workdir_lib.to_jsonable(out), sys.stdout, indent=2)
    print()
  return 1 if failed else 0


if __name__ == '__main__':
  sys.exit(main())
