#!/usr/bin/env bash
# Rob-GAN (co-training + fine-tuning) vs the Madry baseline on real CIFAR-10, 2 CPU cores.
#   bash benchmarks/cpu_robustness.sh DATA_DIR OUT_DIR [skip-cotrain]
# DATA_DIR is a {train,test}/<class>/*.jpg folder (e.g. ../shared/data/cifar10-jpeg). Writes
# OUT_DIR/{robgan,madry}/eval/robustness.json and the logs; about 80 minutes in all.
set -euo pipefail
data=$(realpath "$1"); out=$2; mkdir -p "$out"
cd "$(dirname "$0")/.."
flags=(--config.dataset.image_folder="$data")
if [ "${3:-}" != skip-cotrain ]; then
  python main.py --config=configs/cifar10_cpu.py --workdir="$out/robgan" "${flags[@]}" \
      2> "$out/cotrain.log"                                                   # 30 minutes
fi
python main.py --config=configs/cifar10_cpu.py --workdir="$out/robgan" --mode=finetune \
    "${flags[@]}" 2> "$out/finetune.log"                                      # 12 minutes
python main.py --config=configs/cifar10_madry.py:cpu --workdir="$out/madry" "${flags[@]}" \
    2> "$out/madry.log"                                                       # 3 epochs
for run in robgan madry; do
  python main.py --config="configs/$([ $run = robgan ] && echo cifar10_cpu.py || echo cifar10_madry.py:cpu)" \
      --workdir="$out/$run" --mode=eval "${flags[@]}" 2> "$out/eval_$run.log"
done
python main.py --config=configs/cifar10_cpu.py --workdir="$out/robgan" --mode=eval \
    --config.eval.stage=cotrain "${flags[@]}" 2> "$out/eval_robgan_cotrain.log"
grep -h -A 15 "Robustness of" "$out"/eval_*.log
