r"""G measured in the reference classifier's features (issue 23): does the attack make a better G?

    python benchmarks/generator_metrics.py --study=robgan --data=../shared/data/cifar10-jpeg \
        --out=/tmp/gm --reference_cache=/tmp/reference
    python benchmarks/generator_metrics.py --study=asgan ...   # same flags
    python benchmarks/generator_metrics.py --study=sanity ...  # real images scored as samples

- robgan: Rob-GAN (`configs/cifar10_cpu.py`) against the same class-conditional GAN without the
  attack (`--config.attack.num_steps=0`); asgan: AS-GAN against the vanilla GAN
  (`configs/cifar10_asgan.py:cpu`, `attack.num_steps=0`). Per seed of `--seeds`, the two runs
  train side by side, each pinned to one CPU core, and are killed after `--minutes`: the same
  seed, models and wall time. Checkpoints every `--every` G steps are all kept. Then every
  checkpoint is measured (`evaluators/reference_metrics.py`, `--samples` samples against the
  10,000 test images): fd_ref, KID, precision and recall, GAN-test for the conditional study, and
  CAS (`--cas_samples` samples; beside the same classifier trained on as many real images) at each
  run's last checkpoint. Training seconds per checkpoint come from the run's log (its first line
  to the step's metrics line; compilation and data loading count).
- sanity: the reference classifier's metrics of real training images, one repeated image,
  uniform noise and one class, scored as if they were G's samples.

A run whose results exist is not run again. Prints Markdown tables; writes `--out/<study>.png`
and `--out/<study>.json`.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from robgan_vs_madry import timeline  # pylint: disable=g-import-not-at-top

from rob_gan_jax import checkpoints  # pylint: disable=g-import-not-at-top
from rob_gan_jax import evaluators
from rob_gan_jax import models
from rob_gan_jax import task as task_lib
from rob_gan_jax import workdir as workdir_lib
from rob_gan_jax.evaluators import reference_metrics
from rob_gan_jax.input_pipeline import host_tf
from rob_gan_jax.metrics import reference
from rob_gan_jax.metrics import sample_quality
from rob_gan_jax.input_pipeline import splits

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STUDIES = {  # config, (name, flags) of the two arms.
    'robgan': ('configs/cifar10_cpu.py', (('robgan', ()), ('no_attack', (
        '--config.attack.num_steps=0',)))),
    'asgan': ('configs/cifar10_asgan.py:cpu', (('asgan', ()), ('vanilla', (
        '--config.attack.num_steps=0',)))),
}
METRICS = ('fd_ref', 'kid_ref', 'precision_ref', 'recall_ref')


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--study', required=True, choices=(*STUDIES, 'sanity'))
  parser.add_argument('--data', required=True, help='{train,test}/<class>/*.jpg folder')
  parser.add_argument('--out', required=True)
  parser.add_argument('--reference_cache', required=True)
  parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1])
  parser.add_argument('--minutes', type=float, default=12)
  parser.add_argument('--every', type=int, default=20, help='checkpoint every N G steps')
  parser.add_argument('--samples', type=int, default=5_000)
  parser.add_argument('--cas_samples', type=int, default=5_000)
  args = parser.parse_args(argv)
  os.makedirs(args.out, exist_ok=True)
  host_tf.tensorflow()
  if args.study == 'sanity':
    print(sanity(args))
    return
  for seed in args.seeds:
    train_pair(args, seed)
  results = {f'{arm}_seed{seed}': measure(args, f'{arm}_seed{seed}')
             for seed in args.seeds for arm, _ in STUDIES[args.study][1]}
  with open(os.path.join(args.out, f'{args.study}.json'), 'w') as f:
    json.dump(results, f, indent=1)
  print(report(args, results))
  plot(args, results)


def common_flags(args, workdir: str):
  return [f'--config.dataset.image_folder={os.path.abspath(args.data)}',
          f'--config.reference.cache_dir={os.path.abspath(args.reference_cache)}',
          f'--workdir={workdir}']


def train_pair(args, seed: int) -> None:
  """The two arms of one seed, side by side, each on its own core, killed after --minutes."""
  config, arms = STUDIES[args.study]
  if all(os.path.exists(os.path.join(args.out, f'{arm}_seed{seed}.log')) for arm, _ in arms):
    return
  processes = []
  for core, (arm, flags) in enumerate(arms):
    name = f'{arm}_seed{seed}'
    command = ['timeout', '-s', 'KILL', f'{args.minutes * 60:.0f}', 'taskset', '-c', str(core),
               sys.executable, 'main.py', f'--config={config}', '--library_info',
               *common_flags(args, os.path.join(args.out, name)), f'--config.seed={seed}',
               '--config.train.num_steps=1000000', f'--config.train.log_every_steps={args.every}',
               f'--config.train.checkpoint_every_steps={args.every}',
               '--config.train.max_to_keep=1000',
               '--config.evals.pgd_accuracy.every_steps=0',
               '--config.evals.sample_grid.every_steps=0', *flags]
    print('$', ' '.join(command), flush=True)
    log = open(os.path.join(args.out, f'{name}.log'), 'w')
    processes.append(subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT))
  for process in processes:
    process.wait()


def measure(args, name: str):
  """{step: metrics + 'seconds'} of every checkpoint of a run, cached in out/<name>.json."""
  path = os.path.join(args.out, f'{name}.json')
  if os.path.exists(path):
    return {int(k): v for k, v in json.load(open(path)).items()}
  workdir = os.path.join(args.out, name)
  config = workdir_lib.load_config(workdir)
  config.evals.reference_metrics.eval_num_samples = args.samples
  config.evals.reference_metrics.eval_cas_num_samples = args.cas_samples
  task = task_lib.Task.from_config(config)
  generator, discriminator = models.create_models(config.model)
  context = evaluators.Context(config, task, workdir, stage='cotrain', training=False,
                               generator=generator, discriminator=discriminator, mesh=None)
  evaluator = reference_metrics.Evaluator(context)
  seconds = timeline(os.path.join(args.out, f'{name}.log'))[0]
  steps = sorted(s for s in checkpoints.manager(os.path.join(workdir, 'checkpoints')).all_steps()
                 if s in seconds)
  results = {}
  for step in steps:
    evaluator.cas_num_samples = args.cas_samples if step == steps[-1] else 0
    weights = workdir_lib.load_weights(workdir, 'cotrain', step=step)
    metrics = evaluator.run(weights).metrics
    metrics.pop('reference_classifier', None)
    results[step] = dict(metrics, seconds=seconds[step])
    print(name, step, {k: round(v, 4) for k, v in results[step].items()
                       if isinstance(v, float)}, flush=True)
  with open(path, 'w') as f:
    json.dump(results, f, indent=1)
  return results


def report(args, results) -> str:
  """Markdown: each run's last checkpoint (the same wall time), then the means over seeds."""
  _, arms = STUDIES[args.study]
  columns = ['G steps', 'minutes', *METRICS, 'gan_test_accuracy', 'cas_accuracy',
             'cas_real_accuracy']
  lines = ['| run | ' + ' | '.join(columns) + ' |', '|---' * (len(columns) + 1) + '|']
  for name, run in results.items():
    step = max(run)
    last = run[step]
    cells = [str(step), f'{last["seconds"] / 60:.1f}'] + [
        f'{last[c]:.4f}' if c in last else '-' for c in columns[2:]]
    if 'kid_ref' in last:
      cells[3] += f' ± {last["kid_ref_std"]:.4f}'
    lines.append(f'| {name} | ' + ' | '.join(cells) + ' |')
  lines += ['', '| arm, mean of seeds at the last checkpoint | ' + ' | '.join(METRICS) + ' |',
            '|---' * (len(METRICS) + 1) + '|']
  for arm, _ in arms:
    runs = [run[max(run)] for name, run in results.items() if name.startswith(arm + '_seed')]
    lines.append(f'| {arm} | ' + ' | '.join(
        f'{statistics.mean(r[m] for r in runs):.4f}' for m in METRICS) + ' |')
  return '\n'.join(lines)


def plot(args, results) -> None:
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  figure, axes = plt.subplots(2, len(METRICS), figsize=(4 * len(METRICS), 7))
  colours = dict(zip([arm for arm, _ in STUDIES[args.study][1]], ('tab:red', 'tab:blue')))
  for name, run in results.items():
    arm, seed = name.rsplit('_seed', 1)
    steps = sorted(run)
    for row, x in enumerate(([run[s]['seconds'] / 60 for s in steps], steps)):
      for ax, metric in zip(axes[row], METRICS):
        ax.plot(x, [run[s][metric] for s in steps], marker='o', color=colours[arm],
                linestyle='-' if seed == '0' else '--', label=f'{arm}, seed {seed}')
        ax.set_xlabel(('training minutes (one core)', 'G steps')[row])
        ax.set_title(metric)
  axes[0][0].legend()
  figure.suptitle(f'{args.study}: G in the reference classifier\'s features '
                  '(fd_ref, KID: lower is better)')
  figure.tight_layout()
  figure.savefig(os.path.join(args.out, f'{args.study}.png'), dpi=80)


def sanity(args) -> str:
  """Markdown of the metrics of real training images and three broken 'generators'."""
  from configs import cifar10_cpu  # pylint: disable=g-import-not-at-top
  config = cifar10_cpu.get_config()
  config.dataset.image_folder = os.path.abspath(args.data)
  cache_dir = os.path.abspath(args.reference_cache)
  classifier = reference.load_or_train(config, cache_dir)
  real = reference.real_features(config, classifier, cache_dir)
  test = reference.test_split(config)
  other = reference.labelled(config)
  other.seed = config.reference.seed + 1  # Not the subset of CAS's real-data ceiling.
  images, labels = splits.load_subset(other, 'train', args.samples)
  rng = np.random.default_rng(0)
  one_class = splits.load_subset(other, 'train', None)
  one_class = one_class[0][one_class[1] == 3][:args.samples], one_class[1][one_class[1] == 3][
      :args.samples]
  cases = {
      'real training images': (images, labels),
      'one real image, repeated': (np.repeat(images[:1], args.samples, 0),
                                   np.repeat(labels[:1], args.samples)),
      'uniform noise': (rng.integers(0, 256, images.shape, dtype=np.uint8), labels),
      'real images of one class (cat)': one_class,
  }
  lines = [f'Reference classifier: clean test accuracy {classifier.info["test_accuracy"]:.4f}',
           '', '| samples | ' + ' | '.join(METRICS) + ' | KID std | GAN-test | CAS | ceiling |',
           '|---' * (len(METRICS) + 5) + '|']
  for name, (x, y) in cases.items():
    logits, features = classifier.outputs(x)
    m = sample_quality.metrics(real, features)
    gan_test = sample_quality.gan_test(logits, y, 10)[0]
    cas = ceiling = '-'
    if name == 'real training images':
      cas = f'{reference.trained_accuracy(x, y, config, test):.4f}'
      ceiling = f'{reference.real_data_accuracy(config, cache_dir, args.cas_samples, test):.4f}'
    lines.append(f'| {name} ({len(y)}) | ' + ' | '.join(f'{m[k]:.4f}' for k in METRICS) +
                 f' | {m["kid_ref_std"]:.4f} | {gan_test:.4f} | {cas} | {ceiling} |')
  return '\n'.join(lines)


if __name__ == '__main__':
  main()
