#!/usr/bin/env bash
# AS-GAN vs the vanilla GAN on real CIFAR-10 (configs/cifar10_asgan.py:cpu), same seed, models
# and wall time: the two runs train side by side, each pinned to one CPU core, and both are
# killed (SIGKILL) after MINUTES; each is then evaluated from its last checkpoint.
#   bash benchmarks/asgan_vs_vanilla.sh DATA_DIR OUT_DIR MINUTES
# DATA_DIR is a {train,test}/<class>/*.jpg folder (e.g. ../shared/data/cifar10-jpeg). Writes
# OUT_DIR/{asgan,vanilla}/ (checkpoints, summaries, eval/robustness.json, eval/samples.png), the
# logs, OUT_DIR/samples_side_by_side.png, and prints the Markdown table of
# benchmarks/asgan_vs_vanilla.py.
set -uo pipefail
data=$(realpath "$1"); out=$(realpath -m "$2"); minutes=$3; mkdir -p "$out"
cd "$(dirname "$0")/.."
common=(--config=configs/cifar10_asgan.py:cpu --config.dataset.image_folder="$data")
train() {  # core, name, extra flags
  timeout -s KILL "${minutes}m" taskset -c "$1" python main.py "${common[@]}" \
      --workdir="$out/$2" --config.train.num_steps=1000000 "${@:3}" 2> "$out/train_$2.log"
}
train 0 asgan & train 1 vanilla --config.attack.num_steps=0 & wait
evaluate() {  # core, name, extra flags
  taskset -c "$1" python main.py "${common[@]}" --workdir="$out/$2" --mode=eval \
      --config.train.num_steps=1000000 "${@:3}" 2> "$out/eval_$2.log" \
    || { tail -20 "$out/eval_$2.log"; exit 1; }
}
evaluate 0 asgan & evaluate 1 vanilla --config.attack.num_steps=0 & wait
python benchmarks/asgan_vs_vanilla.py "$out"
