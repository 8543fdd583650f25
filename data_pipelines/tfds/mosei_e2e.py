"""TFDS builder ``mosei_e2e``: CMU-MOSEI utterances for end-to-end training.

  tfds build data_pipelines/tfds/mosei_e2e.py --config albert \
      --manual_dir /data/CMU-MOSEI --data_dir ~/tensorflow_datasets

Six emotions, several may be present (an emotion is on when the annotators'
summed score is above 0).  Splits: the authors' published ids (train 14524,
valid 1765, test 4188 listed; clips missing from the release are skipped and
logged by the preprocessing).
"""

from data_pipelines.readers import mosei as mosei_reader
from data_pipelines.tfds import base

_INSTRUCTIONS = """\
Put ONE of these layouts in the manual dir (`--manual_dir` of the TFDS build,
`--raw_dir` of experiments/run.py):

1. The CMU-MOSEI raw release from the CMU MultiComp lab
   (http://multicomp.cs.cmu.edu/resources/cmu-mosei-dataset/, the
   "Raw" archive of the CMU Multimodal SDK): Audio/WAV_16000/<video>.wav,
   Videos/Full/Combined/<video>.mp4, Transcript/Combined/<video>.txt and
   Labels/*.csv (annotator batches), unpacked as they come.
2. The authors' processed folders (github.com/wenliangdai/Multimodal-End2end-Sparse,
   data instructions in its README): MOSEI_RAW_PROCESSED/<clip id>/image_<i>.jpg
   + audio.wav, and meta.pkl.

Faces are detected with MTCNN on every sampled frame: expect hours on a CPU;
an interrupted build resumes from its per-clip cache.
"""


class MoseiE2e(base.E2EBuilder):
  """CMU-MOSEI clips: faces, mel chunks, transcript tokens, 6 emotions."""

  DATASET = 'mosei'
  EMOTIONS = mosei_reader.EMOTIONS   # label vector order
  MANUAL_DOWNLOAD_INSTRUCTIONS = _INSTRUCTIONS
  BUILDER_CONFIGS = base.named_configs(base.E2EConfig(
      name='synthetic', text_model='minilm', text_max_len=24,
      face_detector='mtcnn', synthetic=True,
      description='Generated clips in the MOSEI raw layout '
      '(data_pipelines.synthetic.write_mosei_raw), their own split files.'))
  DEFAULT_BUILDER_CONFIG_NAME = 'albert'
  CITATION = """
@inproceedings{zadeh-etal-2018-multimodal,
  title = {Multimodal Language Analysis in the Wild: {CMU-MOSEI} Dataset and
           Interpretable Dynamic Fusion Graph},
  author = {Zadeh, AmirAli and Liang, Paul Pu and Poria, Soujanya and
            Cambria, Erik and Morency, Louis-Philippe},
  booktitle = {Proceedings of ACL 2018},
  year = {2018},
}"""
