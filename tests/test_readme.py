"""The README is the front door: its Python runs; docs/design.md's map of
the code lists every module."""

import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = (ROOT / 'README.md').read_text()
DESIGN = (ROOT / 'docs' / 'design.md').read_text()
PACKAGES = ('data_pipelines', 'mesm_jax', 'experiments')


def _section(text: str, title: str) -> str:
  match = re.search(rf'^## {re.escape(title)}\n(.*?)(?=^## )', text,
                    re.S | re.M)
  assert match, f'no section {title!r}'
  return match.group(1)


def _python_blocks() -> list[str]:
  return re.findall(r'```python\n(.*?)```', README, re.S)


@pytest.mark.slow  # compiles whole models: not in the quick subset
@pytest.mark.usefixtures('fast_compile')
def test_readme_python_runs():
  blocks = _python_blocks()
  assert blocks, 'the README shows no Python'
  for block in blocks:
    namespace = {}
    exec(compile(block, 'README.md', 'exec'), namespace)  # pylint: disable=exec-used


def _modules(package: pathlib.Path) -> list[str]:
  """Direct modules and subpackages of a package, and their modules."""
  names = []
  for child in sorted(package.iterdir()):
    if child.name.startswith(('_', '.')):
      continue
    if child.suffix == '.py':
      names.append(child.stem)
    elif child.is_dir() and ((child / '__init__.py').is_file() or
                             child.name == 'splits'):
      names.append(child.name + '/')
      names += [m.stem for m in child.glob('*.py')
                if not m.name.startswith('_')]
  return names


@pytest.mark.parametrize('package', PACKAGES)
def test_the_map_of_the_code_lists_every_module(package):
  layout = _section(DESIGN, 'Layout: the data path is the directory path')
  words = set(re.findall(r'[\w/]+', layout.replace('.py', '')))
  missing = [name for name in _modules(ROOT / package)
             if name not in words and name.rstrip('/') not in words]
  assert not missing, f'docs/design.md lacks {package} modules: {missing}'
