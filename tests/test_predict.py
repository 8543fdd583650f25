"""``mesm_jax.predict`` / ``experiments/predict.py``: serving = training path.

One tiny MESM run on a manifest of synthetic clips (each clip its own video,
half of them a span of a longer video, one with a separate wav); then every
test clip, predicted from its video, text, audio and span, must get the
probabilities that the evaluation of the built test split gives it.
"""

import json
from pathlib import Path

import jax
import numpy as np
import pytest

from data_pipelines import readers
from data_pipelines import synthetic
from experiments import predict as predict_cli
from mesm_jax import input_pipeline
from mesm_jax import predict
from mesm_jax.train import loop
from mesm_jax.train import workdir as workdir_lib

import test_train

ROOT = Path(__file__).resolve().parent.parent
LABELS = ('calm', 'joy', 'anger')


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
  """(config, workdir, manifest, predictor) of one epoch of tiny MESM on a manifest."""
  old = jax.config.read('jax_disable_most_optimizations')
  jax.config.update('jax_disable_most_optimizations', True)  # fast compiles
  tmp = tmp_path_factory.mktemp('predict')
  manifest = synthetic.write_manifest(tmp / 'clips', num_clips=9, seed=2,
                                      labels=LABELS)
  # Two frames / chunks at most: the caps cut the longer clips, two buckets.
  config = test_train.tiny_config(tmp, dataset='manifest',
                                  manifest=str(manifest), num_emotions=3,
                                  max_frames=2, max_chunks=2)
  workdir = tmp / 'work'
  loop.train_and_evaluate(config, str(workdir))
  if workdir_lib.load_config(str(workdir)) is None:  # older loop
    workdir_lib.save_config(str(workdir), config)
  yield config, workdir, manifest, predict.load(str(workdir))
  jax.config.update('jax_disable_most_optimizations', old)


def eval_probs(predictor, config, split):
  """clip id -> probabilities from the TFDS evaluation batches of ``split``."""
  out = {}
  ds = input_pipeline.make_dataset(config, split, train=False,
                                   global_batch_size=4, process_index=0,
                                   process_count=1)
  for batch in ds.as_numpy_iterator():
    probs = predictor.probabilities(batch)
    ids = batch['clip_id'][batch['clip_mask']]
    out.update({i.decode(): p for i, p in zip(ids, probs)})
  return out


def test_predict_equals_the_evaluation_of_the_built_split(trained):
  config, workdir, manifest, predictor = trained
  assert predictor.emotions == tuple(sorted(LABELS))
  assert predictor.labels_from == 'checkpoint'
  best = json.loads((workdir / 'results.json').read_text())['thresholds']
  assert predictor.thresholds.tolist() == [best[n]
                                           for n in predictor.emotions]
  seen = {}
  for split in ('valid', 'test'):
    expected = eval_probs(predictor, config, split)
    clips = readers.read_split('manifest', manifest, split).clips
    assert clips and set(expected) == {c.clip_id for c in clips}
    for clip in clips:
      got = predictor.predict(clip.video_path, text=clip.text,
                              audio=clip.audio_path or None, start=clip.start,
                              end=clip.end)
      probs = [got['emotions'][n]['probability'] for n in predictor.emotions]
      np.testing.assert_allclose(probs, expected[clip.clip_id], atol=1e-3)
      seen[clip.clip_id] = probs
      for name, e in got['emotions'].items():
        assert e['threshold'] == best[name]
        assert e['decision'] == (e['probability'] > e['threshold'])
      used = got['used']
      assert 1 <= used['frames'] <= config.max_frames
      assert used['frames'] == min(used['frames_in_clip'], config.max_frames)
      assert used['frames_capped'] == (used['frames_in_clip'] > 2)
      assert used['chunks'] == min(used['chunks_in_clip'], config.max_chunks)
      assert used['chunks_capped'] == (used['chunks_in_clip'] > 2)
      assert 0 < used['tokens'] <= config.text_max_len
  # Several clips, and they get different probabilities: the comparison is
  # not of a constant output.
  assert len(seen) >= 2
  assert len({tuple(np.round(p, 6)) for p in seen.values()}) > 1


def test_predict_follows_the_span_and_the_audio_source(trained):
  """A training clip with its own wav and one inside a longer video."""
  config, workdir, manifest, predictor = trained
  clips = readers.read_split('manifest', manifest, 'train').clips
  expected = eval_probs(predictor, config, 'train')
  wav = [c for c in clips if c.audio_path]
  span = [c for c in clips if c.start is not None and not c.audio_path]
  assert wav and span
  for clip in (wav[0], span[0]):
    got = predictor.predict(clip.video_path, text=clip.text,
                            audio=clip.audio_path or None, start=clip.start,
                            end=clip.end)
    probs = [got['emotions'][n]['probability'] for n in predictor.emotions]
    np.testing.assert_allclose(probs, expected[clip.clip_id], atol=1e-3)
  # The whole longer video is another input: other frames and audio.
  whole = predictor.features(span[0].video_path, text=span[0].text)[1]
  part = predictor.features(span[0].video_path, text=span[0].text,
                            start=span[0].start, end=span[0].end)[1]
  assert whole['frames_in_clip'] > part['frames_in_clip']


def test_mesm_without_text_and_bad_workdirs_are_clear_errors(trained, tmp_path):
  _, workdir, manifest, predictor = trained
  clip = readers.read_split('manifest', manifest, 'test').clips[0]
  for text in (None, '', '  '):
    with pytest.raises(ValueError, match='MESM.*transcript|transcript.*MESM'):
      predictor.predict(clip.video_path, text=text)
  with pytest.raises(FileNotFoundError, match='config.json'):
    predict.load(str(tmp_path))
  with pytest.raises(ValueError, match='best'):
    predict.load(str(workdir), checkpoint='first')


def test_command_line_writes_json(trained, tmp_path, capsys, monkeypatch):
  _, workdir, manifest, predictor = trained
  loads = []

  def load(*args):  # the fixture's predictor: a load costs seconds
    loads.append(args)
    return predictor

  monkeypatch.setattr(predict_cli.predict, 'load', load)
  clip = readers.read_split('manifest', manifest, 'test').clips[0]
  out = tmp_path / 'pred.json'
  args = ['--workdir', str(workdir), '--text', clip.text, '--out', str(out),
          clip.video_path]
  if clip.start is not None:
    args[-1:-1] = ['--start', str(clip.start), '--end', str(clip.end)]
  assert predict_cli.main(args) == 0
  assert loads == [(str(workdir), 'best')]
  got = json.loads(out.read_text())
  assert [p['video'] for p in got['predictions']] == [clip.video_path]
  direct = predictor.predict(
      clip.video_path, text=clip.text, start=clip.start, end=clip.end)
  for name, e in got['predictions'][0]['emotions'].items():
    assert e['probability'] == pytest.approx(
        direct['emotions'][name]['probability'], abs=1e-6)
  # No text for MESM: exit status 2 and a one-line reason.
  capsys.readouterr()
  assert predict_cli.main(args[:2] + args[4:]) == 2
  assert 'transcript' in capsys.readouterr().err
  # A video that cannot be read: its error in the JSON, exit status 1.
  assert predict_cli.main(args[:-1] + [str(tmp_path / 'none.mp4')]) == 1
  assert 'error' in json.loads(out.read_text())['predictions'][0]
