"""The baselines on feature files in each real layout, at the files' widths.

Small generated files in the layouts the originals read (MESM.md,
"Baselines of Tables 3 and 4"):

* the MESM authors' MOSEI per-split pickles
  (``MOSEI_HCF_FEATURES/mosei_senti_hcf_{train,valid,test}.pkl``, each a
  dict of dense arrays ``id``, ``vision`` 35-d, ``audio`` 74-d, ``text``
  300-d), as a folder and as the three files;
* MulT's pickle (one dict of splits, ``id`` rows ``(video, start, end)`` as
  bytes, 74-d COVAREP audio);
* the MESM authors' IEMOCAP folder (``{phase}_{text,audio,video}_features.pt``).

Each layout is built once (a module-scoped fixture); every baseline is
built at the widths the data holds, and one baseline per layout trains one
epoch through the real loop and is evaluated.  Sizes are tiny (one
layer, short caps, a handful of clips) to keep the compile time down.
"""

import json
import pickle

import jax
import numpy as np
import pytest

import compile_settings

from data_pipelines import readers
from data_pipelines import synthetic
from data_pipelines.tfds import prepare
import mesm_jax
from mesm_jax import configs
from mesm_jax import models
from mesm_jax.train import data as train_data
from mesm_jax.train import loop

SPLITS = ('train', 'valid', 'test')
WIDTHS = {'text': 300, 'audio': 74, 'vision': 35}   # MulT's / MESM's MOSEI


def _dense(clips, length):
  """[N, length, D] zero padded at the end, as the pickles store them."""
  out = np.zeros((len(clips), length, clips[0].shape[1]), np.float32)
  for i, c in enumerate(clips):
    out[i, :len(c)] = c
  return out


def _mosei_tables(raw, rng):
  """Per split: the labels' clips and a dense table (ids in project form)."""
  tables = {}
  for split in SPLITS:
    clips = readers.read_split('mosei', raw, split,
                               splits_dir=raw / 'splits').clips
    feats = {m: [rng.standard_normal((int(rng.integers(2, 7)), d))
                 .astype(np.float32) for _ in clips]
             for m, d in WIDTHS.items()}
    tables[split] = (clips, {
        'id': np.array([c.clip_id for c in clips]),
        'text': _dense(feats['text'], 8), 'audio': _dense(feats['audio'], 9),
        'vision': _dense(feats['vision'], 10),
        'labels': np.stack([c.labels for c in clips])})
  return tables


@pytest.fixture(scope='module')
def layouts(tmp_path_factory):
  """The three layouts' files, their labels' raw data, and the built data."""
  root = tmp_path_factory.mktemp('layouts')
  raw = root / 'mosei_raw'
  synthetic.write_mosei_raw(raw, num_clips=20, seed=3, frame_size=(32, 24),
                            clip_seconds=(0.5, 0.8))
  rng = np.random.default_rng(0)
  tables = _mosei_tables(raw, rng)
  # The MESM authors' MOSEI files: one per split.
  hcf = root / 'MOSEI_HCF_FEATURES'
  hcf.mkdir()
  for split, (_, table) in tables.items():
    with open(hcf / f'mosei_senti_hcf_{split}.pkl', 'wb') as f:
      pickle.dump({k: table[k] for k in ('id', 'vision', 'audio', 'text')}, f)
  # MulT's: one dict of splits, ids (video, start, end) as bytes.
  mult = {}
  for split, (clips, table) in tables.items():
    rows = [[c.clip_id.rpartition('_')[0].encode(), f'{c.start:.3f}'.encode(),
             f'{c.end:.3f}'.encode()] for c in clips]
    mult[split] = {**table, 'id': np.array(rows)}
  mult_path = root / 'mosei_senti_data_noalign.pkl'
  with open(mult_path, 'wb') as f:
    pickle.dump(mult, f)
  # The MESM authors' IEMOCAP folder.
  iemocap_raw = root / 'iemocap_raw'
  truth = synthetic.write_iemocap_raw(iemocap_raw, num_dialogs=2, seed=2,
                                      utterances_per_dialog=8, half_size=32,
                                      clip_seconds=(0.5, 0.7))
  folder = root / 'IEMOCAP_HCF_FEATURES'
  folder.mkdir()
  for phase in SPLITS:
    text, audio, video = {}, {}, {}
    for uid, v in truth.items():
      if v.get('split') != phase:
        continue
      side = 'L' if v['side'] == 'left' else 'R'
      text[uid] = rng.standard_normal((4, 300)).tolist()
      audio[uid] = {side: rng.standard_normal((770, 3))}
      video[uid] = {f'image_{s}_{i}': rng.random(40) for s in 'LR'
                    for i in range(3)}
    for name, table in (('text', text), ('audio', audio), ('video', video)):
      with open(folder / f'{phase}_{name}_features.pt', 'wb') as f:
        pickle.dump(table, f)
  return {
      'mesm_mosei': dict(dataset='mosei', raw=raw, features=str(hcf),
                         widths=(300, 74, 35), tables=tables),
      'mult_rows': dict(dataset='mosei', raw=raw, features=str(mult_path),
                        widths=(300, 74, 35), tables=tables),
      'mesm_iemocap': dict(dataset='iemocap', raw=iemocap_raw,
                           features=str(folder), widths=(300, 144, 35)),
      'root': root}


def layout_config(layout, model, data_dir):
  c = mesm_jax.get_config('smoke', model)
  c.dataset = layout['dataset']
  c.raw_dir = str(layout['raw'])
  c.splits_dir = str(layout['raw'] / 'splits')
  c.features_pickle = layout['features']
  c.data_dir = str(data_dir)
  c.epochs = 1
  c.early_stop = 0
  c.baseline_layers = 1
  c.batch_size = 4
  c.eval_batch_size = 8
  c.checkpoint_every_steps = 1000
  c.log_every_steps = 5
  c.deterministic_input = True
  c.update(max_text_feats=6, max_audio_feats=6, max_vision_feats=6)
  return c


def test_authors_mosei_files_as_a_folder_or_the_three_files(layouts):
  """Every frame of the dense arrays kept (padding included), ids as
  written, the files' widths in the data; the three files comma-separated
  give the same data under another name."""
  layout = layouts['mesm_mosei']
  data_dir = layouts['root'] / 'tfds_check'
  names = []
  for source in (layout['features'], ','.join(
      f'{layout["features"]}/mosei_senti_hcf_{s}.pkl' for s in SPLITS)):
    builder = prepare.prepare_features(
        prepare.FeatureRequest('mosei', features_pickle=source),
        raw_dir=layout['raw'], data_dir=data_dir,
        splits_dir=layout['raw'] / 'splits', progress=False)
    names.append(builder.builder_config.name)
    assert builder.info.metadata['feature_dims'] == [300, 74, 35]
    assert builder.info.metadata['source']['features_layout'] == 'mosei_hcf'
    for split in SPLITS:
      clips, table = layout['tables'][split]
      stored = {ex['clip_id'].decode(): ex for ex in
                builder.as_dataset(split=split).as_numpy_iterator()}
      assert sorted(stored) == sorted(c.clip_id for c in clips)
      for i, clip in enumerate(clips):
        ex = stored[clip.clip_id]
        np.testing.assert_array_equal(ex['audio_feats'], table['audio'][i])
        np.testing.assert_array_equal(ex['vision_feats'], table['vision'][i])
        np.testing.assert_array_equal(ex['text_feats'], table['text'][i])
  assert names[0] != names[1]


def test_mult_time_rows_map_to_the_labels_clip_ids(layouts):
  layout = layouts['mult_rows']
  builder = prepare.prepare_features(
      prepare.FeatureRequest('mosei', features_pickle=layout['features']),
      raw_dir=layout['raw'], data_dir=layouts['root'] / 'tfds_check',
      splits_dir=layout['raw'] / 'splits', progress=False)
  source = builder.info.metadata['source']
  assert source['features_layout'] == 'mult_mmsa'
  assert not any(source['missing_features'].values())
  for split in SPLITS:
    clips, table = layout['tables'][split]
    stored = {ex['clip_id'].decode(): ex for ex in
              builder.as_dataset(split=split).as_numpy_iterator()}
    for i, clip in enumerate(clips):
      np.testing.assert_array_equal(stored[clip.clip_id]['audio_feats'],
                                    table['audio'][i])
      np.testing.assert_array_equal(stored[clip.clip_id]['labels'],
                                    clip.labels)


def test_a_width_lf_trans_cannot_use_is_a_clear_error():
  config = mesm_jax.get_config('smoke', 'lf_trans')
  with pytest.raises(ValueError, match=r'audio features are 73 wide.*2 '
                     r'attention heads.*Fix'):
    models.build_model(config, feature_dims=(300, 73, 35))
  config.modalities = 'tv'                   # without audio: fine
  models.build_model(config, feature_dims=(300, 73, 35))


# One run of the real loop per layout (compile time on 2 CPU cores), each
# with another baseline; every baseline is built on every layout at its
# widths and run abstractly on a real batch
# (``test_every_baseline_builds_...``), and all four train through the loop
# in tests/test_baselines_train.py (EmoEmbs there and in test_recipes.py).
TRAINED = {'mesm_mosei': ('lf_trans',), 'mult_rows': ('mult',),
           'mesm_iemocap': ('lf_lstm',)}


@pytest.fixture(scope='module')
def trained(layouts):
  """The baselines of ``TRAINED`` trained one epoch and evaluated."""
  results = {}
  with compile_settings.fast():  # compile time
    for name, baselines in TRAINED.items():
      for model in baselines:
        config = layout_config(layouts[name], model,
                               layouts['root'] / f'tfds_{name}')
        workdir = layouts['root'] / 'runs' / f'{name}-{model}'
        results[name, model] = (config, workdir, loop.train_and_evaluate(
            config, str(workdir)))
  return results


def _input_widths(net, data):
  """Parameter shapes of ``net`` initialised (abstractly) on a real batch
  of ``data``, and the abstract logits of that batch."""
  sample = {k: v for k, v in data.sample_batch(8).items()
            if k != 'clip_id'}
  rngs = {'params': jax.random.key(0), 'dropout': jax.random.key(0)}
  variables = jax.eval_shape(lambda b: net.init(rngs, b), sample)
  out = jax.eval_shape(lambda v, b: net.apply(v, b, train=False), variables,
                       sample)
  shapes = {'/'.join(str(getattr(k, 'key', k)) for k in path): leaf.shape
            for path, leaf in jax.tree_util.tree_flatten_with_path(
                variables['params'])[0]}
  return shapes, out['logits'].shape


@pytest.mark.parametrize('name', ['mesm_mosei', 'mult_rows', 'mesm_iemocap'])
def test_every_baseline_builds_at_the_files_widths(layouts, name):
  """Each baseline built as the loop builds it (``Data.feature_dims``), its
  audio input layer at the file's audio width, run on a real batch."""
  widths = layouts[name]['widths']
  for model in configs.BASELINES:
    config = layout_config(layouts[name], model,
                           layouts['root'] / f'tfds_{name}')
    data = train_data.Data(config, process_index=0, process_count=1)
    assert data.feature_dims() == widths, model
    vectors = data.emotion_vectors()[0] if model == 'emoembs' else None
    net = models.build_model(config, feature_dims=data.feature_dims(),
                             emotion_vectors=vectors)
    shapes, logits = _input_widths(net, data)
    assert logits == (8, 6), model                # eval batch, 6 emotions
    audio = {p: s for p, s in shapes.items()
             if p.startswith(('audio', 'proj_a'))}
    assert any(widths[1] in s[:-1] for s in audio.values()), (
        model, audio)


@pytest.mark.parametrize('name, model', [
    (name, model) for name, models_ in TRAINED.items() for model in models_])
@pytest.mark.slow
def test_baseline_trains_and_evaluates_on_the_layout(trained, name, model):
  config, workdir, result = trained[name, model]
  on_disk = json.loads((workdir / 'results.json').read_text())
  metrics = on_disk['metrics']
  assert result['metrics'] == metrics
  for key in ('train/loss', 'valid/loss', 'test/loss', 'test/f1/avg'):
    assert np.isfinite(metrics[key]), (model, key)
  assert (workdir / 'checkpoints' / 'best').is_dir()
