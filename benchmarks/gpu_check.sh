#!/usr/bin/env bash
# GPU checks (issue 14, item 8): what CI cannot run (it has no GPU), in one call to a CUDA machine,
# in at most 8 minutes on one GPU, installing nothing beyond the project.
#
# Run from the repository root:
#     bash benchmarks/gpu_check.sh
# Through this workplace's device tool (one H200; the repo travels as a working tree, .venv does not),
# as one call; the script ends within about 8 minutes of its own (set-up ~75 s at most, checks
# 390 s at most), so timeout_s=540 only stops a hang:
#     run(command="bash benchmarks/gpu_check.sh", timeout_s=540)
# A session has 15 minutes of device time, the machine's start included: read the log before
# spending it on a second run. Sourced (`source benchmarks/gpu_check.sh`), it only defines its
# functions, for trying a check's parsing out without a GPU.
# The whole log goes to ${OUT:-/tmp}/gpu_check.log, the summary lines to gpu_check_summary.txt
# beside it, and the two training runs' summary.json files as gpu_check_*_summary.json (the
# device tool brings back what is under $OUT). Exit status: 0 when every check passed, else 1.
#
# The Python it tests with, first that fits:
#   - .venv, if its torch sees a CUDA device and it imports torchrig;
#   - python3, if its torch sees a CUDA device (the device machine's image: CUDA PyTorch and the
#     project's dependencies are there, and no package registry can be reached): the project alone
#     is installed into a temporary folder on PYTHONPATH (pip --no-index --no-deps). Wheels under
#     .whl/ (carried as the device README says, e.g. skorch for the sklearn GPU test) go there too;
#   - otherwise, with a GPU present, README.md's Quickstart install into a new .venv; where pip
#     cannot reach a registry, it says so and stops. (This path downloads PyTorch: the 8 minutes
#     do not cover it.)
#   Without a CUDA device every check reports FAIL (no CUDA device) at once.
#
# The checks run one after the other, each under its own timeout (110, 45, 45, 60 and 100 s; all of
# them within 390 s of the set-up's end), and every one runs even when an earlier one failed:
#   gpu-tests      pytest -m gpu -n0 over the test files that mark tests `gpu`: training in 32,
#                  bf16-mixed and 16-mixed (GradScaler) on CUDA, "auto" picking cuda + bf16, NaN
#                  detection with the step, exact resume on CUDA, a CUDA-fitted sklearn estimator
#                  loading on a CPU-only machine. Figure: pytest's counts (and a skip's reason).
#   overhead-bf16  benchmarks/overhead.py --device cuda --precision bf16-mixed (resp. 16-mixed):
#   overhead-fp16  Trainer.fit against PyTorch's hand-written autocast (+ GradScaler) loop, per
#                  epoch, both cases; PASS: every ratio <= 1.03 and bit-identical weights (deterministic
#                  kernels; overhead.py's docstring says why). Figure: each case's ratio and parity.
#   ddp-nccl       one epoch of recipes/vision/digits.yaml under torchrun with the nccl backend.
#                  torchrig treats one process as not distributed (_dist.launched needs WORLD_SIZE
#                  > 1; `--nproc 1` does not even start torchrun), so on one GPU a small driver runs
#                  the CLI under torchrun --nproc_per_node=1 with the world-size-1 group counted as
#                  distributed: torchrig's own nccl path (init_process_group with device_id,
#                  DistributedDataParallel, sharded loaders, all_reduce, barriers) then runs. With 2+
#                  GPUs it is the plain `torchrig train --nproc 2`. PASS: exit 0, summary.json
#                  written, meta.json's world_size as launched, the nccl backend seen (the driver's
#                  line, or NCCL's version line). Figure: backend, world size, NCCL version, accuracy.
#   channels-last  recipes/vision/digits.yaml as shipped (20 epochs, precision auto: bf16-mixed on a
#                  bf16 GPU) on cuda with model.channels_last=true (vision/small_cnn takes it).
#                  PASS: test accuracy >= 0.985, the floor the README states and
#                  tests/plugins/vision/test_vision_recipes.py asserts. Figure: accuracy, epochs,
#                  device, precision, wall time.
# Expected on one H200 (estimates, not yet measured): set-up 20-30 s, gpu-tests 30-60 s, each
# overhead 15-25 s, ddp-nccl 20-30 s, channels-last 30-60 s; about 3 minutes in all.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1

OUT_DIR=${OUT:-/tmp}
LOG=$OUT_DIR/gpu_check.log
BUDGET_S=390   # all checks together, from the end of the set-up (at most ~75 s on the device machine)
CHECKS=(gpu-tests overhead-bf16 overhead-fp16 ddp-nccl channels-last)
ACCURACY_FLOOR=0.985
OVERHEAD_TARGET=1.03
export PYTHONUNBUFFERED=1

started=$(date +%s)
checks_started=$started
summary=()
failed=()
WORK=
PY=

record() {  # record NAME RC FIGURE: one summary line per check
    local verdict=PASS
    [ "$2" -eq 0 ] || { verdict=FAIL; failed+=("$1"); }
    summary+=("$(printf '%-14s %-4s  %s' "$1" "$verdict" "$3")")
}

run_step() {  # run_step NAME SECONDS COMMAND...: run it under a timeout; output to the log and $WORK/NAME.out
    local name=$1 limit=$2 left t0 rc
    shift 2
    left=$(( BUDGET_S - ($(date +%s) - checks_started) ))
    if [ "$left" -lt 5 ]; then
        echo "== gpu_check: $name: not run, the ${BUDGET_S} s budget is spent" | tee "$WORK/$name.out"
        return 124
    fi
    [ "$limit" -le "$left" ] || limit=$left
    echo "== gpu_check: $name (timeout ${limit} s): $*"
    t0=$(date +%s)
    timeout -k 5 "$limit" "$@" 2>&1 | tee "$WORK/$name.out"
    rc=${PIPESTATUS[0]}
    if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
        echo "== gpu_check: $name: TIMED OUT after ${limit} s" | tee -a "$WORK/$name.out"
    fi
    echo "== gpu_check: $name: exit $rc in $(( $(date +%s) - t0 )) s"
    return "$rc"
}

stopped() {  # stopped NAME FIGURE: the figure, led by "TIMED OUT after N s; " (or "not run") if so
    local why
    why=$(sed -n "s/^== gpu_check: $1: \(TIMED OUT after [0-9]* s\|not run\).*/\1/p" "$WORK/$1.out" 2>/dev/null)
    echo "${why:+$why; }$2"
}

json_get() {  # json_get FILE KEY.PATH: print one value of a JSON file (nothing if absent)
    "$PY" -c 'import json, sys
d = json.load(open(sys.argv[1]))
for k in sys.argv[2].split("."):
    d = d[k]
print(d)' "$1" "$2" 2>/dev/null
}

fmt4() {  # fmt4 NUMBER: four decimals, or ? for nothing
    if [ -n "$1" ]; then printf '%.4f' "$1"; else printf '?'; fi
}

has_cuda_torch() {  # has_cuda_torch PYTHON: its torch imports and sees a CUDA device
    "$1" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' >/dev/null 2>&1
}

setup_env() {  # sets PY; on failure prints why and returns 1 (2: no CUDA device at all)
    local sys_py site missing
    if [ -x .venv/bin/python ] && has_cuda_torch .venv/bin/python &&
            .venv/bin/python -c 'import torchrig' 2>/dev/null; then
        PY=$PWD/.venv/bin/python
        echo "== gpu_check: using the existing .venv"
    elif sys_py=$(command -v python3) && has_cuda_torch "$sys_py"; then
        site=${TMPDIR:-/tmp}/torchrig-gpu-check-site
        echo "== gpu_check: $sys_py has CUDA PyTorch: installing the project alone into $site"
        echo "   (pip --no-index --no-deps: no dependency, nothing from a registry)"
        rm -rf "$site"
        if ! timeout 60 "$sys_py" -m pip install -q --no-index --no-deps --no-build-isolation --no-cache-dir \
                --target "$site" .; then
            echo "== gpu_check: pip could not build the project from this tree; that Python needs setuptools>=64"
            echo "   (and wheel, for setuptools < 70.1)"
            return 1
        fi
        if compgen -G '.whl/*.whl' >/dev/null; then  # wheels the caller carried for missing packages
            timeout 60 "$sys_py" -m pip install -q --no-index --no-deps --no-cache-dir --target "$site" .whl/*.whl ||
                { echo "== gpu_check: pip could not install the wheels in .whl/"; return 1; }
        fi
        export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}" PATH="$site/bin:$PATH"
        PY=$sys_py
    elif ! { command -v nvidia-smi >/dev/null && nvidia-smi -L 2>/dev/null | grep -q '^GPU'; }; then
        echo "== gpu_check: no CUDA device (no GPU in nvidia-smi, and no torch here that sees one)"
        return 2
    elif [ -e .venv ]; then
        echo "== gpu_check: a GPU is here, but .venv's torch does not see it and python3 has no CUDA PyTorch."
        echo "   README.md's Quickstart would keep .venv's torch; remove .venv to let this script install it."
        return 1
    else  # README.md's Quickstart, both commands; pip gives up quickly where no registry answers
        echo "== gpu_check: installing as README.md's Quickstart says (downloads PyTorch: minutes)"
        if ! PIP_DEFAULT_TIMEOUT=15 PIP_RETRIES=1 timeout 900 bash -c \
                'set -e; python -m venv .venv && . .venv/bin/activate && pip install ".[all]" && pip install ".[dev]"'; then
            echo "== gpu_check: pip could not install the project as README.md's Quickstart says (no package"
            echo "   registry reachable from this machine?). Stopping: nothing can be checked."
            return 1
        fi
        PY=$PWD/.venv/bin/python
        has_cuda_torch "$PY" || { echo "== gpu_check: the Quickstart's torch does not see the GPU"; return 1; }
    fi
    missing=$("$PY" -c 'import importlib.util as u
need = ["torch", "torchvision", "torchmetrics", "safetensors", "tqdm", "yaml", "matplotlib", "sklearn", "PIL",
        "pytest", "xdist", "torchrig", "torchrig_vision"]
print(" ".join(n for n in need if u.find_spec(n) is None))')
    if [ -n "$missing" ]; then
        echo "== gpu_check: $PY lacks: $missing. This machine cannot install them (no registry):"
        echo "   carry them as wheels in .whl/ (see the device README) and run again."
        return 1
    fi
    "$PY" -c 'import sys, torch, torchrig
print(f"python {sys.version.split()[0]} ({sys.executable}); torch {torch.__version__} (CUDA {torch.version.cuda}); "
      f"{torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}; "
      f"torchrig {torchrig.__version__} from {torchrig.__file__}")'
    "$PY" -m torchrig plugins
    return 0
}

check_gpu_tests() {
    local files rc figure skip
    mapfile -t files < <(grep -rlE 'mark\.gpu\b' tests --include='test_*.py' | sort)
    if [ ${#files[@]} -eq 0 ]; then record gpu-tests 1 "no test file marks a test gpu"; return; fi
    run_step gpu-tests 110 "$PY" -m pytest -m gpu -n0 -p no:cacheprovider "${files[@]}"
    rc=$?
    figure=$(grep -E '^=+ .* in [0-9.]+s' "$WORK/gpu-tests.out" | tail -1 | sed -E 's/^=+ //; s/ =+$//')
    skip=$(grep -m1 '^SKIPPED' "$WORK/gpu-tests.out" | sed -E 's/^SKIPPED \[[0-9]+\] [^ ]+: //')
    [ -z "$skip" ] || figure="$figure (skipped: $skip)"
    grep -q ' passed' <<<"$figure" || [ "$rc" -ne 0 ] || rc=1  # nothing passed proves nothing
    record gpu-tests "$rc" "$(stopped gpu-tests "${figure:-no pytest summary (exit $rc)}")"
}

check_overhead() {  # check_overhead NAME PRECISION
    local rc figure
    run_step "$1" 45 "$PY" benchmarks/overhead.py --device cuda --precision "$2" --repeats 30 --warmup 5 \
        --target "$OVERHEAD_TARGET" --check
    rc=$?
    # the table's rows: (a) name... steps plain rig ratio pairs us/step target parity result
    figure=$(awk -v t="$OVERHEAD_TARGET" '/^\([a-z]\) /{printf "%s%s ratio %s %s", sep, $1, $(NF-5), $(NF-1); sep="; "}
        END{printf " (target <= %s)", t}' "$WORK/$1.out")
    grep -q '^(' "$WORK/$1.out" || figure="no table (exit $rc)"
    record "$1" "$rc" "$(stopped "$1" "$2: $figure")"
}

check_ddp() {
    local rc=0 run=$WORK/ddp ngpu world backend nccl got acc figure why=()
    ngpu=$("$PY" -c 'import torch; print(torch.cuda.device_count())' 2>/dev/null) || ngpu=0
    if [ "${ngpu:-0}" -ge 2 ]; then
        world=2 backend="nccl (torchrig's choice on cuda)"
        run_step ddp-nccl 60 env NCCL_DEBUG=VERSION TORCHRIG_DIST_TIMEOUT=60 "$PY" -m torchrig train \
            recipes/vision/digits.yaml --nproc 2 --out "$run" --quiet \
            --set trainer.max_epochs=1 --set trainer.device=cuda
        rc=$?
    else
        world=1
        cat >"$WORK/ddp_one_gpu.py" <<'EOF'
"""torchrig's DDP path with the nccl backend on one GPU: a world-size-1 process group counts as
distributed (torchrig counts only WORLD_SIZE > 1); everything else is the CLI as shipped."""
import os
import sys

import torch.distributed as dist

from torchrig import _cli, _dist
from torchrig._loop import Trainer

for name in ("launched", "active", "world_size", "setup"):
    if not hasattr(_dist, name):
        sys.exit(f"gpu_check: torchrig._dist.{name} is gone; update benchmarks/gpu_check.sh's ddp-nccl driver")
_dist.launched = lambda: "RANK" in os.environ  # torchrun set it
_dist.active = lambda: dist.is_available() and dist.is_initialized()
_dist.world_size = lambda: dist.get_world_size() if _dist.active() else 1
setup, wrap, said = _dist.setup, Trainer._wrap_ddp, set()


def traced_setup(device):
    owned = setup(device)
    if dist.is_initialized() and "group" not in said:
        said.add("group")
        print(f"gpu_check: process group backend={dist.get_backend()} world_size={dist.get_world_size()} "
              f"device={device}", flush=True)
    return owned


def traced_wrap(self):
    wrap(self)
    if self._net is not self.model and "ddp" not in said:
        said.add("ddp")
        print(f"gpu_check: model wrapped in {type(self._net).__name__}", flush=True)


_dist.setup, Trainer._wrap_ddp = traced_setup, traced_wrap
sys.exit(_cli.main(sys.argv[1:]))
EOF
        run_step ddp-nccl 60 env NCCL_DEBUG=VERSION TORCHRIG_DIST_TIMEOUT=60 "$PY" -m torch.distributed.run \
            --standalone --nproc_per_node=1 "$WORK/ddp_one_gpu.py" train recipes/vision/digits.yaml \
            --out "$run" --quiet --set trainer.max_epochs=1 --set trainer.device=cuda
        rc=$?
        backend=$(sed -n 's/^gpu_check: process group backend=\([a-z]*\).*/\1/p' "$WORK/ddp-nccl.out" | head -1)
        backend=${backend:-not seen}
        [ "$backend" = nccl ] || why+=("backend $backend")
        grep -q '^gpu_check: model wrapped in DistributedDataParallel' "$WORK/ddp-nccl.out" || why+=("no DDP wrap seen")
    fi
    nccl=$(grep -o 'NCCL version [^ ]*' "$WORK/ddp-nccl.out" | head -1 | cut -d' ' -f3)
    [ "$world" -eq 1 ] || [ -n "$nccl" ] || why+=("no NCCL version line")
    got=$(json_get "$run/meta.json" world_size)
    [ "$got" = "$world" ] || why+=("meta.json world_size ${got:-missing} (want $world)")
    acc=$(json_get "$run/summary.json" test.accuracy)
    [ -n "$acc" ] || why+=("no summary.json")
    [ -f "$run/summary.json" ] && cp "$run/summary.json" "$OUT_DIR/gpu_check_ddp_summary.json"
    figure="backend $backend, world size $world, NCCL ${nccl:-?}, 1 epoch, test accuracy $(fmt4 "$acc")"
    [ "$rc" -eq 0 ] || figure="$figure; exit $rc"
    [ ${#why[@]} -eq 0 ] || { figure="$figure; $(printf '%s, ' "${why[@]}" | sed 's/, $//')"; rc=1; }
    record ddp-nccl "$rc" "$(stopped ddp-nccl "$figure")"
}

check_channels_last() {
    local rc run=$WORK/channels_last acc figure why=()
    run_step channels-last 100 "$PY" -m torchrig train recipes/vision/digits.yaml --out "$run" \
        --set trainer.device=cuda --set model.channels_last=true
    rc=$?
    acc=$(json_get "$run/summary.json" test.accuracy)
    if [ -z "$acc" ]; then
        why+=("no summary.json")
    elif ! awk -v a="$acc" -v f="$ACCURACY_FLOOR" 'BEGIN { exit !(a >= f) }'; then
        why+=("accuracy below $ACCURACY_FLOOR")
    fi
    grep -q 'channels_last: true' "$run/recipe.yaml" 2>/dev/null || why+=("channels_last not in the run's recipe")
    [ -f "$run/summary.json" ] && cp "$run/summary.json" "$OUT_DIR/gpu_check_channels_last_summary.json"
    figure="test accuracy $(fmt4 "$acc") (>= $ACCURACY_FLOOR), $(json_get "$run/summary.json" epochs) epochs,"
    figure="$figure $(json_get "$run/summary.json" device) $(json_get "$run/summary.json" precision),"
    figure="$figure $(json_get "$run/summary.json" wall_time_s) s"
    [ "$rc" -eq 0 ] || figure="$figure; exit $rc"
    [ ${#why[@]} -eq 0 ] || { figure="$figure; $(printf '%s, ' "${why[@]}" | sed 's/, $//')"; rc=1; }
    record channels-last "$rc" "$(stopped channels-last "$figure")"
}

main() {
    local status name why
    echo "== gpu_check: $(date -u '+%Y-%m-%d %H:%M:%S UTC') in $PWD; log: $LOG"
    command -v nvidia-smi >/dev/null && nvidia-smi -L
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX")
    trap 'rm -rf "$WORK"' EXIT
    setup_env
    status=$?
    if [ "$status" -eq 0 ]; then
        checks_started=$(date +%s)
        check_gpu_tests
        check_overhead overhead-bf16 bf16-mixed
        check_overhead overhead-fp16 16-mixed
        check_ddp
        check_channels_last
    else
        why="not run: no Python to test with (above)"
        [ "$status" -ne 2 ] || why="no CUDA device"
        for name in "${CHECKS[@]}"; do
            record "$name" 1 "$why"
        done
    fi
    echo
    echo "== gpu_check: summary ($(( $(date +%s) - started )) s)"
    printf '%s\n' "${summary[@]}" | tee "$OUT_DIR/gpu_check_summary.txt"
    if [ ${#failed[@]} -gt 0 ]; then
        echo "== gpu_check: FAILED: ${failed[*]}"
        return 1
    fi
    echo "== gpu_check: all ${#CHECKS[@]} checks passed"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then  # run, not sourced (sourcing gives the functions, for trying them out)
    mkdir -p "$OUT_DIR"
    main 2>&1 | tee "$LOG"
    exit "${PIPESTATUS[0]}"
fi
