"""Evaluators: one measurement each of a stage's networks (big_vision's `evaluators/`).

An evaluator is a module `rob_gan_jax/evaluators/<name>.py` that defines `DEFAULTS` (its
settings: `every_steps`, how often co-training runs it, in G steps; `every_epochs`, how often
fine-tuning and the Madry baseline do, in epochs; 0 = never; and its own fields) and a class
`Evaluator`: `Evaluator(context)` loads what it needs once, with its settings in
`context.settings(name)` (`config.evals.<name>`, as big_vision's `config.evals`);
`run(networks)` measures a `checkpoints.Weights` (a checkpoint's networks, or the training
state's after `step` updates) and returns an `Output`: JSON-able metrics, uint8 image grids, and
what it adds to `--mode=eval`'s Markdown table and accuracy plot. The training loop's hooks,
`--mode=eval` (the names of `eval.evaluators`) and `api.Model.evaluate` build and run the same
evaluators. A new metric is one module here: `config.evals` gets its `DEFAULTS`.
"""

import dataclasses
import functools
import importlib
import pkgutil
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import flax.linen as nn
import jax
import ml_collections
import numpy as np

from rob_gan_jax import robustness
from rob_gan_jax import task as task_lib
from rob_gan_jax.input_pipeline import splits
from rob_gan_jax.input_pipeline import transforms
from rob_gan_jax.models import sampling


PERIODS = ('every_steps', 'every_epochs')


@dataclasses.dataclass(frozen=True)
class Curve:
  """One line of `--mode=eval`'s accuracy plot (`visualize.plot_curves`): accuracy per radius of
  `eval.epsilons`, with a matplotlib format string."""
  label: str
  values: Sequence[float]
  style: str = '-'


@dataclasses.dataclass(frozen=True)
class Output:
  """What an evaluator measured: `metrics` (name -> float or JSON-able value; scalars are also
  written to TensorBoard during training), `images` (name -> (H, W, C) uint8 grid, written as
  PNG), and for `--mode=eval` the Markdown `table` lines, the accuracy `curves` and the `plots`
  (file name -> a function drawing on a matplotlib Axes) it shows."""
  metrics: Dict[str, Any] = dataclasses.field(default_factory=dict)
  images: Dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
  table: Sequence[str] = ()
  curves: Sequence[Curve] = ()
  plots: Dict[str, Callable[[Any], None]] = dataclasses.field(default_factory=dict)


class Context:
  """What every evaluator of a run shares: settings, models, devices and loaded data.

  Attributes:
    config: the full config.
    task: its `task.Task`.
    workdir: the run's workdir (IS/FID cache their real statistics beside it).
    stage: the stage whose networks are measured ('cotrain', 'finetune', 'madry').
    training: True in a training hook (sample counts of `train`/`finetune`), False in
      `--mode=eval` and the API (those of `eval`).
    generator, discriminator: the modules (inference-mode use only).
    mesh: devices to split evaluation batches over (None: the default device).
  """

  def __init__(self, config: ml_collections.ConfigDict, task: task_lib.Task, workdir: str, *,
               stage: str, training: bool, generator: nn.Module, discriminator: nn.Module,
               mesh: Optional[jax.sharding.Mesh]):
    self.config, self.task, self.workdir = config, task, workdir
    self.stage, self.training = stage, training
    self.generator, self.discriminator, self.mesh = generator, discriminator, mesh
    self._cache: Dict[Tuple, Any] = {}
    self._generated: Tuple[Optional[Tuple], Any] = (None, None)

  def settings(self, name: str) -> ml_collections.ConfigDict:
    """Evaluator `name`'s settings, `config.evals.<name>`."""
    return self.config.evals[name]

  def subset(self, split: str, num_examples: Optional[int]) -> Tuple[np.ndarray, np.ndarray]:
    """A fixed random subset of a split, (N, H, W, C) uint8 and (N,) int32, loaded once."""
    return self.cached(('subset', split, num_examples),
                       lambda: splits.load_subset(self.config, split, num_examples))

  def eval_sample(self, which: str) -> Tuple[np.ndarray, np.ndarray]:
    """The examples `--mode=eval` measures: 'test' (`eval.split`, `eval.num_examples`; None =
    the whole split) or 'train' (`eval.train_split`, `eval.train_num_examples`)."""
    e = self.config.eval
    if which == 'test':
      return self.subset(e.split, e.num_examples)
    return self.subset(e.train_split, e.train_num_examples)

  def target(self, networks) -> robustness.Target:
    """The head of D that the task measures (`task.Task.head`), batched as `eval` says."""
    return robustness.Target(self.discriminator, networks.discriminator, head=self.task.head,
                             batch_size=self.config.eval.batch_size, mesh=self.mesh,
                             unroll=self.config.unroll)

  def generated(self, networks, num_samples: int) -> Tuple[np.ndarray, np.ndarray]:
    """`num_samples` images of G (`networks.generator`), (N, H, W, C) uint8, and the (N,) int32
    labels they were drawn for (cycling over the task's label range), made as `sampling.sample`
    makes them (`eval.sample_with_running_stats`) in batches of `eval.sample_batch_size` from
    fixed seeds. Only the last networks' samples are kept (a training run measures many)."""
    def make():
      labels = (np.arange(num_samples) % self.task.label_range).astype(np.int32)
      batch = self.config.eval.sample_batch_size
      running_stats = self.config.eval.sample_with_running_stats
      images = [transforms.to_uint8(sampling.sample(
          self.generator, networks.generator, labels[i:i + batch], seed=i,
          running_stats=running_stats)) for i in range(0, num_samples, batch)]
      return np.concatenate(images), labels
    key = (networks.stage, int(networks.step), num_samples)
    if self._generated[0] != key:
      self._generated = (key, make())
    return self._generated[1]

  def cached(self, key: Tuple, compute: Callable[[], Any]) -> Any:
    """`compute()`, once per key: results several evaluators use (a subset, a PGD table)."""
    if key not in self._cache:
      self._cache[key] = compute()
    return self._cache[key]


@functools.lru_cache(maxsize=None)
def available() -> Tuple[str, ...]:
  """The names of the evaluator modules of this package."""
  return tuple(sorted(m.name for m in pkgutil.iter_modules(__path__)))


def default_config() -> ml_collections.ConfigDict:
  """`config.evals`: every evaluator's `DEFAULTS`, by name."""
  return ml_collections.ConfigDict({
      name: dict(importlib.import_module(f'{__name__}.{name}').DEFAULTS) for name in available()})


def check_names(names, field: str) -> None:
  """Raises ValueError, naming the config field, for an evaluator name without a module."""
  unknown = sorted(set(names) - set(available()))
  if unknown:
    raise ValueError(f'{field}: unknown evaluator(s) {unknown}; available: {available()}')


def check_config(evals) -> None:
  """Raises ValueError, naming the field, for a `config.evals` entry without a module, without
  the period fields, or with a negative period."""
  check_names(evals, 'evals')
  for name, settings in evals.items():
    for period in PERIODS:
      if period not in settings or settings[period] < 0:
        raise ValueError(f'evals.{name}.{period} must be >= 0 (0 = never), got '
                         f'{settings.get(period)}')


def create(name: str, context: Context):
  """Builds evaluator `name` (the module `rob_gan_jax/evaluators/<name>.py`).

  Raises:
    ValueError: no such evaluator.
  """
  check_names([name], 'evaluator')
  return importlib.import_module(f'{__name__}.{name}').Evaluator(context)


def run_all(context: Context, names, networks) -> Tuple[Dict[str, Any], List[Output]]:
  """Runs the evaluators `names` on `networks` (a `checkpoints.Weights`), in order.

  Returns:
    The merged metrics, led by the networks' 'stage' and 'step', and each evaluator's `Output`.
  """
  outputs = [create(name, context).run(networks) for name in names]
  metrics = {'stage': networks.stage, 'step': int(networks.step)}
  for output in outputs:
    metrics.update(output.metrics)
  return metrics, outputs
