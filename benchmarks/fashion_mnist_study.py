r"""Fashion-MNIST trained to the end on 2 CPU cores, and both papers' claims measured (issue 31).

    python benchmarks/fashion_mnist_study.py --data_dir=../shared/data/tfds --out=/tmp/fm_study \
        --reference_cache=/tmp/reference

Runs (`configs/fashion_mnist.py` and its variants; each `main.py` pinned to one CPU core, two side
by side), per seed of `--seeds`:
- robgan, noattack: Rob-GAN step 1 and the same conditional GAN without the attack (claim a);
- asgan, vanilla: AS-GAN and the same unconditional GAN without the attack (claim b);
- finetune, finetune_lambda0: Rob-GAN step 2 from robgan's last checkpoint with lambda 0.5 and 0,
  and madry: Madry adversarial training of the same D (claim c).
Where the two seeds of a pair of arms disagree on which arm is better (`PAIRS`' deciding metric),
`--extra_seed` is run for both. Every checkpoint is kept.

Time is CPU time of the run's process (`/proc/<pid>/stat`, read every few seconds): one pinned core,
so it is the wall time of an uncontended core, compilation and data loading included, and it does
not count while the run is stopped or waits for the other core's job (a study may be paused with
SIGSTOP and resumed, or killed and started again: runs resume from their checkpoints, and
everything measured is cached in `--out/measure/`).

Measured afterwards (two measurement processes side by side, on the whole test split):
- G: `evaluators/reference_metrics.py` at every `--g_every` G steps (and the first and last
  checkpoint), `--samples` samples against the 10,000
  test images (fd_ref, KID, precision, recall; GAN-test for a conditional G), and CAS on
  `--samples` samples at the last checkpoint, beside its ceiling (as many real images).
- Classifiers (Rob-GAN's D after step 1, after step 2 with lambda 0.5 and 0, Madry's): at every
  checkpoint clean and PGD-20 accuracy at the training radius on fixed 1,000 training and 1,000
  test examples (the robust train/test gap along training, paper Fig. 8); at the last checkpoint,
  at the one best under PGD-20 on those 1,000 test examples, and (Madry) at the CPU time Rob-GAN's
  two steps took: clean, PGD-20 and APGD-T accuracy at every `eval.epsilons` radius on all 10,000
  test images. APGD-T (targeted DLR, `--apgd_targets` target classes, `--apgd_steps` steps) attacks
  the examples PGD-20 left correct, so its column is the worst case of the two attacks per example
(not at the 'best' checkpoints, which only choose).

Writes `--out/report.md` (the tables and the claims table) and `--out/*.png`.
"""

import argparse
import dataclasses
import json
import os
import re
import statistics
import subprocess
import sys
import time
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

CONFIG = 'configs/fashion_mnist.py'


@dataclasses.dataclass(frozen=True)
class Arm:
  variant: str  # configs/fashion_mnist.py:<variant>.
  mode: str  # main.py --mode.
  init: Optional[str] = None  # The arm whose co-training step 2 starts from.
  flags: Tuple[str, ...] = ()
  stage: str = 'cotrain'  # The stage whose checkpoints are measured.
  generator: bool = True  # Measured as a GAN (G's metrics) or as a classifier.


ARMS = {
    'robgan': Arm('', 'train'),
    'noattack': Arm('noattack', 'train'),
    'asgan': Arm('asgan', 'train'),
    'vanilla': Arm('vanilla', 'train'),
    'finetune': Arm('', 'finetune', init='robgan', flags=('--config.finetune.fake_weight=0.5',),
                    stage='finetune', generator=False),
    'finetune_lambda0': Arm('', 'finetune', init='robgan',
                            flags=('--config.finetune.fake_weight=0.0',), stage='finetune',
                            generator=False),
    # The config's 10 epochs (4,690 updates, about 45 CPU minutes): within the CPU time of
    # Rob-GAN's two steps (about 64 minutes).
    'madry': Arm('madry', 'train', stage='madry', generator=False),
}
# Pairs of arms a claim compares, with the metric that says which is better (+1: higher is).
PAIRS = (('robgan', 'noattack', 'fd_ref', -1), ('asgan', 'vanilla', 'fd_ref', -1),
         ('finetune', 'madry', 'pgd', +1), ('finetune', 'finetune_lambda0', 'pgd', +1))
G_METRICS = ('fd_ref', 'kid_ref', 'precision_ref', 'recall_ref', 'gan_test_accuracy')
_STEP = re.compile(r'step (\d+)/(\d+) \(')


def flags(args, name: str) -> List[str]:
  arm, seed = ARMS[name.rsplit('_seed', 1)[0]], int(name.rsplit('_seed', 1)[1])
  config = CONFIG + (f':{arm.variant}' if arm.variant else '')
  out = [f'--config={config}', f'--mode={arm.mode}', f'--workdir={workdir(args, name)}',
         f'--config.seed={seed}', f'--config.dataset.data_dir={os.path.abspath(args.data_dir)}',
         f'--config.reference.cache_dir={os.path.abspath(args.reference_cache)}',
         # Every checkpoint kept; the training-time test accuracy is measured afterwards.
         '--config.train.max_to_keep=1000', '--config.finetune.max_to_keep=1000',
         '--config.evals.pgd_accuracy.every_steps=0', '--config.evals.pgd_accuracy.every_epochs=0',
         *arm.flags]
  if arm.init:
    out.append(f'--config.finetune.init_workdir={workdir(args, f"{arm.init}_seed{seed}")}')
  return out


def workdir(args, name: str) -> str:
  return os.path.join(os.path.abspath(args.out), 'runs', name)


def path(args, *parts) -> str:
  return os.path.join(os.path.abspath(args.out), *parts)


def done(args, name: str) -> bool:
  return os.path.exists(path(args, 'logs', f'{name}.done'))


# Training: two runs at a time, one per core, with their CPU-time timelines.


def cpu_seconds(pid: int) -> float:
  """User + system CPU time of a process and its finished children, in seconds."""
  with open(f'/proc/{pid}/stat') as f:
    fields = f.read().rsplit(')', 1)[1].split()
  return sum(int(x) for x in fields[11:15]) / os.sysconf('SC_CLK_TCK')


class Job:
  """One main.py run on one core; `poll()` records (step, CPU seconds, wall seconds) as its
  progress lines appear, continuing the timeline of earlier attempts."""

  def __init__(self, args, name: str, core: int):
    self.args, self.name = args, name
    os.makedirs(path(args, 'logs'), exist_ok=True)
    self.timeline_path = path(args, 'logs', f'{name}.timeline.json')
    self.points = (json.load(open(self.timeline_path))
                   if os.path.exists(self.timeline_path) else [])
    self.offset = (self.points[-1][1], self.points[-1][2]) if self.points else (0.0, 0.0)
    self.log_path = path(args, 'logs', f'{name}.log')
    command = ['taskset', '-c', str(core), sys.executable, 'main.py', *flags(args, name)]
    with open(self.log_path, 'a') as log:
      log.write('$ ' + ' '.join(command) + '\n')
    self.process = subprocess.Popen(command, cwd=REPO, stdout=open(self.log_path, 'a'),
                                    stderr=subprocess.STDOUT)
    self.start, self.read_to, self.cpu = time.monotonic(), 0, 0.0
    print(f'started {name} on core {core}', flush=True)

  def poll(self) -> Optional[int]:
    try:
      self.cpu = cpu_seconds(self.process.pid)
    except (FileNotFoundError, ProcessLookupError):
      pass
    with open(self.log_path) as log:
      log.seek(self.read_to)
      text = log.read()
      self.read_to = log.tell()
    for match in _STEP.finditer(text):
      step = int(match.group(1))
      if not self.points or step > self.points[-1][0]:
        self.points.append([step, self.offset[0] + self.cpu,
                            self.offset[1] + time.monotonic() - self.start])
    with open(self.timeline_path + '.tmp', 'w') as f:
      json.dump(self.points, f)
    os.replace(self.timeline_path + '.tmp', self.timeline_path)
    return self.process.poll()


def train(args, names: Sequence[str]) -> None:
  """Runs `names` to the end, two at a time, a step-2 run after its co-training run."""
  pending = [n for n in names if not done(args, n)]
  slots: Dict[int, Optional[Job]] = {0: None, 1: None}
  while pending or any(slots.values()):
    for core, job in slots.items():
      if job is not None:
        status = job.poll()
        if status is None:
          continue
        slots[core] = None
        if status != 0:
          raise RuntimeError(f'{job.name} exited with status {status}; see {job.log_path}')
        open(path(args, 'logs', f'{job.name}.done'), 'w').close()
        print(f'finished {job.name}', flush=True)
      ready = [n for n in pending if ARMS[n.rsplit('_seed', 1)[0]].init is None
               or done(args, f'{ARMS[n.rsplit("_seed", 1)[0]].init}_seed{n.rsplit("_seed", 1)[1]}')]
      if ready:
        pending.remove(ready[0])
        slots[core] = Job(args, ready[0], core)
    time.sleep(5)


def timeline(args, name: str) -> np.ndarray:
  """(N, 3) step, CPU seconds, wall seconds of a run's progress lines."""
  return np.asarray(json.load(open(path(args, 'logs', f'{name}.timeline.json'))), np.float64)


def seconds_at(args, name: str, step: int) -> float:
  """CPU seconds a run had used when it reached `step` (interpolated between progress lines)."""
  t = timeline(args, name)
  return float(np.interp(step, t[:, 0], t[:, 1]))


# Measurement, one process per run, cached per checkpoint.


def saved_steps(args, name: str) -> List[int]:
  from rob_gan_jax import checkpoints  # pylint: disable=g-import-not-at-top
  from rob_gan_jax import workdir as workdir_lib  # pylint: disable=g-import-not-at-top
  stage = ARMS[name.rsplit('_seed', 1)[0]].stage
  return sorted(checkpoints.manager(workdir_lib.checkpoint_dir(workdir(args, name), stage))
                .all_steps())


def measure(args, name: str) -> dict:
  """{'steps': {step: metrics}, 'full': {label: full-test metrics}} of a run, cached."""
  result_path = path(args, 'measure', f'{name}.json')
  result = json.load(open(result_path)) if os.path.exists(result_path) else {'steps': {},
                                                                              'full': {}}

  def save():
    os.makedirs(os.path.dirname(result_path), exist_ok=True)
    with open(result_path + '.tmp', 'w') as f:
      json.dump(result, f, indent=1)
    os.replace(result_path + '.tmp', result_path)

  arm = ARMS[name.rsplit('_seed', 1)[0]]
  steps = saved_steps(args, name)
  if arm.generator:
    for step in [s for s in steps if s % args.g_every == 0 or s in (steps[0], steps[-1])]:
      if str(step) not in result['steps']:
        result['steps'][str(step)] = generator_metrics(args, name, step, cas=step == steps[-1])
        print(name, step, result['steps'][str(step)], flush=True)
        save()
  if arm.generator and arm.variant:  # The no-attack and unconditional GANs have no classifier.
    return result
  classifier_steps = steps if not arm.generator else steps[-1:]
  for step in reversed(classifier_steps):  # The last first: the claims need it.
    if str(step) not in result['steps'] or 'test_pgd' not in result['steps'][str(step)]:
      result['steps'].setdefault(str(step), {}).update(gap_metrics(args, name, step))
      print(name, step, result['steps'][str(step)], flush=True)
      save()
  for label, step in full_test_steps(args, name, result).items():
    if label not in result['full'] and label in args.full_tests:
      # APGD-T where the comparisons of `claims` need it: not for a 'best' checkpoint.
      result['full'][label] = dict(full_test_metrics(args, name, step, apgd=label != 'best'),
                                   step=step)
      print(name, label, result['full'][label], flush=True)
      save()
  return result


def load_model(args, name: str, step: int):
  from rob_gan_jax import api  # pylint: disable=g-import-not-at-top
  return api.load(workdir(args, name), ARMS[name.rsplit('_seed', 1)[0]].stage, step=step)


def generator_metrics(args, name: str, step: int, *, cas: bool) -> dict:
  model = load_model(args, name, step)
  model.config.reference.cache_dir = os.path.abspath(args.reference_cache)
  r = model.config.evals.reference_metrics
  r.eval_num_samples = args.samples
  r.eval_cas_num_samples = args.samples if cas else 0
  metrics = model.evaluate(['reference_metrics'])
  return {k: v for k, v in metrics.items() if isinstance(v, (int, float))}


def subsets(model):
  """The fixed 1,000 training and 1,000 test examples of the gap curves (seed 0's subsets)."""
  from rob_gan_jax.input_pipeline import splits  # pylint: disable=g-import-not-at-top
  config = model.config.copy_and_resolve_references()
  config.seed = 0
  return {split: splits.load_subset(config, split, 1_000) for split in ('train', 'test')}


def gap_metrics(args, name: str, step: int) -> dict:
  """Clean and PGD-20 accuracy at the training radius on the 1,000 + 1,000 gap examples."""
  model = load_model(args, name, step)
  eps = model.config.attack.epsilon
  out = {}
  for split, (images, labels) in subsets(model).items():
    curve = model.accuracy_curve(images, labels, [0.0, eps])
    out.update({f'{split}_clean': curve.per_radius[0], f'{split}_pgd': curve.per_radius[1]})
  return out


def full_test_steps(args, name: str, result: dict) -> Dict[str, int]:
  """The checkpoints measured on the whole test split: 'last', 'best' (PGD-20 on the 1,000 test
  examples) and, for Madry, 'same_time' (the latest within the CPU time of Rob-GAN's two
  steps of the same seed)."""
  arm, seed = name.rsplit('_seed', 1)
  measured = [int(s) for s, m in result['steps'].items() if 'test_pgd' in m]
  steps = {'last': gap_checkpoint(result, 'last')}
  if ARMS[arm].stage != 'cotrain':
    steps['best'] = gap_checkpoint(result, 'best')
  if arm == 'madry':
    budget = (timeline(args, f'robgan_seed{seed}')[-1, 1]
              + timeline(args, f'finetune_seed{seed}')[-1, 1])
    within = [s for s in measured if seconds_at(args, name, s) <= budget]
    steps['same_time'] = max(within) if within else min(measured)
  return steps


def full_test_metrics(args, name: str, step: int, *, apgd: bool) -> dict:
  """Clean and PGD-20 accuracy at every radius on the whole test split, and (`apgd`) the
  accuracy under PGD-20 then APGD-T."""
  from rob_gan_jax import robustness  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  model = load_model(args, name, step)
  images, labels = model.load_data('test')
  epsilons = list(model.config.eval.epsilons)
  start = time.time()
  curve = model.accuracy_curve(images, labels, epsilons)
  pgd_seconds = time.time() - start
  result = {'epsilons': epsilons, 'pgd': curve.per_radius, 'num_examples': len(labels),
            'pgd_seconds': round(pgd_seconds)}
  if not apgd:
    return result
  target = robustness.Target(model.discriminator, model.discriminator_variables)
  budget = dict(num_steps=args.apgd_steps, num_restarts=1, num_target_classes=args.apgd_targets)
  worst = []
  start = time.time()
  for eps, correct in zip(epsilons, curve.correct):
    correct = correct.copy()
    if args.apgd_epsilons is not None and eps not in args.apgd_epsilons:
      worst.append(float('nan'))  # Not attacked with APGD-T.
      continue
    if eps > 0 and correct.any():
      correct[correct] = robustness.correct_under_strong_attack(
          target, images[correct], labels[correct], attack='apgd-t', epsilon=eps,
          budget=budget, key=jax.random.PRNGKey(0))
    worst.append(float(correct.mean()))
  return dict(result, apgd_t_worst=worst, apgd_t_seconds=round(time.time() - start))


def measure_all(args, names: Sequence[str]) -> None:
  """Each run's `measure` in its own process, two side by side, one per core."""
  queue = list(names)
  running: Dict[int, Tuple[str, subprocess.Popen]] = {}
  while queue or running:
    for core in (0, 1):
      if core in running and running[core][1].poll() is not None:
        name, process = running.pop(core)
        if process.returncode:
          raise RuntimeError(f'measuring {name} failed; see {path(args, "logs")}')
      if core not in running and queue:
        name = queue.pop(0)
        log = open(path(args, 'logs', f'{name}.measure.log'), 'a')
        command = ['taskset', '-c', str(core), sys.executable, os.path.abspath(__file__),
                   *sys.argv[1:], f'--measure_run={name}']
        running[core] = (name, subprocess.Popen(command, cwd=REPO, stdout=log,
                                                stderr=subprocess.STDOUT))
    time.sleep(5)


# Report.


def results(args, names: Sequence[str]) -> Dict[str, dict]:
  return {n: json.load(open(path(args, 'measure', f'{n}.json'))) for n in names}


def runs_of(names: Sequence[str], arm: str) -> List[str]:
  return [n for n in names if n.rsplit('_seed', 1)[0] == arm]


def final(result: dict) -> dict:
  return result['steps'][str(max(int(s) for s in result['steps']))]


def mean_se(values: Sequence[float]) -> Tuple[float, float]:
  values = list(values)
  if len(values) < 2:
    return values[0], float('nan')
  return statistics.mean(values), statistics.stdev(values) / len(values)**0.5


def verdict(difference: float, se: float, better: int) -> str:
  """'holds' if the difference is over 2 SE in the claimed direction, 'does not hold' if over 2
  SE the other way, otherwise 'cannot be told at this scale'."""
  if not np.isfinite(se) or abs(difference) <= 2 * se:
    return 'cannot be told at this scale'
  return 'holds' if difference * better > 0 else 'does not hold'


def disagreeing_pairs(args, names: Sequence[str]) -> List[Tuple[str, str]]:
  """The pairs of `PAIRS` whose first two seeds disagree on which arm is better."""
  measured = results(args, names)
  disagree = []
  for a, b, metric, _ in PAIRS:
    signs = set()
    for seed in args.seeds:
      ra, rb = measured.get(f'{a}_seed{seed}'), measured.get(f'{b}_seed{seed}')
      if ra and rb:
        signs.add(np.sign(pair_value(ra, metric) - pair_value(rb, metric)))
    if len(signs) > 1:
      disagree.append((a, b))
  return disagree


def pair_value(result: dict, metric: str) -> float:
  """The deciding figure of a run: its last checkpoint's G metric, or its last checkpoint's
  PGD-20 accuracy at the training radius on the whole test split."""
  if metric == 'pgd':
    full = result['full']['last']
    return full['pgd'][full['epsilons'].index(TRAIN_EPSILON)]
  return final(result)[metric]


TRAIN_EPSILON = 0.2


def report(args, names: Sequence[str]) -> str:
  measured = results(args, names)
  lines = ['## G: Rob-GAN vs no attack, AS-GAN vs vanilla (last checkpoint, mean ± SE over seeds)',
           '', '| arm | seeds | G steps | CPU minutes | ' + ' | '.join(G_METRICS) +
           ' | cas_accuracy | cas_real_accuracy |', '|---' * (len(G_METRICS) + 6) + '|']
  for arm in ('robgan', 'noattack', 'asgan', 'vanilla'):
    runs = runs_of(names, arm)
    if not runs:
      continue
    cells = [str(len(runs)), str(max(int(s) for s in measured[runs[0]]['steps'])),
             '%.1f' % (statistics.mean(timeline(args, r)[-1, 1] for r in runs) / 60)]
    for metric in G_METRICS + ('cas_accuracy', 'cas_real_accuracy'):
      values = [final(measured[r])[metric] for r in runs if metric in final(measured[r])]
      cells.append('%.4g ± %.2g' % mean_se(values) if values else '-')
    lines.append(f'| {arm} | ' + ' | '.join(cells) + ' |')
  gap_columns = ('train_clean', 'train_pgd', 'test_clean', 'test_pgd')
  lines += ['', f'## Classifiers on the 1,000 + 1,000 gap-curve images, PGD-20 at eps '
            f'{TRAIN_EPSILON:g} (mean ± SE over seeds)', '',
            '| arm | checkpoint | step | CPU minutes (with step 1) | ' + ' | '.join(gap_columns)
            + ' |', '|---' * (4 + len(gap_columns)) + '|']
  for arm in ('robgan', 'finetune', 'finetune_lambda0', 'madry'):
    runs = runs_of(names, arm)
    for label in ('last', 'best'):
      steps = [gap_checkpoint(measured[r], label) for r in runs]
      picked = [(r, step) for r, step in zip(runs, steps) if step is not None]
      if not picked:
        continue
      minutes = statistics.mean(total_seconds(args, r, step) / 60 for r, step in picked)
      cells = [label, '/'.join(str(step) for _, step in picked), f'{minutes:.1f}']
      cells += ['%.3f ± %.2g' % mean_se([measured[r]['steps'][str(step)][c] for r, step in picked])
                for c in gap_columns]
      lines.append(f'| {arm} | ' + ' | '.join(cells) + ' |')
  if classifier_epsilons(measured):
    lines += ['', '## Classifiers on all 10,000 test images (mean ± SE over seeds)', '',
              '| arm | checkpoint | step | CPU minutes (with step 1) | ' + ' | '.join(
                  f'PGD-20 eps {e:g}' for e in classifier_epsilons(measured)) + ' | ' + ' | '.join(
                      f'+APGD-T eps {e:g}' for e in classifier_epsilons(measured)[1:]) + ' |',
              '|---' * (4 + 2 * len(classifier_epsilons(measured)) - 1) + '|']
  for arm in ('robgan', 'finetune', 'finetune_lambda0', 'madry'):
    runs = runs_of(names, arm)
    for label in ('last', 'best', 'same_time'):
      rows = [measured[r]['full'][label] for r in runs if label in measured[r]['full']]
      if not rows:
        continue
      minutes = statistics.mean(total_seconds(args, r, row['step']) / 60
                                for r, row in zip(runs, rows))
      cells = [label, '/'.join(str(row['step']) for row in rows), f'{minutes:.1f}']
      cells += ['%.4f ± %.4f' % mean_se([row['pgd'][i] for row in rows])
                for i in range(len(rows[0]['pgd']))]
      cells += ['%.4f ± %.4f' % mean_se([row['apgd_t_worst'][i] for row in rows])
                if 'apgd_t_worst' in rows[0] else '-' for i in range(1, len(rows[0]['pgd']))]
      lines.append(f'| {arm} | ' + ' | '.join(cells) + ' |')
  lines += ['', '## Claims', '', '| claim | figure | arm A | arm B | A - B ± SE | verdict |',
            '|---|---|---|---|---|---|']
  lines += claims(args, names, measured)
  return '\n'.join(lines)


def gap_checkpoint(result: dict, label: str) -> Optional[int]:
  """The last checkpoint measured on the gap-curve images, or ('best') the one with the
  highest test PGD-20 accuracy there; None if none was."""
  measured = {int(s): m for s, m in result['steps'].items() if 'test_pgd' in m}
  if not measured:
    return None
  if label == 'last':
    return max(measured)
  return max(measured, key=lambda s: (measured[s]['test_pgd'], s))


def classifier_epsilons(measured: dict) -> List[float]:
  for result in measured.values():
    if result['full']:
      return next(iter(result['full'].values()))['epsilons']
  return []


def total_seconds(args, name: str, step: int) -> float:
  """CPU seconds to reach `step` of a run, a step-2 run's co-training included."""
  arm, seed = name.rsplit('_seed', 1)
  before = timeline(args, f'{ARMS[arm].init}_seed{seed}')[-1, 1] if ARMS[arm].init else 0.0
  return before + seconds_at(args, name, step)


def claims(args, names, measured) -> List[str]:
  """One row per claim and figure: arm means, their difference and its SE, the verdict.

  The SE is over seeds. With one seed per arm it is, where the figure has one, the SE of the
  measurement itself (`sampling`: a fraction of `--samples` samples or of the whole test split,
  binomial; KID, its std over subsets), which leaves out the seeds' spread, and the verdict says
  so."""
  rows = []

  def row(claim, figure, a, b, values_a, values_b, better, sampling=None):
    if not values_a or not values_b:  # An arm not measured (yet).
      return
    (ma, sa), (mb, sb) = mean_se(values_a), mean_se(values_b)
    se, note = (sa**2 + sb**2)**0.5, ''
    if not np.isfinite(se) and sampling is not None:
      se = (sampling(a, ma)**2 + sampling(b, mb)**2)**0.5
      note = ' (1 seed; SE of the measurement only)'
    rows.append(f'| {claim} | {figure} | {a} {ma:.4g} | {b} {mb:.4g} | {ma - mb:+.4g} ± '
                f'{se:.2g} | {verdict(ma - mb, se, better)}{note} |')

  binomial = lambda arm, p: (p * (1 - p) / args.samples)**0.5
  test_images = next((f['num_examples'] for r in measured.values() for f in r['full'].values()),
                     10_000)  # Fashion-MNIST's test split.
  binomial_test = lambda arm, p: (p * (1 - p) / test_images)**0.5
  g_last = lambda arm, m: [final(measured[r])[m] for r in runs_of(names, arm)
                           if m in final(measured[r])]
  kid_std = lambda arm, value: statistics.mean(g_last(arm, 'kid_ref_std'))
  for metric, better, sampling in (
      ('fd_ref', -1, None), ('kid_ref', -1, kid_std), ('precision_ref', 1, binomial),
      ('recall_ref', 1, binomial), ('gan_test_accuracy', 1, binomial),
      ('cas_accuracy', 1, binomial_test)):
    row('a. the attack gives a better G (Rob-GAN)', f'{metric}, last checkpoint', 'robgan',
        'noattack', g_last('robgan', metric), g_last('noattack', metric), better, sampling)
  half = lambda arm: [half_time_value(args, r, measured[r], 'fd_ref') for r in runs_of(names, arm)]
  row('a. the attack speeds up convergence (Rob-GAN)', 'fd_ref at half the shorter run\'s CPU '
      'time', 'robgan', 'noattack', half('robgan'), half('noattack'), -1)
  fd = {arm: g_last(arm, 'fd_ref') for arm in ('asgan', 'vanilla')}
  if fd['asgan'] and fd['vanilla']:
    relative = [100 * (1 - a / v) for a, v in zip(fd['asgan'], fd['vanilla'])]
    m, s = mean_se(relative)
    rows.append(f'| b. AS-GAN improves FID by 10-50 % | fd_ref improvement over vanilla, % | | | '
                f'{m:+.1f} ± {s:.2g} | '
                f'{"holds" if m - 2 * s >= 10 else "does not hold" if m + 2 * s < 10 else "cannot be told at this scale"} |')
  for metric, better, sampling in (('kid_ref', -1, kid_std), ('precision_ref', 1, binomial),
                                   ('recall_ref', 1, binomial)):
    row('b. AS-GAN gives a better G', f'{metric}, last checkpoint', 'asgan', 'vanilla',
        g_last('asgan', metric), g_last('vanilla', metric), better, sampling)
  eps = classifier_epsilons(measured)
  for label_a, label_b, what in (('last', 'last', 'each trained to the end'),
                                 ('best', 'best', 'each at its best'),
                                 ('last', 'same_time', 'at the same CPU time')):
    for column, name in (('pgd', 'PGD-20'), ('apgd_t_worst', 'PGD-20 + APGD-T')):
      for i, e in enumerate(eps):
        if column != 'pgd' and (e == 0 or label_a == 'best'):
          continue
        values = lambda arm, label: [measured[r]['full'][label][column][i]
                                     for r in runs_of(names, arm) if label in measured[r]['full']]
        figure = f'{"clean" if e == 0 else f"{name} eps {e:g}"} ({what})'
        row('c. Rob-GAN (step 1 + 2) beats Madry', figure, 'finetune', 'madry',
            values('finetune', label_a), values('madry', label_b), 1, binomial_test)
  for i, e in enumerate(eps):
    values = lambda arm: [measured[r]['full']['last']['pgd'][i] for r in runs_of(names, arm)]
    row('c. fake data help step 2 (lambda 0.5 vs 0)', f'PGD-20 eps {e:g}', 'finetune',
        'finetune_lambda0', values('finetune'), values('finetune_lambda0'), 1, binomial_test)
  # The same comparisons on the 1,000 test images of the gap curve, at the last checkpoints.
  binomial_gap = lambda arm, p: (p * (1 - p) / 1_000)**0.5
  gap_last = lambda arm, metric: [final(measured[r])[metric] for r in runs_of(names, arm)
                                  if metric in final(measured[r])]
  for metric, name in (('test_clean', 'clean'), ('test_pgd', f'PGD-20 eps {TRAIN_EPSILON:g}')):
    figure = f'{name}, the 1,000 gap-curve test images, last checkpoint'
    row('c. Rob-GAN (step 1 + 2) beats Madry', figure, 'finetune', 'madry',
        gap_last('finetune', metric), gap_last('madry', metric), 1, binomial_gap)
    row('c. fake data help step 2 (lambda 0.5 vs 0)', figure, 'finetune', 'finetune_lambda0',
        gap_last('finetune', metric), gap_last('finetune_lambda0', metric), 1, binomial_gap)
  gap = lambda arm: [final(measured[r])['train_pgd'] - final(measured[r])['test_pgd']
                     for r in runs_of(names, arm)]
  row('c. Rob-GAN has a smaller robust train/test gap (Fig. 8)', 'train - test PGD-20, eps 0.2, '
      'last checkpoint', 'finetune', 'madry', gap('finetune'), gap('madry'), -1)
  return rows


def half_time_value(args, name: str, result: dict, metric: str) -> float:
  """`metric` interpolated at half the CPU time of the shorter run of the study."""
  steps = sorted(int(s) for s in result['steps'])
  seconds = [seconds_at(args, name, s) for s in steps]
  return float(np.interp(args.half_time, seconds, [result['steps'][str(s)][metric]
                                                    for s in steps]))


def plot(args, names: Sequence[str]) -> None:
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  measured = results(args, names)
  colours = {'robgan': 'tab:red', 'noattack': 'tab:blue', 'asgan': 'tab:orange',
             'vanilla': 'tab:cyan', 'finetune': 'tab:red', 'finetune_lambda0': 'tab:purple',
             'madry': 'tab:green'}
  for study, arms, metrics in (('generator', ('robgan', 'noattack'), G_METRICS),
                               ('asgan', ('asgan', 'vanilla'), G_METRICS[:4])):
    figure, axes = plt.subplots(2, len(metrics), figsize=(3.6 * len(metrics), 6.5))
    for arm in arms:
      for i, run in enumerate(runs_of(names, arm)):
        steps = sorted(int(s) for s in measured[run]['steps'])
        minutes = [seconds_at(args, run, s) / 60 for s in steps]
        for j, metric in enumerate(metrics):
          values = [measured[run]['steps'][str(s)].get(metric, np.nan) for s in steps]
          for row, x in enumerate((steps, minutes)):
            axes[row, j].plot(x, values, color=colours[arm], alpha=0.8,
                              label=arm if i == 0 else None)
    for j, metric in enumerate(metrics):
      axes[0, j].set_title(metric)
      axes[0, j].set_xlabel('G steps')
      axes[1, j].set_xlabel('CPU minutes (one core)')
      if metric in ('fd_ref', 'kid_ref'):
        axes[0, j].set_yscale('log')
        axes[1, j].set_yscale('log')
    axes[0, 0].legend()
    figure.tight_layout()
    figure.savefig(path(args, f'fashion_mnist_{study}.png'), dpi=80)
  classifiers = [r for arm in ('finetune', 'finetune_lambda0', 'madry')
                 for r in runs_of(names, arm)]
  full_tests = any('last' in measured[r]['full'] for r in classifiers)
  figure, axes = plt.subplots(1, 2 if full_tests else 1, figsize=(11 if full_tests else 6, 4),
                              squeeze=False)
  axes = axes[0]
  for arm in ('finetune', 'finetune_lambda0', 'madry'):
    for i, run in enumerate(runs_of(names, arm)):
      steps = sorted(int(s) for s in measured[run]['steps'])
      minutes = [total_seconds(args, run, s) / 60 for s in steps]
      for split, style in (('train', '--'), ('test', '-')):
        axes[0].plot(minutes, [measured[run]['steps'][str(s)][f'{split}_pgd'] for s in steps],
                     style, color=colours[arm], label=f'{arm} {split}' if i == 0 else None)
      full = measured[run]['full'].get('last')
      if full is None:  # Not measured on the whole test split (yet).
        continue
      axes[1].plot(full['epsilons'], full['pgd'], '-o', color=colours[arm],
                   label=f'{arm} PGD-20' if i == 0 else None)
      axes[1].plot(full['epsilons'][1:], full['apgd_t_worst'][1:], ':x', color=colours[arm],
                   label=f'{arm} + APGD-T' if i == 0 else None)
  axes[0].set_xlabel('CPU minutes (step 2: with step 1)')
  axes[0].set_ylabel(f'PGD-20 accuracy, eps {TRAIN_EPSILON} (1,000 examples)')
  if full_tests:
    axes[1].set_xlabel('eps ([-1, 1] scale)')
    axes[1].set_ylabel('test accuracy (10,000 examples)')
  for ax in axes:
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
  figure.tight_layout()
  figure.savefig(path(args, 'fashion_mnist_classifier.png'), dpi=80)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--data_dir', required=True, help='TFDS data_dir with fashion_mnist')
  parser.add_argument('--out', required=True)
  parser.add_argument('--reference_cache', required=True)
  parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1])
  parser.add_argument('--arms', nargs='+', choices=list(ARMS), default=list(ARMS),
                      help='the arms to run and report (a step-2 arm needs its co-training arm)')
  parser.add_argument('--extra_seed', type=int, default=2)
  parser.add_argument('--samples', type=int, default=10_000, help="G's samples per checkpoint")
  parser.add_argument('--g_every', type=int, default=1_000,
                      help="G is measured every N steps (and at the first and last checkpoint)")
  # AutoAttack's APGD-T has 9 targets and 100 steps: about 2 hours per classifier here, on all
  # 10,000 test images and 4 radii; 3 targets (the most likely classes) and 50 steps fit.
  parser.add_argument('--apgd_targets', type=int, default=3)
  parser.add_argument('--apgd_steps', type=int, default=50)
  parser.add_argument('--apgd_epsilons', type=float, nargs='+', default=None,
                      help='APGD-T only at these radii (default: every radius but 0)')
  parser.add_argument('--full_tests', nargs='+', default=['last', 'best', 'same_time'],
                      help="checkpoints measured on the whole test split ('best': by PGD-20 on "
                           "the 1,000 gap examples; 'same_time': Madry's at Rob-GAN's CPU time)")
  parser.add_argument('--half_time', type=float, default=None,
                      help='CPU seconds of the "speeds up convergence" comparison')
  parser.add_argument('--only', choices=('train', 'measure', 'report'))
  parser.add_argument('--measure_run', help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  os.makedirs(path(args, 'logs'), exist_ok=True)
  if args.measure_run:
    measure(args, args.measure_run)
    return
  names = [f'{arm}_seed{seed}' for seed in args.seeds for arm in args.arms]
  if args.only in (None, 'train'):
    train(args, names)
    if args.only == 'train':
      return
  if args.only in (None, 'measure'):
    measure_all(args, names)
    extra = disagreeing_pairs(args, names)
    if extra:
      more = [f'{arm}_seed{args.extra_seed}' for pair in extra for arm in pair]
      more += [f'robgan_seed{args.extra_seed}' for a, b in extra
               if ARMS[a].init and f'robgan_seed{args.extra_seed}' not in more]
      print('seeds disagree on', extra, '-> also', more, flush=True)
      train(args, more)
      measure_all(args, more)
      names += [n for n in more if n not in names]
  names = [n for n in names if os.path.exists(path(args, 'measure', f'{n}.json'))]
  if args.half_time is None:
    args.half_time = min((timeline(args, n)[-1, 1] for n in names
                          if n.startswith(('robgan_', 'noattack_'))), default=0.0) / 2
  text = report(args, names)
  with open(path(args, 'report.md'), 'w') as f:
    f.write(text + '\n')
  print(text)
  plot(args, names)


if __name__ == '__main__':
  main()
