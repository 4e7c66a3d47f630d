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
# Site values come from the config file (default $DNNTOPO_SLURM_CONFIG, else slurm/site.conf
# when present), then from the flags. Logs go to RUN/logs/<job>_<array job>_<task>.out.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
config="${DNNTOPO_SLURM_CONFIG:-}"
[ -z "$config" ] && [ -f "$here/slurm/site.conf" ] && config="$here/slurm/site.conf"
args=("$@")
for ((k = 0; k < ${#args[@]}; k++)); do
  [ "${args[k]}" = --config ] && config="${args[k + 1]}"
done
NODES=1; NTASKS=1; CPUS_PER_TASK=1; MPI=pmix; VENV="$here/.venv"; TIME_TRAIN=; TIME_TOPOLOGY=
PARTITION=; ACCOUNT=; QOS=; GPUS_PER_TASK=; MEM=; MODULES=
if [ -n "$config" ]; then
  [ -f "$config" ] || { echo "pipeline.sh: --config $config: no such file" >&2; exit 2; }
  # shellcheck disable=SC1090
  source "$config"
fi
run_dir=; net=lenet; dataset=fashion_mnist; trial=0; epochs=; save=; train_args=; topo_args=
while [ $# -gt 0 ]; do
  case "$1" in
    --run-dir) run_dir="$2" ;; --net) net="$2" ;; --dataset) dataset="$2" ;; --trial) trial="$2" ;;
    --epochs) epochs="$2" ;; --save-epochs) save="$2" ;; --train-args) train_args="$2" ;;
    --topology-args) topo_args="$2" ;; --config) ;;
    --partition) PARTITION="$2" ;; --account) ACCOUNT="$2" ;; --qos) QOS="$2" ;;
    --nodes) NODES="$2" ;; --ntasks) NTASKS="$2" ;; --cpus-per-task) CPUS_PER_TASK="$2" ;;
    --gpus-per-task) GPUS_PER_TASK="$2" ;; --mem) MEM="$2" ;; --mpi) MPI="$2" ;;
    --time-train) TIME_TRAIN="$2" ;; --time-topology) TIME_TOPOLOGY="$2" ;; --venv) VENV="$2" ;;
    *) echo "pipeline.sh: unknown option $1 (see the header of slurm/pipeline.sh)" >&2; exit 2 ;;
  esac
  shift 2
done
[ -n "$run_dir" ] && [ -n "$epochs" ] && [ -n "$save" ] || {
  echo "pipeline.sh: --run-dir, --epochs and --save-epochs are required" >&2; exit 2; }
run_dir="$(cd "$run_dir" 2>/dev/null && pwd || { mkdir -p "$run_dir" && cd "$run_dir" && pwd; })"
run="$run_dir/${net}_${dataset}/trial_${trial}"
mkdir -p "$run/logs"

site=()
[ -n "$PARTITION" ] && site+=(--partition "$PARTITION")
[ -n "$ACCOUNT" ] && site+=(--account "$ACCOUNT")
[ -n "$QOS" ] && site+=(--qos "$QOS")
[ -n "$MEM" ] && site+=(--mem "$MEM")
train_site=("${site[@]}" --ntasks 1 --cpus-per-task "$CPUS_PER_TASK")
[ -n "$GPUS_PER_TASK" ] && train_site+=(--gpus-per-task "$GPUS_PER_TASK")
[ -n "$TIME_TRAIN" ] && train_site+=(--time "$TIME_TRAIN")
topo_site=("${site[@]}" --nodes "$NODES" --ntasks "$NTASKS" --cpus-per-task "$CPUS_PER_TASK")
[ -n "$TIME_TOPOLOGY" ] && topo_site+=(--time "$TIME_TOPOLOGY")

export DNNTOPO_HOME="$here" DNNTOPO_VENV="$VENV" DNNTOPO_MODULES="$MODULES" DNNTOPO_MPI="$MPI"
export DNNTOPO_RUN="$run" DNNTOPO_TOPOLOGY_ARGS="$topo_args"
export DNNTOPO_TRAIN_ARGS="--net $net --dataset $dataset --trial $trial --epochs $epochs --save-epochs $save --run-dir $run_dir $train_args"
train_id=$(sbatch --parsable "${train_site[@]}" --output "$run/logs/%x_%j.out" "$here/slurm/train.sbatch")
array=$(echo "$save" | tr ' ' ',')
topo_id=$(sbatch --parsable "${topo_site[@]}" --dependency "afterok:${train_id%%;*}" --array "$array" \
  --output "$run/logs/%x_%A_%a.out" "$here/slurm/topology_array.sbatch")
echo "training job ${train_id%%;*}, topology array ${topo_id%%;*} (epochs $array) -> $run"
