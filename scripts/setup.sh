#!/usr/bin/env bash
# Set up dnntopo on a fresh Debian machine (or say what to install elsewhere). Idempotent: a
# second run only checks. Options: --test (test extras), --slurm (SLURM and munge for the tests).
# Environment: DNNTOPO_VENV (default .venv in the repository), PYTHON (default python3).
set -euo pipefail
cd "$(dirname "$0")/.."
want_test=0; want_slurm=0
for a in "$@"; do
  case "$a" in
    --test) want_test=1 ;;
    --slurm) want_slurm=1 ;;
    *) echo "setup.sh: unknown option $a (use --test, --slurm)" >&2; exit 2 ;;
  esac
done

pkgs=(openmpi-bin libopenmpi-dev dataset-fashion-mnist)
[ "$want_slurm" = 1 ] && pkgs+=(slurm-wlm munge)
missing=()
for p in "${pkgs[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing ${missing[*]} with apt-get"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "setup: please install ${missing[*]} (Debian: sudo apt-get install ${missing[*]};" \
         "on a cluster: module load openmpi, and point --data-root at Fashion-MNIST's IDX files)" >&2
    command -v mpicc >/dev/null || echo "setup: continuing without MPI: runs will be serial" >&2
  fi
fi

venv="${DNNTOPO_VENV:-.venv}"
py="${PYTHON:-python3}"
[ -x "$venv/bin/python" ] || "$py" -m venv "$venv"
pip=("$venv/bin/python" -m pip --disable-pip-version-check -q)
if ! "$venv/bin/python" -c "import torch" 2>/dev/null; then
  echo "setup: installing torch 2.13.0 (CPU wheel)"
  "${pip[@]}" install torch==2.13.0
fi
extras="ripser,slurm,imagenet"
if ldconfig -p 2>/dev/null | grep -q 'libmpi\.so'; then extras="mpi,$extras"
else echo "setup: no MPI library found: mpi4py not installed, runs will be serial" >&2; fi
[ "$want_test" = 1 ] && extras="$extras,test"
stamp="$venv/.dnntopo-setup"
digest="$(sha1sum setup.py | cut -d' ' -f1) $extras"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$digest" ] || ! "$venv/bin/python" -c "import dnntopo, hpc" 2>/dev/null; then
  echo "setup: installing dnntopo[$extras] into $venv"
  "${pip[@]}" install -e ".[$extras]" 2>&1 | grep -v -e "^ *$" -e BuildBackendWarning -e '!!' -e '\*\*\*' -e 'Please be careful' -e 'name as your package' -e 'with strategy' || true
  "$venv/bin/python" -c "import dnntopo, hpc" || { echo "setup: installing dnntopo failed" >&2; exit 1; }
  echo "$digest" > "$stamp"
fi
echo "setup: ready ($venv/bin/dnntopo)"
