"""Executes notebooks/evaluate_checkpoint.ipynb headless against a tiny checkpoint."""

import os

import nbclient
import nbformat
import pytest

pytestmark = pytest.mark.slow  # Second lane: the notebook run headless.

NOTEBOOK = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        'notebooks', 'evaluate_checkpoint.ipynb')


def test_notebook_runs_on_a_checkpoint(trained_workdir, monkeypatch):
  monkeypatch.setenv('ROBGAN_WORKDIR', trained_workdir)
  monkeypatch.setenv('ROBGAN_NUM_EXAMPLES', '20')
  monkeypatch.setenv('ROBGAN_NUM_STEPS', '2')
  notebook = nbformat.read(NOTEBOOK, as_version=4)
  nbclient.NotebookClient(notebook, timeout=300, kernel_name='python3', resources={
      'metadata': {'path': os.path.dirname(NOTEBOOK)}}).execute()
  outputs = [o for cell in notebook.cells if cell.cell_type == 'code' for o in cell.outputs]
  text = ''.join(o.get('text', '') for o in outputs)
  assert 'stage finetune, step 2' in text
  assert 'eps 0.080' in text
  assert sum('image/png' in o.get('data', {}) for o in outputs) == 2  # Samples and the curve.
