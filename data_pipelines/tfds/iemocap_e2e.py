"""TFDS builder ``iemocap_e2e``: IEMOCAP utterances for end-to-end training.

  tfds build data_pipelines/tfds/iemocap_e2e.py --config albert \
      --manual_dir /data/IEMOCAP_full_release --data_dir ~/tensorflow_datasets

Six classes, one per clip (anger, excited, frustrated, happy, neutral, sad:
ang, exc, fru, hap, neu, sad),
trained as six binary outputs.  Splits: the authors' published ids (train
5162, valid 737, test 1481).
"""

from data_pipelines.readers import iemocap as iemocap_reader
from data_pipelines.tfds import base

_INSTRUCTIONS = """\
Put ONE of these layouts in the manual dir (`--manual_dir` of the TFDS build,
`--raw_dir` of experiments/run.py):

1. The IEMOCAP full release, obtained by request from USC SAIL
   (https://sail.usc.edu/iemocap/, release form on that page):
   Session<n>/dialog/avi/DivX/<dialog>.avi, Session<n>/dialog/wav/<dialog>.wav,
   Session<n>/dialog/transcriptions/ and Session<n>/dialog/EmoEvaluation/,
   unpacked as they come (the IEMOCAP_full_release folder).
2. The authors' processed folders (github.com/wenliangdai/Multimodal-End2end-Sparse,
   data instructions in its README): IEMOCAP_RAW_PROCESSED/<Session_dialog>/
   <utterance id>/ with image_L_<i>.jpg, image_R_<i>.jpg, audio_L.wav,
   audio_R.wav, and meta.pkl.

The speaker's half of each video (and the matching audio channel) is used.
Faces are detected with MTCNN: expect hours on a CPU; an interrupted build
resumes from its per-clip cache.
"""


class IemocapE2e(base.E2EBuilder):
  """IEMOCAP clips: faces, mel chunks, transcript tokens, 6 classes."""

  DATASET = 'iemocap'
  EMOTIONS = iemocap_reader.EMOTIONS   # label vector order: ang .. sad
  MULTI_LABEL = False                  # one class per utterance
  MANUAL_DOWNLOAD_INSTRUCTIONS = _INSTRUCTIONS
  BUILDER_CONFIGS = base.named_configs(base.E2EConfig(
      name='synthetic', text_model='minilm', text_max_len=24,
      face_detector='mtcnn', synthetic=True,
      description='Generated clips in the IEMOCAP full-release layout '
      '(data_pipelines.synthetic.write_iemocap_raw), their own split files.'))
  DEFAULT_BUILDER_CONFIG_NAME = 'albert'
  CITATION = """
@article{busso-etal-2008-iemocap,
  title = {{IEMOCAP}: Interactive Emotional Dyadic Motion Capture Database},
  author = {Busso, Carlos and Bulut, Murtaza and Lee, Chi-Chun and
            Kazemzadeh, Abe and Mower, Emily and Kim, Samuel and
            Chang, Jeannette N. and Lee, Sungbok and Narayanan, Shrikanth S.},
  journal = {Language Resources and Evaluation},
  volume = {42},
  number = {4},
  pages = {335--359},
  year = {2008},
}"""
