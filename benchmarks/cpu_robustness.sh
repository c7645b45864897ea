#!/usr/bin/env bash
# Rob-GAN (co-training + fine-tuning) vs the Madry baseline on real CIFAR-10, 2 CPU cores.
#   bash benchmarks/cpu_robustness.sh DATA_DIR OUT_DIR [skip-cotrain]
# DATA_DIR is a {train,test}/<class>/*.jpg folder (e.g. ../shared/data/cifar10-jpeg). Writes
# OUT_DIR/{robgan,madry}/eval/robustness.json and the logs; about 80 minutes of training, then
# the PGD sweeps, then PGD-20 against APGD-CE, APGD-T and Square (about 10 minutes a model),
# whose robustness.json replaces the sweep's (the logs keep every table).
set -euo pipefail
data=$(realpath "$1"); out=$2; mkdir -p "$out"
cd "$(dirname "$0")/.."
flags=(--config.dataset.image_folder="$data")
config_of() { [ "$1" = robgan ] && echo configs/cifar10_cpu.py || echo configs/cifar10_madry.py:cpu; }
if [ "${3:-}" != skip-cotrain ]; then
  python main.py --config=configs/cifar10_cpu.py --workdir="$out/robgan" "${flags[@]}" \
      2> "$out/cotrain.log"                                                   # 30 minutes
fi
python main.py --config=configs/cifar10_cpu.py --workdir="$out/robgan" --mode=finetune \
    "${flags[@]}" 2> "$out/finetune.log"                                      # 22 minutes
python main.py --config=configs/cifar10_madry.py:cpu --workdir="$out/madry" "${flags[@]}" \
    2> "$out/madry.log"                                          # 3 epochs, 37 minutes
for run in robgan madry; do
  python main.py --config="$(config_of $run)" --workdir="$out/$run" --mode=eval "${flags[@]}" \
      2> "$out/eval_$run.log"
done
python main.py --config=configs/cifar10_cpu.py --workdir="$out/robgan" --mode=eval \
    --config.eval.stage=cotrain "${flags[@]}" 2> "$out/eval_robgan_cotrain.log"
strong=(--config.eval.attacks="('pgd', 'autoattack')"
        --config.eval.epsilons="(0.0, 0.02, 0.04, 0.0627, 0.08)"
        --config.eval.num_examples=100 --config.eval.train_num_examples=100
        --config.eval.attack_budgets.square.num_queries=1000)
# Rob-GAN's co-trained D: issue 12's fine-tuning, in the official frozen-BatchNorm mode then the
# default, collapsed its classifier (BENCHMARKS.md, "Step 2's BatchNorm").
for run in robgan madry; do
  stage=(); [ $run = robgan ] && stage=(--config.eval.stage=cotrain)
  python main.py --config="$(config_of $run)" --workdir="$out/$run" --mode=eval "${flags[@]}" \
      "${strong[@]}" "${stage[@]}" 2> "$out/eval_strong_$run.log"
done
grep -h -A 15 "Robustness of" "$out"/eval_*.log
