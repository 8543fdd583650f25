"""``python -m data_pipelines.tfds build ...``: TFDS's own ``tfds build``.

The ``tfds`` entry point of tensorflow-datasets 4.9 imports apache_beam (for
its ``convert_format`` command) before it can build anything; this runs the
same ``build`` command, with the same arguments, without apache_beam:

  python -m data_pipelines.tfds build data_pipelines/tfds/mosei_e2e.py \\
      --config albert --manual_dir /data/CMU-MOSEI \\
      --data_dir ~/tensorflow_datasets

With ``--beam_pipeline_options "runner=DirectRunner,direct_num_workers=4"``
(any Beam runner's options, comma-separated ``key=value``) the clips are
preprocessed by Apache Beam (``pip install -e '.[beam]'``) instead of local
worker processes: the same data, the same per-clip cache (docs/data.md).
(With apache-beam installed, ``tfds build`` takes exactly these arguments.)
"""

import sys

from absl import app
from tensorflow_datasets.scripts.cli import build
from tensorflow_datasets.scripts.cli import cli_utils

from data_pipelines import beam as dp_beam

_parse_build_flags = cli_utils.make_flags_parser(
    build.Args, description='Builds TFDS datasets (= `tfds build`).')


def _parse_flags(argv: list[str]) -> build.Args:
  if len(argv) < 2 or argv[1] != 'build':
    sys.exit('usage: python -m data_pipelines.tfds build DATASET '
             '[--config NAME] --manual_dir RAW_DIR [--data_dir DIR] '
             '[--beam_pipeline_options "runner=DirectRunner,..."] ...')
  return _parse_build_flags(argv[1:])


def main(args: build.Args) -> None:
  if args.generation.beam_pipeline_options:
    # TFDS drops the Beam options silently when apache_beam is missing (the
    # build would then run locally): say so instead.
    try:
      dp_beam.import_beam()
    except ImportError as e:
      sys.exit(f'--beam_pipeline_options: {e}')
  args.execute()


if __name__ == '__main__':
  app.run(main, flags_parser=_parse_flags)
