"""The package as pyproject.toml builds it: the wheel holds every module of rob_gan_jax, nothing
else of the repository, and imports from another directory."""

import os
import subprocess
import sys
import zipfile

import pytest

pytestmark = pytest.mark.slow  # Second lane: builds the wheel (about 10 s).

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_wheel_holds_the_package_and_imports_from_elsewhere(tmp_path):
  # No build isolation: setuptools is installed already, and the index may be out of reach.
  subprocess.run([sys.executable, '-m', 'pip', 'wheel', '-q', '--no-deps', '--no-build-isolation',
                  '-w', str(tmp_path), REPO], check=True)
  (wheel,) = tmp_path.glob('rob_gan_jax-*.whl')
  names = set(zipfile.ZipFile(wheel).namelist())
  modules = {os.path.relpath(os.path.join(root, f), REPO)
             for root, _, files in os.walk(os.path.join(REPO, 'rob_gan_jax'))
             for f in files if f.endswith('.py')}
  assert modules and modules <= names, sorted(modules - names)
  assert not [n for n in names if n.split('/')[0] in ('tests', 'configs', 'benchmarks')]
  imported = subprocess.run(
      [sys.executable, '-c', 'import rob_gan_jax.api, rob_gan_jax.evaluators as e; '
                             'print(rob_gan_jax.__file__, len(e.available()))'],
      cwd=tmp_path, env={**os.environ, 'PYTHONPATH': str(wheel)}, capture_output=True, text=True,
      check=True).stdout.split()
  assert imported[0].startswith(str(wheel)), imported  # Not the repository's copy.
  assert int(imported[1]) == len([n for n in names if n.startswith('rob_gan_jax/evaluators/')
                                  and not n.endswith('__init__.py')])
