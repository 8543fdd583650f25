"""``mesm_jax.predict`` / ``experiments/predict.py``: serving = training path.

One tiny MESM run on a manifest of synthetic clips (each clip its own video,
half of them a span of a longer video, one with a separate wav; three
single-label classes), which is also the suite's own-data training run; then
every test clip, predicted from its video, text, audio and span, must get
the probabilities that the evaluation of the built test split gives it.
"""

import json
from pathlib import Path

import jax
import matplotlib.pyplot as plt
import ml_collections
import numpy as np
import pytest

from data_pipelines import readers
from data_pipelines import synthetic
from experiments import attention_figure
from experiments import predict as predict_cli
from experiments import visualize
from mesm_jax import predict
from mesm_jax import nucleus
from mesm_jax import models
from mesm_jax import restore as restore_lib
from mesm_jax.train import checkpoint as ckpt_lib
from mesm_jax.train import flags
from mesm_jax.train import loop
from mesm_jax.train import step as step_lib
from mesm_jax.train import workdir as workdir_lib

import compile_settings
import test_train

pytestmark = pytest.mark.slow  # a trained run is the fixture

ROOT = Path(__file__).resolve().parent.parent
LABELS = ('calm', 'joy', 'anger')


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
  """(config, workdir, manifest, predictor) of one epoch of tiny MESM on a manifest."""
  with compile_settings.fast():
    tmp = tmp_path_factory.mktemp('predict')
    manifest = synthetic.write_manifest(tmp / 'clips', num_clips=9, seed=2,
                                        labels=LABELS)
    # Two frames / chunks at most: the caps cut the longer clips, two
    # buckets.
    config = test_train.tiny_config(tmp, dataset='manifest',
                                    manifest=str(manifest), num_emotions=3,
                                    max_frames=2, max_chunks=2)
    workdir = tmp / 'work'
    loop.train_and_evaluate(config, str(workdir))
    assert workdir_lib.load_config(str(workdir)) is not None
    yield config, workdir, manifest, predict.load(str(workdir))


def test_manifest_run_sizes_names_and_scores_its_labels(trained):
  """Your own clips: a manifest -> TFDS -> one epoch -> its label names.

  Three single-label classes (IEMOCAP-like: IEMOCAP's metrics); the command
  line sizes the labels from the manifest.
  """
  config, workdir, manifest, _ = trained
  parsed, _ = flags.parse(['--dataset', 'manifest', '--manifest',
                           str(manifest)])
  assert parsed.num_emotions == 3
  on_disk = json.loads((workdir / 'results.json').read_text())
  assert set(on_disk['thresholds']) == set(LABELS)
  metrics = on_disk['metrics']
  for name in ('acc', 'f1'):        # IEMOCAP's headline pair
    for key in LABELS + ('avg',):
      assert 0.0 <= metrics[f'test/{name}/{key}'] <= 1.0
  assert not any('mosei_wacc' in k for k in metrics)
  # A config whose num_emotions disagrees with the data is refused.
  wrong = ml_collections.ConfigDict(config.to_dict())
  wrong.num_emotions = 6
  with pytest.raises(ValueError, match='--num_emotions 3'):
    loop.train_and_evaluate(wrong, str(workdir.parent / 'work6'))


def eval_probs(config, workdir, split):
  """clip id -> probabilities of the training loop's own evaluation: the
  best checkpoint restored as a training state (``loop.Context``, as
  ``--eval_only`` does) and the runner's eval step on the built split's
  evaluation batches; no code of ``mesm_jax.predict`` or ``restore``'s
  inference path involved."""
  ctx = loop.Context(config, str(workdir))
  state_dict, _ = ctx.ckpts.restore_best(ctx.host_target())
  state = ctx.runner.put_state(ctx.restored_state(state_dict))
  pos_weight = loop.compute_pos_weight(ctx.data)
  out = {}
  for batch in ctx.data.eval_batches(split, ctx.eval_batch_size):
    got = ctx.runner.eval_step(state, batch, pos_weight)
    mask = np.asarray(got['clip_mask']).astype(bool)
    ids = np.asarray(batch['clip_id'])[mask]
    out.update({i.decode(): p for i, p in
                zip(ids, np.asarray(got['probs'])[mask])})
  ctx.ckpts.close()
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
    expected = eval_probs(config, workdir, split)
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
  expected = eval_probs(config, workdir, 'train')
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


def test_attention_maps_follow_eq_2_and_3(trained, tmp_path):
  """Per layer: probabilities sum to 1 over active positions, the nucleus
  is ``nucleus_mask`` of them, kept counts are the model's kept_* stats; the
  figure has its panels and differs between clips."""
  config, _, manifest, predictor = trained
  clips = [readers.read_split('manifest', manifest, s).clips[0]
           for s in ('valid', 'test')]
  pngs = []
  for clip in clips:
    batch, _ = predictor.features(clip.video_path, text=clip.text,
                                  audio=clip.audio_path or None,
                                  start=clip.start, end=clip.end)
    attention = predictor.attention(batch)
    assert sorted(attention) == [f'{b}/stage{s}' for b in ('audio', 'visual')
                                 for s in (3, 4, 5)]
    out = predictor._apply_sown(  # pylint: disable=protected-access
        predictor._variables, step_lib.model_inputs(batch))[0]  # pylint: disable=protected-access
    for key, arrays in attention.items():
      branch, stage = key.split('/')
      real = batch['face_mask' if branch == 'visual' else 'spec_mask'][0]
      probs, keep, active = (arrays[k][0][real] for k in ('probs', 'keep',
                                                          'active'))
      n = probs.shape[1] * probs.shape[2]
      flat_p, flat_a = probs.reshape(-1, n), active.reshape(-1, n)
      np.testing.assert_allclose(flat_p.sum(-1), 1.0, rtol=1e-5)
      assert not flat_p[~flat_a].any()          # zero off the active set
      np.testing.assert_array_equal(
          keep.reshape(-1, n),
          np.asarray(nucleus.nucleus_mask(flat_p, config.top_p, flat_a)))
      kept = keep.reshape(-1, n).sum(-1).mean() / n
      stat = float(out['stats'][f'kept_{branch[0]}_{stage}'])
      assert kept == pytest.approx(stat, rel=1e-5)
    png = attention_figure.write(tmp_path / f'{clip.clip_id}.png', batch,
                                 attention, clip.clip_id)
    image = plt.imread(png)
    assert image.shape[0] > 400 and image.shape[1] > 200
    npz = np.load(png.with_suffix('.npz'))
    np.testing.assert_array_equal(npz['visual/stage3/keep'],
                                  attention['visual/stage3']['keep'])
    # Every panel row has content (not one flat colour).
    rows = np.array_split(image[..., :3].mean(-1), 8, axis=0)[1:-1]
    assert all(r.std() > 0.01 for r in rows)
    pngs.append(image)
  assert pngs[0].shape != pngs[1].shape or np.abs(pngs[0] - pngs[1]).mean() > 0


def test_visualize_draws_the_most_confident_clips(trained, tmp_path,
                                                  monkeypatch):
  """experiments/visualize.py on the built split: one figure per chosen clip."""
  _, workdir, manifest, predictor = trained
  monkeypatch.setattr(visualize.predict, 'load', lambda *a: predictor)
  out = tmp_path / 'figs'
  assert visualize.main(['--workdir', str(workdir), '--split', 'valid',
                         '--top_k', '1', '--out_dir', str(out)]) == 0
  valid = {c.clip_id for c in readers.read_split('manifest', manifest,
                                                 'valid').clips}
  drawn = {p.stem for p in out.glob('*.png')}
  assert drawn and drawn <= valid
  assert {p.stem for p in out.glob('*.npz')} == drawn
  probs = {cid: predictor.probabilities(b)[0] for cid, b in
           visualize._clip_batches(predictor, 'valid')}  # pylint: disable=protected-access
  ids = list(probs)
  table = np.stack([probs[i] for i in ids])     # per emotion, its argmax clip
  assert drawn == {ids[int(np.argmax(table[:, e]))]
                   for e in range(table.shape[1])}


def test_fe2e_predict_equals_the_evaluation_too(trained, tmp_path):
  """FE2E (no attention): the serving path equals the evaluation as well.

  Its weights need no training for that: a fresh FE2E state saved as the
  best checkpoint of a work directory that reads the same built data.
  """
  config, _, manifest, _ = trained
  fe2e = ml_collections.ConfigDict(config.to_dict())
  fe2e.model = 'fe2e'
  workdir = tmp_path / 'fe2e'
  workdir_lib.save_config(str(workdir), fe2e)
  model = restore_lib.build_model(fe2e)
  sample = {k: np.zeros(s.shape, s.dtype)      # one all-zero one-frame clip
            for k, s in models.batch_spec(fe2e, 1, 1, 1).items()}
  state = loop.init_state(fe2e, model, sample)
  ckpts = ckpt_lib.Checkpoints(str(workdir))
  ckpts.save_best(0, state.to_dict(), {
      'epoch': 0, 'step': 0, 'emotions': sorted(LABELS),
      'thresholds': [0.5] * len(LABELS), 'metrics': {}})
  ckpts.close()
  predictor = predict.load(str(workdir))
  with pytest.raises(ValueError, match='FE2E has no cross-modal attention'):
    predictor.attention(sample)
  expected = eval_probs(fe2e, workdir, 'test')
  for clip in readers.read_split('manifest', manifest, 'test').clips:
    got = predictor.predict(clip.video_path, text=clip.text,
                            audio=clip.audio_path or None, start=clip.start,
                            end=clip.end)
    probs = [got['emotions'][n]['probability'] for n in predictor.emotions]
    np.testing.assert_allclose(probs, expected[clip.clip_id], atol=1e-3)


def test_command_line_reads_a_csv_of_clips(trained, tmp_path, monkeypatch):
  """--clips: the dataset's own manifest as input; each row its own clip."""
  _, workdir, manifest, predictor = trained
  monkeypatch.setattr(predict_cli.predict, 'load', lambda *a: predictor)
  out = tmp_path / 'pred.json'
  assert predict_cli.main(['--workdir', str(workdir), '--clips',
                           str(manifest), '--out', str(out)]) == 0
  got = {p['clip_id']: p for p in json.loads(out.read_text())['predictions']}
  clips = [c for s in ('train', 'valid', 'test')
           for c in readers.read_split('manifest', manifest, s).clips]
  assert set(got) == {c.clip_id for c in clips}
  for clip in clips[:2]:
    direct = predictor.predict(clip.video_path, text=clip.text,
                               audio=clip.audio_path or None,
                               start=clip.start, end=clip.end)
    for name, e in got[clip.clip_id]['emotions'].items():
      assert e['probability'] == pytest.approx(
          direct['emotions'][name]['probability'], abs=1e-6)


def test_predict_needs_neither_the_training_loop_nor_an_optimizer():
  import subprocess, sys  # pylint: disable=g-import-not-at-top,multiple-imports
  code = ('import sys, mesm_jax.predict; print(sorted(m for m in sys.modules '
          "if m.startswith(('mesm_jax.train.', 'optax'))))")
  out = subprocess.run([sys.executable, '-c', code], capture_output=True,
                       text=True, check=True)
  assert out.stdout.split('\n')[0] == ("['mesm_jax.train.checkpoint', "
                                       "'mesm_jax.train.workdir']")
