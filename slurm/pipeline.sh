#!/usr/bin/env bash
# Submit the training of one run, then the topology of its saved epochs as one job array that
# starts when training succeeded (--dependency=afterok). Prints the two job ids.
#
#   slurm/pipeline.sh --run-dir RUNS --net lenet --dataset fashion_mnist --trial 0 \
#       --epochs 50 --save-epochs "0 1 5 10 20 30 40 50" \
#       [--train-args "--lr 0.0005 --data-root DIR"] [--topology-args "--max-dim 2"] \
#       [--config slurm/site.conf] [--partition P] [--account A] [--qos Q] [--ntasks K] \
#       [--cpus-per-task C] [--gpus-per-task G] [--mem M] [--time-train T] [--time-topology T]
#
# Site values (the flags of `dnntopo submit`: --partition, --account, --qos, --nodes, --ntasks,
# --cpus-per-task, --gpus-per-task, --mem, --modules, --mpi, --venv, --time-train,
# --time-topology) come from hpc.submit.Site, the one definition: its defaults, then the config
# file (default $DNNTOPO_SLURM_CONFIG, else slurm/site.conf when present), then the flags.
# Logs go to RUN/logs/<job>_<array job>_<task>.out.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
config="${DNNTOPO_SLURM_CONFIG:-}"
[ -z "$config" ] && [ -f "$here/slurm/site.conf" ] && config="$here/slurm/site.conf"
run_dir=; net=lenet; dataset=fashion_mnist; trial=0; epochs=; save=; train_args=; topo_args=
site_flags=(); venv=
while [ $# -gt 0 ]; do
  [ $# -ge 2 ] || { echo "pipeline.sh: $1 needs a value" >&2; exit 2; }
  case "$1" in
    --run-dir) run_dir="$2" ;; --net) net="$2" ;; --dataset) dataset="$2" ;; --trial) trial="$2" ;;
    --epochs) epochs="$2" ;; --save-epochs) save="$2" ;; --train-args) train_args="$2" ;;
    --topology-args) topo_args="$2" ;;
    --config) config="$2" ;;
    --venv) venv="$2"; site_flags+=("$1" "$2") ;;
    --*) site_flags+=("$1" "$2") ;;   # site values: checked by hpc.submit (the one definition)
    *) echo "pipeline.sh: unknown argument $1 (see the header of slurm/pipeline.sh)" >&2; exit 2 ;;
  esac
  shift 2
done
[ -n "$run_dir" ] && [ -n "$epochs" ] && [ -n "$save" ] || {
  echo "pipeline.sh: --run-dir, --epochs and --save-epochs are required" >&2; exit 2; }
if [ -n "$config" ] && [ ! -f "$config" ]; then
  echo "pipeline.sh: --config $config: no such file" >&2; exit 2
fi
# the Python that renders the site values: that of --venv, else the repository's .venv, else python3
py="${DNNTOPO_PYTHON:-}"
[ -z "$py" ] && [ -n "$venv" ] && py="$venv/bin/python"
[ -z "$py" ] && [ -x "$here/.venv/bin/python" ] && py="$here/.venv/bin/python"
py="${py:-python3}"
site_sh="$(PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}" "$py" -m hpc.submit shell ${config:+--config "$config"} "${site_flags[@]}")" || exit 2
eval "$site_sh"   # sets train_site=(...), topo_site=(...), MODULES, MPI, VENV
run_dir="$(cd "$run_dir" 2>/dev/null && pwd || { mkdir -p "$run_dir" && cd "$run_dir" && pwd; })"
run="$run_dir/${net}_${dataset}/trial_${trial}"
mkdir -p "$run/logs"

export DNNTOPO_HOME="$here" DNNTOPO_VENV="$VENV" DNNTOPO_MODULES="$MODULES" DNNTOPO_MPI="$MPI"
export DNNTOPO_RUN="$run" DNNTOPO_TOPOLOGY_ARGS="$topo_args"
export DNNTOPO_TRAIN_ARGS="--net $net --dataset $dataset --trial $trial --epochs $epochs --save-epochs $save --run-dir $run_dir $train_args"
train_id=$(sbatch --parsable "${train_site[@]}" --output "$run/logs/%x_%j.out" "$here/slurm/train.sbatch")
array=$(echo "$save" | tr ' ' ',')
topo_id=$(sbatch --parsable "${topo_site[@]}" --dependency "afterok:${train_id%%;*}" --array "$array" \
  --output "$run/logs/%x_%A_%a.out" "$here/slurm/topology_array.sbatch")
echo "training job ${train_id%%;*}, topology array ${topo_id%%;*} (epochs $array) -> $run"
