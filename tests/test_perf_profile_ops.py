"""experiments/perf/profile_ops.py: the model part of an op's name.

What a real trace of this machine holds is the script's output, not a
test."""

from experiments.perf import profile_ops


def test_part_of_reads_the_flax_module_path():
  assert profile_ops.part_of(
      'jit(fb)/jvp(audio_cnn)/audio_cnn._sparse_stage/stage4/dot_general'
  ) == 'audio stage4'
  assert profile_ops.part_of('jit(f)/visual_cnn/stem/layer/conv') == (
      'visual stem')
  assert profile_ops.part_of('jit(f)/transpose') == '(unattributed)'
  assert profile_ops.part_of("variables[1]['params']['stage3']['bn1']") == (
      'stage3')
  assert profile_ops.group_of('audio attn4') == profile_ops.SPARSE_GROUP
  assert profile_ops.group_of('block2').startswith('front')
