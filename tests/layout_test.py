"""The package's layout: data flows one way, from the foundation to the stage programs."""

import ast
import os

import pytest

PACKAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'rob_gan_jax')
STAGE_PROGRAMS = {'cotrain', 'finetune', 'evaluate', 'api'}


def package_imports(path):
  """Names of rob_gan_jax modules imported by the file at `path` (top-level module names)."""
  names = set()
  for node in ast.walk(ast.parse(open(path).read())):
    if isinstance(node, ast.ImportFrom) and node.module == 'rob_gan_jax':
      names.update(alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom) and (node.module or '').startswith('rob_gan_jax.'):
      names.add(node.module.split('.')[1])
  return names


def modules():
  for root, _, files in os.walk(PACKAGE):
    for name in files:
      if name.endswith('.py') and name != '__init__.py':
        yield os.path.relpath(os.path.join(root, name), PACKAGE)[:-3], os.path.join(root, name)


@pytest.mark.parametrize('module, path', sorted(modules()))
def test_no_module_imports_a_stage_program(module, path):
  imported = package_imports(path) & STAGE_PROGRAMS
  assert not imported - {module}, f'{module} imports the stage program(s) {imported}'


def test_every_stage_program_exists():
  assert STAGE_PROGRAMS <= {module for module, _ in modules()}
