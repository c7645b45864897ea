"""Executes notebooks/evaluate_checkpoint.ipynb headless against a tiny checkpoint, as a user of
the installed package would (no path edits: CI installs the package from pyproject.toml)."""

import json
import os
import shutil

import nbclient
import nbformat
import pytest

pytestmark = pytest.mark.slow  # Second lane: the notebook run headless.

NOTEBOOK = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        'notebooks', 'evaluate_checkpoint.ipynb')


def test_notebook_runs_on_a_checkpoint_whose_data_moved(trained_workdir, image_folder, tmp_path,
                                                        monkeypatch):
  # The run's own data path no longer exists (a workdir opened on another machine).
  config_path = os.path.join(trained_workdir, 'config.json')
  with open(config_path) as f:
    config = json.load(f)
  config['dataset']['image_folder'] = str(tmp_path / 'gone')
  with open(config_path, 'w') as f:
    json.dump(config, f)
  moved = str(tmp_path / 'images')
  shutil.copytree(image_folder, moved)
  monkeypatch.setenv('ROBGAN_WORKDIR', trained_workdir)
  monkeypatch.setenv('ROBGAN_IMAGE_FOLDER', moved)
  monkeypatch.setenv('ROBGAN_NUM_EXAMPLES', '20')
  monkeypatch.setenv('ROBGAN_NUM_STEPS', '2')
  notebook = nbformat.read(NOTEBOOK, as_version=4)
  assert not any('sys.path' in cell.source for cell in notebook.cells)
  nbclient.NotebookClient(notebook, timeout=300, kernel_name='python3', resources={
      'metadata': {'path': str(tmp_path)}}).execute()
  outputs = [o for cell in notebook.cells if cell.cell_type == 'code' for o in cell.outputs]
  assert not notebook.cells[1].outputs  # The Colab cell does nothing elsewhere.
  text = ''.join(o.get('text', '') for o in outputs)
  assert 'stage finetune, step 2' in text
  assert 'eps 0.080' in text
  assert sum('image/png' in o.get('data', {}) for o in outputs) == 2  # Samples and the curve.
