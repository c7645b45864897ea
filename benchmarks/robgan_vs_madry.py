r"""Rob-GAN against the Madry baseline at the budget of 2 CPU cores (issue 22; paper Table 1, Figs. 1
and 8).

    python benchmarks/robgan_vs_madry.py --data=../shared/data/cifar10-jpeg --out=/tmp/vs

Per seed of `--seeds`, on the real CIFAR-10 images:
1. Rob-GAN: co-training (`configs/cifar10_cpu.py`, `--cotrain_steps` G steps), then step 2 with
   the defaults (`--updates` updates of eq. 10, lambda 0.5), and step 2 with lambda 0 (no fake
   term) from the same co-trained checkpoint;
2. Madry (`configs/cifar10_madry.py:cpu`, constant learning rate: its first stage outlasts the
   run) for `--madry_steps` updates, a checkpoint every `--madry_every`. Two of them are measured:
   the one whose D has been trained on as many real training images as Rob-GAN's (co-training
   and step 2), and the one whose training wall time is nearest Rob-GAN's (co-training plus
   step 2 with the defaults).
3. `--mode=eval` of each model (Rob-GAN without step 2, with it, with it at lambda 0, and the two
   Madry checkpoints) on `--test_examples` test and `--train_examples` training images (fixed
   random subsets per seed): PGD-20 (step eps / 5) at every radius of `EPSILONS`, the train/test
   gap, and for Rob-GAN with step 2 and Madry at the same wall time APGD-T with `APGD_T` budgets.
The training runs log PGD-20 test accuracy at eps 0.02 on the same test images (Rob-GAN: every
`--cotrain_steps / 2` G steps and after step 2; Madry: every `--madry_every * 4` updates); that
is the curve of the plot. Training wall time is the time from a run's first log line to each
step's log line, less the time its evaluations took; compilation and data loading count.

Every run is a `main.py` command, printed before it runs; its log is kept in `--out`, and a run
whose log says it finished is not run again, so the script resumes where it stopped. Prints
Markdown tables and writes `--out/robgan_vs_madry.png`.
"""

import argparse
import ast
import datetime
import json
import os
import re
import shutil
import statistics

from finetune_batch_norm import run
from finetune_batch_norm import single_checkpoint_workdir

ROBGAN, MADRY = 'configs/cifar10_cpu.py', 'configs/cifar10_madry.py:cpu'
EPSILONS = (0.0, 0.02, 0.04, 0.0627, 0.08)
PLOT_EPSILON = 0.02
# APGD-T with 3 target classes and 25 steps, not AutoAttack's 9 and 100: 12x cheaper, to fit.
APGD_T = ['--config.eval.attack_budgets.apgd_t.num_target_classes=3',
          '--config.eval.attack_budgets.apgd_t.num_steps=25']
# The test accuracy logged while training: PGD-20 at PLOT_EPSILON, step eps / 5.
TRAINING_EVAL = [f'--config.eval.attack.epsilon={PLOT_EPSILON}',
                 f'--config.eval.attack.step_size={PLOT_EPSILON / 5}']


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--data', required=True, help='{train,test}/<class>/*.jpg folder')
  parser.add_argument('--out', required=True)
  parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1])
  parser.add_argument('--cotrain_steps', type=int, default=120)
  parser.add_argument('--updates', type=int, default=60, help='step 2 updates (batch 128)')
  parser.add_argument('--madry_steps', type=int, default=540)
  parser.add_argument('--madry_every', type=int, default=30)
  parser.add_argument('--test_examples', type=int, default=500)
  parser.add_argument('--train_examples', type=int, default=250)
  args = parser.parse_args(argv)
  out = os.path.abspath(args.out)
  os.makedirs(out, exist_ok=True)
  data = [f'--config.dataset.image_folder={os.path.abspath(args.data)}']
  c = args.cotrain_steps
  common = lambda seed: [*data, f'--config.seed={seed}', *TRAINING_EVAL]
  for seed in args.seeds:
    robgan = os.path.join(out, f'robgan_seed{seed}')
    run(out, f'cotrain_seed{seed}',
        ['--mode=train', f'--workdir={robgan}', *common(seed), f'--config.train.num_steps={c}',
         f'--config.train.checkpoint_every_steps={c // 2}',
         f'--config.train.log_every_steps={c // 4}', '--config.train.max_to_keep=10',
         '--config.evals.sample_grid.every_steps=0', f'--config.evals.pgd_accuracy.every_steps={c // 2}',
         f'--config.evals.pgd_accuracy.cotrain_num_examples={args.test_examples}'],
        done=lambda log: f'step {c}, pgd_accuracy' in log, config=ROBGAN)
    step2 = [f'--config.finetune.num_steps={args.updates}',
             f'--config.finetune.log_every_steps={args.updates // 4}',
             f'--config.finetune.checkpoint_every_steps={args.updates}',
             '--config.evals.pgd_accuracy.every_epochs=100.0',  # at the last update only
             f'--config.evals.pgd_accuracy.finetune_num_examples={args.test_examples}']
    for name, workdir, flags in [
        ('finetune', robgan, []),
        ('finetune_lambda0', robgan + '_lambda0',
         [f'--config.finetune.init_workdir={robgan}', '--config.finetune.fake_weight=0.0'])]:
      run(out, f'{name}_seed{seed}',
          ['--mode=finetune', f'--workdir={workdir}', *common(seed), *step2, *flags],
          done=lambda log: f'step {args.updates}, pgd_accuracy' in log, config=ROBGAN)
    madry = os.path.join(out, f'madry_seed{seed}')
    run(out, f'madry_seed{seed}',
        ['--mode=train', f'--workdir={madry}', *common(seed),
         f'--config.finetune.num_steps={args.madry_steps}',
         f'--config.finetune.log_every_steps={args.madry_every}',
         f'--config.finetune.checkpoint_every_steps={args.madry_every}',
         '--config.finetune.max_to_keep=1000',
         f'--config.evals.pgd_accuracy.every_epochs={4 * args.madry_every / 390}',
         f'--config.evals.pgd_accuracy.finetune_num_examples={args.test_examples}'],
        done=lambda log: f'step {args.madry_steps}, pgd_accuracy' in log, config=MADRY)
  # The evaluations after every training run, so that nothing else shares the cores with one.
  for seed in args.seeds:
    robgan, madry = (os.path.join(out, f'{name}_seed{seed}') for name in ('robgan', 'madry'))
    evals = [('robgan_cotrain', ROBGAN, robgan, 'cotrain', []),
             ('robgan_finetune', ROBGAN, robgan, 'finetune', APGD_T),
             ('robgan_finetune_lambda0', ROBGAN, robgan + '_lambda0', 'finetune', [])]
    for budget, step in madry_budgets(out, seed, args).items():
      evals.append((f'madry_{budget}', MADRY, single_checkpoint_workdir(
          madry, step, f'{madry}_step{step}', stage_dir='madry/checkpoints'), 'madry',
                    APGD_T if budget == 'time' else []))
    for name, config, workdir, stage, strong in evals:
      attacks = "('pgd', 'apgd-t')" if strong else "('pgd',)"
      evaluators = "('accuracy_curve', 'strong_attacks')" if strong else "('accuracy_curve',)"
      run(out, f'eval_{name}_seed{seed}',
          ['--mode=eval', f'--workdir={workdir}', *common(seed), f'--config.eval.stage={stage}',
           f'--config.eval.evaluators={evaluators}', f'--config.eval.attacks={attacks}', *strong,
           f'--config.eval.epsilons={EPSILONS}', f'--config.eval.num_examples={args.test_examples}',
           f'--config.eval.train_num_examples={args.train_examples}'],
          done=lambda log: 'Robustness of' in log, config=config,
          after=lambda name=name, workdir=workdir: shutil.copy(
              os.path.join(workdir, 'eval', 'robustness.json'),
              os.path.join(out, f'eval_{name}_seed{seed}.json')))
  print(report(out, args))
  plot(out, args)


_LINE_TIME = re.compile(r'^[IWEF](\d{4}) (\d\d:\d\d:\d\d\.\d+) ')
_EVAL_DONE = re.compile(r'(?:step (\d+), pgd_accuracy:|before step 2,) (\{.*\})')


def timeline(log_path: str):
  """From a `main.py` log: ({step: training seconds at its logged metrics}, {step: test metrics
  of `pgd_accuracy`, step 0 for step 2's starting point}). Training seconds run from the log's
  first line, less each evaluation: from the line before its result to the result."""
  start = previous = None
  excluded, seconds, evaluations = 0.0, {}, {}
  for line in open(log_path):
    match = _LINE_TIME.match(line)
    if not match:
      continue
    t = datetime.datetime.strptime(f'2026{match[1]} {match[2]}', '%Y%m%d %H:%M:%S.%f').timestamp()
    start = t if start is None else start
    done = _EVAL_DONE.search(line)
    if done:
      excluded += t - previous
      evaluations[int(done[1] or 0)] = ast.literal_eval(re.sub(r'\bnan\b', 'None', done[2]))
    logged = re.search(r'logging_writer.py:\d+\] \[(\d+)\] ', line)
    if logged:
      seconds.setdefault(int(logged[1]), t - start - excluded)
    previous = t
  return seconds, evaluations


def robgan_seconds(out: str, seed: int, args) -> float:
  """Rob-GAN's training wall time: co-training and step 2 with the defaults."""
  cotrain, _ = timeline(os.path.join(out, f'cotrain_seed{seed}.log'))
  step2, _ = timeline(os.path.join(out, f'finetune_seed{seed}.log'))
  return cotrain[args.cotrain_steps] + step2[args.updates]


def robgan_images(args) -> int:
  """Real training images Rob-GAN's D is trained on: n_dis 5 batches of 64 per G step, then
  128 per step 2 update."""
  return args.cotrain_steps * 5 * 64 + args.updates * 128


def madry_budgets(out: str, seed: int, args):
  """{'images': the Madry checkpoint (batch 128) with Rob-GAN's number of real images, 'time':
  the checkpoint whose training wall time is nearest Rob-GAN's}."""
  seconds, _ = timeline(os.path.join(out, f'madry_seed{seed}.log'))
  saved = [s for s in seconds if s % args.madry_every == 0]
  images = min(saved, key=lambda s: abs(s * 128 - robgan_images(args)))
  target = robgan_seconds(out, seed, args)
  return dict(images=images, time=min(saved, key=lambda s: abs(seconds[s] - target)))


def report(out: str, args) -> str:
  lines = ['\nBudgets (training wall time, evaluations excluded; real training images seen by D):\n',
           '| seed | model | updates | real images | minutes |', '|---|---|---|---|---|']
  results = {}
  for seed in args.seeds:
    budgets = madry_budgets(out, seed, args)
    madry, _ = timeline(os.path.join(out, f'madry_seed{seed}.log'))
    lam0, _ = timeline(os.path.join(out, f'finetune_lambda0_seed{seed}.log'))
    cotrain, _ = timeline(os.path.join(out, f'cotrain_seed{seed}.log'))
    lines += [
        f'| {seed} | Rob-GAN, co-trained | {args.cotrain_steps} G steps | '
        f'{args.cotrain_steps * 320:,} | {cotrain[args.cotrain_steps] / 60:.1f} |',
        f'| {seed} | Rob-GAN, + step 2 | + {args.updates} | {robgan_images(args):,} | '
        f'{robgan_seconds(out, seed, args) / 60:.1f} |',
        f'| {seed} | Rob-GAN, + step 2 at lambda 0 | + {args.updates} | {robgan_images(args):,} | '
        f'{(cotrain[args.cotrain_steps] + lam0[args.updates]) / 60:.1f} |']
    for budget, step in budgets.items():
      lines.append(f'| {seed} | {MODELS["madry_" + budget]} | {step} | {step * 128:,} | '
                   f'{madry[step] / 60:.1f} |')
    for name in MODELS:
      path = os.path.join(out, f'eval_{name}_seed{seed}.json')
      if os.path.exists(path):
        results.setdefault(name, []).append(json.load(open(path)))
  eps = ' | '.join(f'{e:g}' for e in EPSILONS)
  lines += [f'\nTest accuracy, mean over seeds (each seed in brackets), {args.test_examples} test '
            'images; PGD-20 and, where measured, APGD-T and the worst case of the two:\n',
            f'| model | attack | {eps} |', '|---|---|' + '---|' * len(EPSILONS)]
  for name, runs in results.items():
    attacks = {'PGD-20': 'test_accuracy'}
    if 'test_accuracy_by_attack' in runs[0]:
      attacks.update({'APGD-T': ('test_accuracy_by_attack', 'apgd-t'),
                      'worst case': 'test_accuracy_worst_case'})
    for attack, key in attacks.items():
      lines.append(f'| {MODELS[name]} | {attack} | ' + ' | '.join(
          cell([lookup(r, key)[i] for r in runs]) for i in range(len(EPSILONS))) + ' |')
  lines += [f'\nTrain/test gap under PGD-20 ({args.train_examples} training images): training '
            'minus test accuracy, mean over seeds:\n',
            f'| model | {eps} |', '|---|' + '---|' * len(EPSILONS)]
  for name, runs in results.items():
    lines.append(f'| {MODELS[name]} | ' + ' | '.join(
        cell([r['train_accuracy'][i] - r['test_accuracy'][i] for r in runs], signed=True)
        for i in range(len(EPSILONS))) + ' |')
  return '\n'.join(lines)


MODELS = {'robgan_cotrain': 'Rob-GAN without step 2', 'robgan_finetune': 'Rob-GAN',
          'robgan_finetune_lambda0': 'Rob-GAN, step 2 at lambda 0',
          'madry_images': 'Madry, same images', 'madry_time': 'Madry, same wall time'}


def lookup(result, key):
  return result[key[0]][key[1]] if isinstance(key, tuple) else result[key]


def cell(values, signed=False) -> str:
  form = '+.3f' if signed else '.3f'
  each = ' / '.join(format(v, form) for v in values)
  return f'{statistics.mean(values):{form}} ({each})'


def plot(out: str, args) -> None:
  """PGD-20 test accuracy at PLOT_EPSILON against training wall time, one line per run."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  from matplotlib import pyplot  # pylint: disable=g-import-not-at-top
  figure, axes = pyplot.subplots(figsize=(7, 4.5))
  for seed in args.seeds:
    style = '-' if seed == args.seeds[0] else '--'
    seconds, evals = timeline(os.path.join(out, f'cotrain_seed{seed}.log'))
    end = seconds[args.cotrain_steps]
    points = [(seconds[s], r['test_accuracy_pgd']) for s, r in sorted(evals.items())]
    for name, color, label in [('finetune', 'C0', 'Rob-GAN'),
                               ('finetune_lambda0', 'C2', 'Rob-GAN, step 2 at lambda 0')]:
      step2, step2_evals = timeline(os.path.join(out, f'{name}_seed{seed}.log'))
      line = (points if name == 'finetune' else points[-1:]) + [
          (end + step2[args.updates], step2_evals[args.updates]['test_accuracy_pgd'])]
      axes.plot(*zip(*[(t / 60, a) for t, a in line]), style, marker='o', color=color, label=f'{label}, seed {seed}')
    seconds, evals = timeline(os.path.join(out, f'madry_seed{seed}.log'))
    axes.plot([seconds[s] / 60 for s in sorted(evals)],
              [evals[s]['test_accuracy_pgd'] for s in sorted(evals)], style, marker='s',
              color='C3', label=f'Madry, seed {seed}')
  axes.set_xlabel('training wall time (minutes, 2 CPU cores)')
  axes.set_ylabel(f'test accuracy, PGD-20 at eps {PLOT_EPSILON}')
  axes.set_title(f'CIFAR-10, {args.test_examples} test images')
  axes.grid(alpha=0.3)
  axes.legend(fontsize=8)
  figure.tight_layout()
  figure.savefig(os.path.join(out, 'robgan_vs_madry.png'), dpi=120)


if __name__ == '__main__':
  main()
