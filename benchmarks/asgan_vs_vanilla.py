"""The table of benchmarks/asgan_vs_vanilla.sh: AS-GAN vs the vanilla GAN, from their workdirs.

    python benchmarks/asgan_vs_vanilla.py OUT_DIR [--last 200]

Reads OUT_DIR/{asgan,vanilla}: the step of the evaluated checkpoint, D's source accuracy under
PGD on real test images (eval/robustness.json), and from the TensorBoard summaries the mean and
standard deviation of D's and G's losses over the `--last` logged steps up to that checkpoint
(configs/cifar10_asgan.py:cpu logs every step), a measure of training stability. Writes
OUT_DIR/samples_side_by_side.png (AS-GAN left, vanilla right) and prints a Markdown table.
"""

import argparse
import glob
import json
import os

import numpy as np
from PIL import Image

RUNS = ('asgan', 'vanilla')


def scalars(workdir: str, tags) -> dict:
  """{tag: {step: value}} of the TensorBoard event files of a workdir (a resumed run's later
  values win)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  values = {tag: {} for tag in tags}
  for path in sorted(glob.glob(os.path.join(workdir, 'events.out.tfevents.*'))):
    for event in tf.compat.v1.train.summary_iterator(path):
      for v in event.summary.value:
        if v.tag in values:
          values[v.tag][event.step] = float(tf.make_ndarray(v.tensor))
  return values


def run_summary(workdir: str, last: int) -> dict:
  with open(os.path.join(workdir, 'eval', 'robustness.json')) as f:
    result = json.load(f)
  step = result['step']
  losses = scalars(workdir, ('d_loss', 'g_loss'))
  summary = {'step': step, 'epsilons': result['epsilons'],
             'source_accuracy': result['test_accuracy'], 'llv_test': result['llv_test']}
  for tag, by_step in losses.items():
    window = [by_step[s] for s in sorted(by_step) if s <= step][-last:]
    summary[f'{tag}_mean'], summary[f'{tag}_std'] = float(np.mean(window)), float(np.std(window))
  summary['window'] = len(window)
  return summary


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument('out_dir')
  parser.add_argument('--last', type=int, default=200)
  args = parser.parse_args()
  runs = {name: run_summary(os.path.join(args.out_dir, name), args.last) for name in RUNS}
  grids = [Image.open(os.path.join(args.out_dir, name, 'eval', 'samples.png')) for name in RUNS]
  side = Image.new('RGB', (sum(g.width for g in grids) + 16, max(g.height for g in grids)),
                   'white')
  side.paste(grids[0], (0, 0))
  side.paste(grids[1], (grids[0].width + 16, 0))
  side.save(os.path.join(args.out_dir, 'samples_side_by_side.png'))
  epsilons = runs['asgan']['epsilons']
  print('| run | G updates | ' + ' | '.join(f'source acc. eps {e:g}' for e in epsilons)
        + ' | LLV (test) | D loss mean +- std | G loss mean +- std |')
  print('|---' * (len(epsilons) + 5) + '|')
  for name, r in runs.items():
    print(f'| {name} | {r["step"]} | '
          + ' | '.join(f'{a:.3f}' for a in r['source_accuracy'])
          + f' | {r["llv_test"]:.3f} | {r["d_loss_mean"]:.3f} +- {r["d_loss_std"]:.3f} | '
          f'{r["g_loss_mean"]:.3f} +- {r["g_loss_std"]:.3f} |')
  print(f'Loss statistics over the last {runs["asgan"]["window"]} / '
        f'{runs["vanilla"]["window"]} logged steps.')
  print(json.dumps(runs))


if __name__ == '__main__':
  main()
