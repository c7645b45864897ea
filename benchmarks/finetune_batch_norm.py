r"""Step 2's BatchNorm and learning-rate choices from the same co-trained checkpoints (issue 22).

    python benchmarks/finetune_batch_norm.py --data=../shared/data/cifar10-jpeg --out=/tmp/bn

On real CIFAR-10 with `configs/cifar10_cpu.py`:
1. co-trains to G step max(`--cotrain_steps`), keeping a checkpoint at each of them (each gets a
   workdir `cotrain_<step>` holding that checkpoint alone, for `finetune.init_workdir`);
2. measures each co-trained D on `--test_examples` test images (a random subset per seed; 10,000
   is the whole split): clean accuracy, PGD-20 accuracy at eps 0.03125 (step eps / 5) and the
   prediction statistics, as saved and with its BatchNorm statistics recalibrated on clean
   (every seed) and on attacked (first seed) training images (`recalibrated_accuracy`);
3. fine-tunes each for `--updates` updates with every variant of `VARIANTS` and seed of `--seeds`
   (collapse guard off, so that a collapsed run is measured too), then measures the same
   (`pgd_accuracy` at the last update).
Every run is a `main.py` command, printed before it runs; its log is kept in `--out`, and a run
whose result is there is not run again, so the script resumes where it stopped. Prints Markdown
tables: the loss of the first and last logged updates, the test prediction statistics, clean
and PGD accuracy.
"""

import argparse
import ast
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = 'configs/cifar10_cpu.py'
# Every setting compared is given explicitly, whatever the defaults of configs/default.py.
FROZEN = ['--config.finetune.discriminator_train_mode=False']
TRAINING_MODE = ['--config.finetune.discriminator_train_mode=True']
OFFICIAL_LR = ['--config.finetune.learning_rate=1e-3']
LOW_LR = ['--config.finetune.learning_rate=1e-4']
NO_RECALIBRATION = ['--config.finetune.recalibrate_batch_norm=none']
VARIANTS = {
    'frozen (official)': FROZEN + OFFICIAL_LR + NO_RECALIBRATION,
    'recalibrated clean, frozen': FROZEN + OFFICIAL_LR + [
        '--config.finetune.recalibrate_batch_norm=clean'],
    'recalibrated attacked, frozen': FROZEN + OFFICIAL_LR + [
        '--config.finetune.recalibrate_batch_norm=attacked'],
    'training mode': TRAINING_MODE + OFFICIAL_LR + NO_RECALIBRATION,
    'frozen, lr 1e-4': FROZEN + LOW_LR + NO_RECALIBRATION,
    'training mode, lr 1e-4': TRAINING_MODE + LOW_LR + NO_RECALIBRATION,
}


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--data', required=True, help='{train,test}/<class>/*.jpg folder')
  parser.add_argument('--out', required=True)
  parser.add_argument('--cotrain_steps', type=int, nargs='+', default=[120, 240])
  parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1])
  parser.add_argument('--updates', type=int, default=60)
  parser.add_argument('--variants', nargs='+', default=list(VARIANTS), choices=list(VARIANTS))
  parser.add_argument('--test_examples', type=int, default=10_000,
                      help='test images measured (a random subset per seed); 10,000 = CIFAR-10\'s '
                           'whole test split')
  args = parser.parse_args(argv)
  out = os.path.abspath(args.out)
  os.makedirs(out, exist_ok=True)
  data = [f'--config.dataset.image_folder={os.path.abspath(args.data)}']
  test = [f'--config.eval.num_examples={args.test_examples}',
          f'--config.evals.pgd_accuracy.finetune_num_examples={args.test_examples}']
  cotrain = os.path.join(out, 'cotrain')
  run(out, 'cotrain', ['--mode=train', f'--workdir={cotrain}', *data,
                       f'--config.train.num_steps={max(args.cotrain_steps)}',
                       f'--config.train.checkpoint_every_steps={min(args.cotrain_steps)}',
                       f'--config.train.max_to_keep={len(args.cotrain_steps) + 2}',
                       '--config.evals.sample_grid.every_steps=0',
                       f'--config.evals.pgd_accuracy.every_steps={min(args.cotrain_steps)}'],
      done=lambda log: f'[{max(args.cotrain_steps)}]' in log)
  for step in args.cotrain_steps:
    init = single_checkpoint_workdir(cotrain, step, os.path.join(out, f'cotrain_{step}'))
    # Each seed draws its own test subset (`input_pipeline.splits.load_subset`).
    for seed, mode in [(seed, 'clean') for seed in args.seeds] + [(args.seeds[0], 'attacked')]:
      name = f'eval_cotrain_{step}_seed{seed}_{mode}'
      evaluators = ("('pgd_accuracy', 'recalibrated_accuracy')" if mode == 'clean'
                    else "('recalibrated_accuracy',)")
      run(out, name, ['--mode=eval', f'--workdir={init}', *data, *test, f'--config.seed={seed}',
                      '--config.eval.stage=cotrain', f'--config.eval.evaluators={evaluators}',
                      '--config.eval.epsilons=(0.0, 0.03125)',
                      f'--config.evals.recalibrated_accuracy.mode={mode}'],
          done=lambda log: 'Robustness of' in log,
          after=lambda: shutil.copy(os.path.join(init, 'eval', 'robustness.json'),
                                    os.path.join(out, f'{name}.json')))
    for seed in args.seeds:  # Every variant of a seed before the next seed.
      for variant in args.variants:
        workdir = os.path.join(out, f'finetune_{step}', slug(variant), f'seed{seed}')
        run(out, f'finetune_{step}_{slug(variant)}_seed{seed}',
            ['--mode=finetune', f'--workdir={workdir}', *data, *test,
             f'--config.finetune.init_workdir={init}', f'--config.seed={seed}',
             f'--config.finetune.num_steps={args.updates}', '--config.finetune.log_every_steps=5',
             f'--config.finetune.checkpoint_every_steps={args.updates}',
             '--config.finetune.collapse_guard.patience=0', *VARIANTS[variant]],
            done=lambda log: f'step {args.updates}, pgd_accuracy' in log)
  print(report(out, args))


def slug(variant: str) -> str:
  return re.sub(r'[^a-z0-9]+', '_', variant.lower()).strip('_')


def run(out: str, name: str, flags, *, done, after=None, config: str = CONFIG) -> None:
  """Runs `python main.py --config=<config> flags` with its log in out/name.log, unless the log
  says it finished (`done(log text)`); then `after()`, if it exited 0."""
  log = os.path.join(out, f'{name}.log')
  if os.path.exists(log) and done(open(log).read()):
    return
  # --library_info: CLU's metric lines, which `robgan_vs_madry.timeline` reads.
  command = [sys.executable, 'main.py', f'--config={config}', '--library_info', *flags]
  print('$', ' '.join(command), flush=True)
  with open(log, 'w') as f:
    code = subprocess.call(command, cwd=REPO, stdout=f, stderr=subprocess.STDOUT)
  if code:
    print(f'  exit status {code}; see {log}', flush=True)
  elif after:
    after()


def single_checkpoint_workdir(source: str, step: int, workdir: str, *,
                              stage_dir: str = 'checkpoints') -> str:
  """A workdir of `source`'s config whose only checkpoint of the stage kept in `stage_dir`
  (co-training's by default; 'madry/checkpoints') is its step `step`, so that
  `finetune.init_workdir` and `--mode=eval` (which take the latest) use it."""
  checkpoint = os.path.join(source, stage_dir, str(step))
  if not os.path.isdir(checkpoint):
    raise FileNotFoundError(f'{checkpoint} is missing: the run did not keep step {step}')
  if not os.path.isdir(os.path.join(workdir, stage_dir, str(step))):
    os.makedirs(os.path.join(workdir, stage_dir), exist_ok=True)
    for name in ('config.json', 'workdir_version.json'):
      shutil.copy(os.path.join(source, name), workdir)
    shutil.copytree(checkpoint, os.path.join(workdir, stage_dir, str(step)))
  return workdir


def finetune_result(log_path: str, updates: int):
  """Loss at the first and last logged updates and the final test figures (`pgd_accuracy`'s
  metrics), from a fine-tuning log (None if it has not finished)."""
  if not os.path.exists(log_path):
    return None
  text = open(log_path).read()
  final = re.search(rf'step {updates}, pgd_accuracy: (\{{.*\}})', text)
  if not final:
    return None
  logged = re.findall(r'\] \[(\d+)\] (.*loss=.*)', text)
  rows = {int(step): dict(kv.split('=') for kv in fields.split(', ')) for step, fields in logged}
  first, last = min(rows), max(rows)
  return dict(loss_first=float(rows[first]['loss']), loss_last=float(rows[last]['loss']),
              **ast.literal_eval(final.group(1)))


def report(out: str, args) -> str:
  lines = []
  for step in args.cotrain_steps:
    lines.append(f'\nCo-trained to G step {step}; {args.test_examples} test images per seed, '
                 'PGD-20 at eps 0.03125; per seed:\n')
    lines.append('| D | loss, first -> last logged update | test: largest class share | test: '
                 'prediction information | clean | PGD-20 |')
    lines.append('|---|---|---|---|---|---|')
    for seed, mode in [(seed, 'clean') for seed in args.seeds] + [(args.seeds[0], 'attacked')]:
      path = os.path.join(out, f'eval_cotrain_{step}_seed{seed}_{mode}.json')
      if not os.path.exists(path):
        continue
      r = json.load(open(path))
      if 'test_accuracy_clean' in r:
        lines.append(f'| co-trained, as saved (seed {seed}) | - | {r["test_max_class_share"]:.3f} '
                     f'| {r.get("test_prediction_information", math.nan):.3f} '
                     f'| {r["test_accuracy_clean"]:.4f} | {r["test_accuracy_pgd"]:.4f} |')
      acc = r['recalibrated_test_accuracy']
      lines.append(f'| co-trained, recalibrated {mode} (seed {seed}) | - | '
                   f'{r["recalibrated_test_max_class_share"]:.3f} | '
                   f'{r.get("recalibrated_test_prediction_information", math.nan):.3f} | '
                   f'{acc[0]:.4f} | {acc[1]:.4f} |')
    for variant in args.variants:
      results = [finetune_result(os.path.join(out, f'finetune_{step}_{slug(variant)}_seed{s}.log'),
                                 args.updates) for s in args.seeds]
      done = [r for r in results if r]
      if not done:
        continue
      cell = lambda key, fmt: ' / '.join(format(r.get(key, math.nan), fmt) for r in done)
      mean = lambda key: statistics.mean(r[key] for r in done)
      lines.append(
          f'| {variant} ({len(done)} seeds) | {cell("loss_first", ".1f")} -> '
          f'{cell("loss_last", ".2f")} | {cell("test_max_class_share", ".2f")} | '
          f'{cell("test_prediction_information", ".3f")} | '
          f'{cell("test_accuracy_clean", ".4f")} (mean {mean("test_accuracy_clean"):.4f}) | '
          f'{cell("test_accuracy_pgd", ".4f")} (mean {mean("test_accuracy_pgd"):.4f}) |')
  return '\n'.join(lines)


if __name__ == '__main__':
  main()
