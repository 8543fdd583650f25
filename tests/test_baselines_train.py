"""The paper's baselines through the real training path (issue 18).

Synthetic feature sequences (``features_e2e``, built once for the module
from the synthetic raw data's labels and splits) -> ``make_dataset``
-> ``loop.train_and_evaluate`` with ``--model lf_lstm`` etc.: the same
loop, metrics, checkpoints and results.json as FE2E / MESM.
"""

import csv
import json
import pickle

import chex
import jax
import numpy as np
import pytest

import compile_settings

from data_pipelines import features
from data_pipelines import synthetic
from data_pipelines.tfds import features as features_tfds
from data_pipelines.tfds import prepare
from experiments import sweep, tables, visualize
import mesm_jax
from mesm_jax import configs
from mesm_jax import feature_pipeline
from mesm_jax import models
from mesm_jax import predict
from mesm_jax.train import loop
from mesm_jax.train import metrics as metrics_lib

CLIPS = 80
CAPS = dict(max_text_feats=16, max_audio_feats=15, max_vision_feats=24)


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
  """The synthetic raw data and its features_e2e data, built once."""
  d = tmp_path_factory.mktemp('tfds')
  prepare.prepare_features(prepare.FeatureRequest('synthetic'), data_dir=d, synthetic_clips=CLIPS,
                           progress=False)
  return d


def baseline_config(data_dir, model, **overrides):
  c = mesm_jax.get_config('smoke', model)
  c.dataset = 'synthetic'
  c.data_dir = str(data_dir)
  c.epochs = 2
  c.early_stop = 0
  c.baseline_layers = 1         # MulT, EmoEmbs: one layer (CPU compile time)
  c.batch_size = 8
  c.eval_batch_size = 16
  c.lr = 1e-3
  c.checkpoint_every_steps = 1000
  c.log_every_steps = 5
  c.deterministic_input = True
  c.update(CAPS)
  with c.unlocked():
    c.synthetic_clips = CLIPS
  c.update(overrides)
  return c


def test_feature_data_uses_the_synthetic_splits_and_static_shapes(data_dir):
  config = baseline_config(data_dir, 'lf_lstm')
  builder = feature_pipeline.build_tfds(config, progress=False)
  assert builder.name == 'features_e2e'
  assert 'synthetic' in builder.builder_config.name
  raw = data_dir / prepare.SYNTHETIC_RAW / 'splits'
  for split in ('valid', 'test'):   # (the loop checks every clip is seen)
    want = sorted(l for l in (raw / f'{split}.txt').read_text().split() if l)
    ds = feature_pipeline.make_dataset(
        config, split, train=False, builder=builder, process_index=0,
        process_count=1)
    seen = []
    for batch in ds.as_numpy_iterator():
      chex.assert_shape(batch['text_feats'], (16, 16, 300))
      chex.assert_shape(batch['audio_feats'], (16, 15, 144))
      chex.assert_shape(batch['vision_feats'], (16, 24, 35))
      chex.assert_shape([batch['labels']], (16, 6))
      chex.assert_type([batch[f'{k}_mask'] for k in (
          'text_feats', 'audio_feats', 'vision_feats')], bool)
      chex.assert_shape(batch['vision_feats_mask'], (16, 24))
      real = batch['clip_mask']
      seen += [c.decode() for c in batch['clip_id'][real]]
      # padding positions hold zeros, every real clip at least one position
      assert not batch['audio_feats'][~batch['audio_feats_mask']].any()
      assert batch['text_feats_mask'][real].any(-1).all()
    assert sorted(seen) == want          # every clip exactly once
  train = feature_pipeline.make_dataset(
      config, 'train', train=True, builder=builder, process_index=0,
      process_count=1)
  sizes = [b['clip_mask'].sum() for b in train.as_numpy_iterator()]
  assert sizes and all(s == 8 for s in sizes)   # train drops the remainder
  # Two hosts: the same number of batches each (pmap's lockstep), every
  # evaluation clip once over both, half the global batch per host.
  for split, train_ in (('valid', False), ('train', True)):
    hosts = [list(feature_pipeline.make_dataset(
        config, split, train=train_, builder=builder, process_index=i,
        process_count=2).as_numpy_iterator()) for i in range(2)]
    assert len(hosts[0]) == len(hosts[1]) > 0, split
    for batches in hosts:
      for b in batches:
        chex.assert_shape(b['audio_feats'], ((8 if train_ else 16) // 2, 15,
                                             144))
    if not train_:
      seen = [c.decode() for batches in hosts for b in batches
              for c in b['clip_id'][b['clip_mask']]]
      want = sorted(l for l in (raw / 'valid.txt').read_text().split() if l)
      assert sorted(seen) == want


def test_a_data_dir_keeps_the_clip_count_it_was_generated_with(data_dir):
  """Synthetic data is generated once per data dir: another
  ``synthetic_clips`` is an error that says so, for either kind of data."""
  for build in (lambda **k: prepare.prepare_features(
                    prepare.FeatureRequest('synthetic'), **k),
                lambda **k: prepare.prepare(
                    'synthetic', prepare.builder_config('synthetic'), **k)):
    with pytest.raises(ValueError, match=f'holds {CLIPS} generated clips but '
                       'this run asks for 30'):
      build(data_dir=data_dir, synthetic_clips=30, progress=False)


def test_feature_data_from_a_pickle_joined_with_the_labels(data_dir,
                                                           tmp_path):
  """A MulT / MMSA pickle + the raw MOSEI-layout labels and split files."""
  raw = data_dir / prepare.SYNTHETIC_RAW
  truth = json.loads((raw / 'ground_truth.json').read_text())
  ids = sorted(truth)
  rng = np.random.default_rng(1)
  feats = features.synthetic_features(
      {i: np.asarray(truth[i]['labels']) for i in ids[1:]}, rng)  # 1 lacking
  no_face = ids[1]       # all-zero action units: kept, every row (zeros)
  feats[no_face]['vision'] = np.zeros_like(feats[no_face]['vision'])
  splits = {}
  for i, f in feats.items():
    splits.setdefault(truth[i]['split'], {})[i] = f
  with pytest.raises(FileNotFoundError, match='no file or folder'):
    prepare.prepare_features(
        prepare.FeatureRequest('mosei', features_pickle=str(
            tmp_path / 'mosei_feats.pkl')),
        raw_dir=raw, data_dir=tmp_path / 'tfds')
  def build(name, table):
    return prepare.prepare_features(
        prepare.FeatureRequest('mosei', features_pickle=str(
            features.write_feature_pickle(tmp_path / name, table))),
        raw_dir=raw, data_dir=tmp_path / 'tfds', splits_dir=raw / 'splits',
        progress=False)

  # Two widths in one modality: refused before anything is written.
  with pytest.raises(ValueError, match='audio features of clip .* 74 wide'):
    build('mixed.pkl', {sp: {i: {**f, 'audio': f['audio'][:, :74]}
                             if sp == 'test' else f for i, f in c.items()}
                        for sp, c in splits.items()})
  # Ids of another dataset: none found, one message naming both kinds.
  with pytest.raises(ValueError, match='none of the .* clips of split train'):
    build('other.pkl', {sp: {f'x{i}': f for i, f in c.items()}
                        for sp, c in splits.items()})
  path = features.write_feature_pickle(tmp_path / 'mosei_feats.pkl', splits)
  request = prepare.FeatureRequest('mosei', features_pickle=str(path))
  builder = prepare.prepare_features(
      request, raw_dir=raw, data_dir=tmp_path / 'tfds',
      splits_dir=raw / 'splits', progress=False)
  assert builder.builder_config.name.startswith('pickle-mosei-mosei_feats_')
  total = sum(builder.info.splits[s].num_examples
              for s in ('train', 'valid', 'test'))
  assert total == len(ids) - 1
  source = builder.info.metadata['source']
  assert sum(source['missing_features'].values()) == 1
  assert not any(source['empty_modalities'].values())
  assert builder.info.metadata['feature_dims'] == [300, 144, 35]
  split = truth[no_face]['split']
  stored = {ex['clip_id'].decode(): ex for ex in
            builder.as_dataset(split=split).as_numpy_iterator()}
  longest = max(f['vision'].shape[0] for f in splits[split].values())
  chex.assert_shape(stored[no_face]['vision_feats'], (longest, 35))
  assert not stored[no_face]['vision_feats'].any()
  # The same pickle with the labels of another raw dir: not the built data.
  with pytest.raises(prepare.SourceMismatchError, match='was built from'):
    prepare.prepare_features(
        request, raw_dir=tmp_path, data_dir=tmp_path / 'tfds',
        splits_dir=raw / 'splits', progress=False)
  ex = next(iter(builder.as_dataset(split='test').as_numpy_iterator()))
  clip = ex['clip_id'].decode()
  real = feats[clip]['audio']          # then the file's zero padding, kept
  np.testing.assert_allclose(ex['audio_feats'][:len(real)], real, rtol=1e-6)
  assert not ex['audio_feats'][len(real):].any()
  np.testing.assert_array_equal(ex['labels'], truth[clip]['labels'])


def test_feature_data_from_the_authors_iemocap_folder(tmp_path):
  """A folder as features_pickle: the MESM authors' IEMOCAP layout
  ({phase}_{text,audio,video}_features.pt) + raw IEMOCAP-layout labels."""
  raw = tmp_path / 'iemocap_raw'
  truth = synthetic.write_iemocap_raw(raw, num_dialogs=2, seed=1,
                                      utterances_per_dialog=4, half_size=32,
                                      clip_seconds=(0.5, 0.8))
  usable = [u for u, v in truth.items() if 'split' in v]
  rng = np.random.default_rng(0)
  folder = tmp_path / 'IEMOCAP_HCF_FEATURES'
  folder.mkdir()
  no_video, no_words = usable[0], usable[1]
  audio_of = {}
  for phase in ('train', 'valid', 'test'):
    text, audio, video = {}, {}, {}
    for uid in (u for u in usable if truth[u]['split'] == phase):
      side = 'L' if truth[uid]['side'] == 'left' else 'R'
      text[uid] = [] if uid == no_words else rng.random((3, 300)).tolist()
      audio_of[uid] = rng.random((770, 4))
      audio[uid] = {side: audio_of[uid]}
      if uid != no_video:
        video[uid] = {f'image_{s}_{i}': rng.random(40) for s in 'LR'
                      for i in range(2)}
    for name, table in (('text', text), ('audio', audio), ('video', video)):
      with open(folder / f'{phase}_{name}_features.pt', 'wb') as f:
        pickle.dump(table, f)
  builder = prepare.prepare_features(
      prepare.FeatureRequest('iemocap', features_pickle=str(folder)),
      raw_dir=raw, data_dir=tmp_path / 'tfds', splits_dir=raw / 'splits',
      progress=False)
  name = builder.builder_config.name
  assert name.startswith('pickle-iemocap-IEMOCAP_HCF_FEATURES_')
  source = builder.info.metadata['source']
  assert source['features_layout'] == 'iemocap_hcf'
  assert source['incomplete_features'] == 1
  assert sum(source['missing_features'].values()) == 1
  assert sum(e.get('text', 0) for e in source['empty_modalities'].values()
             ) == 1
  stored = {ex['clip_id'].decode(): ex
            for split in ('train', 'valid', 'test')
            for ex in builder.as_dataset(split=split).as_numpy_iterator()}
  assert sorted(stored) == sorted(set(usable) - {no_video})
  chex.assert_shape(stored[no_words]['text_feats'], (1, 300))
  uid = usable[2]
  rows = list(range(34)) + list(range(655, 763)) + [100, 101]
  np.testing.assert_allclose(stored[uid]['audio_feats'],
                             audio_of[uid][rows].T, rtol=1e-6)
  chex.assert_shape(stored[uid]['vision_feats'], (2, 35))
  np.testing.assert_array_equal(stored[uid]['labels'], truth[uid]['labels'])
  # Another file in the folder -> another config name.
  with open(folder / 'test_text_features.pt', 'ab') as f:
    f.write(b'\0')
  assert features_tfds.features_config(
      'pickle', str(folder), dataset='iemocap').name != name


def test_build_model_gives_the_baselines_one_parameter_group(data_dir):
  for name in configs.BASELINES:
    config = baseline_config(data_dir, name)
    vectors = np.zeros((6, 300), np.float32) if name == 'emoembs' else None
    model = models.build_model(config, feature_dims=(300, 144, 35),
                               emotion_vectors=vectors)
    assert type(model).__name__ == {
        'lf_lstm': 'LFLSTM', 'lf_trans': 'LFTrans', 'mult': 'MulT',
        'emoembs': 'EmoEmbs'}[name]
    batch = {'labels': np.zeros((2, 6), np.float32),
             'clip_mask': np.ones(2, bool)}
    for key, n, d in (('text_feats', 3, 300), ('audio_feats', 2, 144),
                      ('vision_feats', 4, 35)):
      batch[key] = np.zeros((2, n, d), np.float32)
      batch[f'{key}_mask'] = np.ones((2, n), bool)
    params = jax.eval_shape(lambda m=model, b=batch: m.init(
        jax.random.key(0), b))['params']
    labels = set(jax.tree_util.tree_leaves(models.param_labels(params)))
    assert labels == {'default'}, name          # no text group: one lr


def _chance_f1(labels: np.ndarray) -> float:
  """Average F1 of predicting every emotion present for every clip."""
  p = labels.mean(0)
  return float(np.mean(2 * p / (1 + p)))


@pytest.fixture(scope='module')
def baseline_runs(data_dir, tmp_path_factory):
  """Each baseline trained once through ``loop.train_and_evaluate``, in a
  workdir named like a sweep cell; ``sweep.run_cell`` then records its
  FLOPs as not applicable, as a sweep does.  Returns (root, results)."""
  root = tmp_path_factory.mktemp('baselines')
  results = {}
  with compile_settings.fast():  # compile time
    for model in configs.BASELINES:
      config = baseline_config(data_dir, model)
      workdir = root / f'{model}-tav-seed0'
      results[model] = loop.train_and_evaluate(config, str(workdir))
      assert sweep.run_cell(['--workdir', str(workdir), '--dataset',
                             'synthetic', '--model', model]) == 0
  return root, results


# EmoEmbs here: frozen MiniLM emotion vectors (synthetic data, no GloVe).
# Issue 25: it once stayed at test F1 0.428 (bar 0.481) because every word's
# MiniLM vector was ~the [PAD] row (the six emotion vectors' cosines 1.000:
# every emotion scored alike); features.minilm_input_embeddings fixes it.
@pytest.mark.parametrize('model', configs.BASELINES)
@pytest.mark.slow
def test_baseline_trains_through_the_real_loop(data_dir, baseline_runs,
                                               model):
  root, results = baseline_runs
  config = baseline_config(data_dir, model)
  workdir = root / f'{model}-tav-seed0'
  on_disk = json.loads((workdir / 'results.json').read_text())
  metrics = on_disk['metrics']
  assert results[model]['metrics'] == metrics
  assert on_disk['config']['model'] == model
  assert (workdir / 'checkpoints' / 'best').is_dir()
  # The same metric keys as FE2E / MESM: those of metrics.evaluate_splits,
  # the losses.
  emotions = list(on_disk['thresholds'])
  assert len(emotions) == 6
  fake = {'probs': np.full((4, 6), 0.5), 'labels': np.eye(6)[:4]}
  _, expected = metrics_lib.evaluate_splits(fake, fake, emotions, 'mosei')
  assert set(metrics) == set(expected) | {'valid/loss', 'test/loss',
                                          'train/loss'}
  # Well above chance: the synthetic features carry the labels.
  builder = feature_pipeline.build_tfds(config, progress=False)
  test_labels = np.concatenate([
      ex['labels'][None] for ex in builder.as_dataset(split='test')
      .as_numpy_iterator()])
  chance = _chance_f1(test_labels)
  print(f'{model}: test F1 avg {metrics["test/f1/avg"]:.3f} (all-positive '
        f'{chance:.3f}), WAcc avg {metrics["test/mosei_wacc/avg"]:.3f}')
  assert metrics['test/f1/avg'] > chance + 0.15, (model, metrics, chance)


@pytest.mark.slow
def test_tables_print_the_baseline_rows(baseline_runs, tmp_path, capsys):
  """Table 3/4 layout of the four baselines trained above, means from their
  results.json, FLOPs n/a (beside FE2E and MESM rows: test_sweep.py)."""
  root, results = baseline_runs
  written = tables.write_tables([str(root)], str(tmp_path / 'tables'))
  rows = list(csv.DictReader(written['synthetic_main_csv'].open()))
  assert [(r['row'], r['n']) for r in rows] == [
      ('LF-LSTM', '1'), ('LF-TRANS', '1'), ('EmoEmbs', '1'), ('MulT', '1')]
  for r in rows:
    model = r['model']
    np.testing.assert_allclose(
        float(r['avg_f1_mean']),
        100 * results[model]['metrics']['test/f1/avg'], rtol=1e-6)
  md = written['synthetic_main_md'].read_text()
  assert md.count('| n/a |') == 4            # no CNN FLOPs for a baseline
  # The command prints the same table.
  assert tables.main([str(root), '--out', str(tmp_path / 'printed')]) == 0
  printed = capsys.readouterr().out
  for name in ('LF-LSTM', 'LF-TRANS', 'EmoEmbs', 'MulT'):
    assert name in printed


@pytest.mark.slow
def test_predict_refuses_a_baseline_workdir_with_a_reason(baseline_runs,
                                                          capsys):
  root, _ = baseline_runs
  with pytest.raises(ValueError, match="baseline 'mult'.*feature sequences"):
    predict.load(str(root / 'mult-tav-seed0'))
  assert visualize.main(['--workdir', str(root / 'lf_lstm-tav-seed0')]) == 2
  err = capsys.readouterr().err
  assert "baseline 'lf_lstm'" in err and 'Traceback' not in err
