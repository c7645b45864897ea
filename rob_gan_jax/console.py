"""What a run prints: one progress line per logged step, evaluator results and checkpoint saves.

Other libraries' INFO messages (Orbax's per-checkpoint chatter, CLU's metric echo, TensorFlow's
data set notices, JAX's backend probing) are filtered out of the console by `configure`, unless
`library_info` asks for them (`main.py --library_info`); their warnings and errors always show.
In a multi-process run only process 0 prints INFO messages.
"""

import logging as std_logging
import os
import sys
import time
from typing import Dict, Optional

from absl import logging
import jax

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
# Metrics the progress line shows, when a stage logs them: the losses of its nets.
_LINE_METRICS = ('d_loss', 'g_loss', 'loss')


class _ProjectInfoOnly(std_logging.Filter):
  """Passes warnings and errors, and INFO messages of this package or of the program run."""

  def __init__(self):
    super().__init__()
    program = os.path.abspath(sys.argv[0]) if sys.argv and sys.argv[0] else None
    self._program_dir = os.path.dirname(program) if program else None

  def filter(self, record: std_logging.LogRecord) -> bool:
    if record.levelno >= std_logging.WARNING:
      return True
    path = os.path.abspath(record.pathname)
    return path.startswith(_PACKAGE_DIR + os.sep) or (
        self._program_dir is not None and os.path.dirname(path) == self._program_dir)


def configure(*, library_info: bool) -> None:
  """Filters the console to this project's INFO messages (all libraries' with `library_info`),
  warnings and errors. Call it first, before `jax.distributed.initialize`, whose connection
  notices are library INFO too; then `quiet_other_processes`."""
  handler = logging.get_absl_handler()
  for existing in [f for f in handler.filters if isinstance(f, _ProjectInfoOnly)]:
    handler.removeFilter(existing)
  if not library_info:
    handler.addFilter(_ProjectInfoOnly())


def quiet_other_processes() -> None:
  """INFO messages from process 0 only; every process's warnings and errors. Call it after
  `jax.distributed.initialize`, if any (`jax.process_index` starts the backend)."""
  logging.set_verbosity(logging.INFO if jax.process_index() == 0 else logging.WARNING)


def duration(seconds: float) -> str:
  """'45s', '7m26s', '3h05m' or '2d04h'."""
  seconds = max(0, int(round(seconds)))
  minutes, s = divmod(seconds, 60)
  hours, m = divmod(minutes, 60)
  days, h = divmod(hours, 24)
  if days:
    return f'{days}d{h:02d}h'
  if hours:
    return f'{hours}h{m:02d}m'
  return f'{minutes}m{s:02d}s' if minutes else f'{s}s'


class Progress:
  """The progress line of a training stage: position, rate, elapsed time, time left, losses.

  The rate is that since the first line (before it: since the run started, compilation
  included), evaluators and checkpoints included, so the time left includes theirs at the same
  share. Elapsed time counts from this run's start (a resumed run from where it resumed).
  """

  def __init__(self, title: str, first_step: int, num_steps: int):
    self.title, self.num_steps = title, num_steps
    self.start = time.monotonic()
    self._origin = (first_step, self.start)
    self._first_line = True

  def line(self, step: int, metrics: Optional[Dict[str, float]] = None) -> str:
    """E.g. 'co-training step 1250/3000 (41.7%), 2.80 steps/s, elapsed 7m26s, left 10m25s;
    d_loss 1.518, g_loss 1.274'."""
    now = time.monotonic()
    rate = (step - self._origin[0]) / max(now - self._origin[1], 1e-9)
    if self._first_line:
      self._origin, self._first_line = (step, now), False
    left = duration((self.num_steps - step) / rate) if rate > 0 else '?'
    text = (f'{self.title} step {step}/{self.num_steps} ({100 * step / self.num_steps:.1f}%), '
            f'{rate:.2f} steps/s, elapsed {duration(now - self.start)}, left {left}')
    shown = [f'{k} {metrics[k]:.4g}' for k in _LINE_METRICS if metrics and k in metrics]
    return text + ('; ' + ', '.join(shown) if shown else '')
