#!/usr/bin/env bash
# Is this code ready for an accelerator? One command for the lent GPU machine (issue 24), whose
# image has JAX with CUDA, flax, optax, orbax, chex, PyTorch and tensorboard but no TensorFlow,
# TFDS, CLU or ml-collections:
#   bash benchmarks/accelerator_check.sh           # on the GPU machine, under 8 minutes
#   bash benchmarks/accelerator_check.sh --smoke   # on CPU, under 2 minutes (.ci/run runs it)
# Small pure-Python wheels the image lacks (ml-collections and its dependencies), put in .whl/
# beforehand (`pip download --no-deps -d .whl ml-collections`), are installed first. TensorFlow
# is kept out of every Python process (benchmarks/no_tensorflow), so what runs here runs there.
# Prints: the device; a test subset that needs no TensorFlow; the step time of configs/cifar10.py
# at batch 64 in float32 and bfloat16 with rolled loops; 2 minutes of training on in-memory
# arrays; the official PyTorch step (../shared/bench/ref_torch_step.py) on the same device when
# torch and the reference code are there; and the ratios. --smoke: configs/tiny.py at batch 8,
# 10 s of training, no PyTorch step.
set -euo pipefail
cd "$(dirname "$0")/.."
smoke=0
[[ "${1:-}" == "--smoke" ]] && smoke=1
out=$(mktemp -d)
if compgen -G ".whl/*.whl" > /dev/null; then
  python3 -m pip install -q --no-deps .whl/*.whl
fi
export PYTHONPATH="$PWD/benchmarks/no_tensorflow:$PWD${PYTHONPATH:+:$PYTHONPATH}"
python3 -c "import tensorflow" 2> /dev/null && { echo "TensorFlow is not kept out"; exit 1; }

echo "== device"
python3 -c "import jax; print(jax.__version__, jax.default_backend(), jax.devices())"
command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=name,memory.total --format=csv

echo "== tests that need no TensorFlow"
python3 -m pytest -q -o addopts="" -p no:cacheprovider -m "not slow" \
    tests/losses_test.py tests/sample_quality_test.py

if (( smoke )); then
  config=configs/tiny.py batch=8 seconds=10 repeats=1
else
  config=configs/cifar10.py batch=64 seconds=120 repeats=5
fi
echo "== step time of $config at batch $batch, rolled loops"
for dtype in float32 bfloat16; do
  extra=()
  [[ $dtype == float32 ]] && extra=(--train-seconds "$seconds")
  python3 benchmarks/step_time.py --config="$config" --batch-sizes="$batch" --dtype=$dtype \
      --unroll=false --repeats=$repeats "${extra[@]}" | tail -1 | tee "$out/jax_$dtype.json"
done

torch_json="$out/torch.json"
if (( ! smoke )) && python3 -c "import torch" 2> /dev/null \
    && [[ -f ../shared/bench/ref_torch_step.py ]]; then
  echo "== the official PyTorch step"
  device=$(python3 -c "import torch; print('cuda' if torch.cuda.is_available() else 'cpu')")
  python3 ../shared/bench/ref_torch_step.py --device "$device" --batch-sizes "$batch" \
      --quiet-warnings | tail -1 | tee "$torch_json"
fi

echo "== summary"
python3 - "$out" "$seconds" <<'EOF'
import json, os, sys
out, seconds = sys.argv[1], float(sys.argv[2])
jax_runs = {d: json.load(open(os.path.join(out, f'jax_{d}.json'))) for d in ('float32', 'bfloat16')}
f32, bf16 = (jax_runs[d]['results'][0] for d in ('float32', 'bfloat16'))
print(f"{jax_runs['float32']['device_kind']}: iteration {f32['iteration_s']:.4f} s (float32), "
      f"{bf16['iteration_s']:.4f} s (bfloat16): bfloat16 / float32 = "
      f"{bf16['iteration_s'] / f32['iteration_s']:.2f}")
print(f"training on in-memory arrays: {f32['train_iterations']} iterations in "
      f"{f32['train_s']} s, losses and state finite: {f32['train_finite']}")
torch_path = os.path.join(out, 'torch.json')
if os.path.exists(torch_path):
  torch = json.load(open(torch_path))
  row = torch['results'][0]
  official = row['iter_measured_s'] or row['iter_est_s']  # Measured, or 5 D + 1 G updates.
  print(f'official PyTorch iteration {official:.4f} s: ours / official = '
        f"{f32['iteration_s'] / official:.2f} (float32), {bf16['iteration_s'] / official:.2f} "
        '(bfloat16)')
else:
  print('official PyTorch step: not run (--smoke, or no torch or reference code here)')
if not f32['train_finite']:
  sys.exit('the training run produced non-finite values')
EOF
