"""hpc/submit.py: the site values, their file, sbatch arguments and submitit parameters (golden text,
no cluster needed), and the `python -m hpc.submit shell` bridge to the sbatch templates."""
import subprocess
import sys

import pytest
from submitit.slurm import slurm as submitit_slurm

from conftest import REPO
from hpc.submit import Site, minutes

DEFAULTS = {"partition": "", "account": "", "qos": "", "time_train": "02:00:00", "time_topology": "00:30:00",
            "nodes": 1, "ntasks": 1, "cpus_per_task": 1, "gpus_per_task": 0, "mem": "", "modules": "",
            "mpi": "pmix", "venv": ""}

SITE_FILE = """\
# a test site: comments, quotes and blank lines as in a shell file

PARTITION=gpu                 # the GPU partition
ACCOUNT='proj42'
QOS="normal"
TIME_TRAIN=04:00:00
TIME_TOPOLOGY=45
NODES=2
NTASKS=4
CPUS_PER_TASK=3
GPUS_PER_TASK=1
MEM=16G
MODULES="openmpi/4.1 python/3.11"   # two modules
MPI=pmix
VENV='/opt/my venv'
"""

TRAIN_ARGS = ["--partition", "gpu", "--account", "proj42", "--qos", "normal", "--mem", "16G",
              "--ntasks", "1", "--cpus-per-task", "3", "--time", "04:00:00", "--gpus-per-task", "1"]
TOPO_ARGS = ["--partition", "gpu", "--account", "proj42", "--qos", "normal", "--mem", "16G",
             "--nodes", "2", "--ntasks", "4", "--cpus-per-task", "3", "--time", "45"]
SETUP = ["module load openmpi/4.1 python/3.11", "source '/opt/my venv'/bin/activate"]


@pytest.fixture
def site_file(tmp_path):
    path = tmp_path / "site.conf"
    path.write_text(SITE_FILE)
    return path


# ---------------------------------------------------------------- Site values and file

def test_site_defaults():
    site = Site()
    assert Site.names() == list(DEFAULTS)
    assert {n: getattr(site, n) for n in Site.names()} == DEFAULTS


def test_site_from_file(site_file):
    site = Site.from_file(site_file)
    assert {n: getattr(site, n) for n in Site.names()} == {
        "partition": "gpu", "account": "proj42", "qos": "normal", "time_train": "04:00:00",
        "time_topology": "45", "nodes": 2, "ntasks": 4, "cpus_per_task": 3, "gpus_per_task": 1,
        "mem": "16G", "modules": "openmpi/4.1 python/3.11", "mpi": "pmix", "venv": "/opt/my venv"}


def test_site_file_empty_values_keep_the_base(tmp_path):
    path = tmp_path / "s.conf"
    path.write_text("ACCOUNT=\nQOS=high\n# NTASKS=9\n")
    site = Site.from_file(path, base=Site(account="acct", ntasks=3))
    assert (site.account, site.qos, site.ntasks) == ("acct", "high", 3)


@pytest.mark.parametrize("line,words", [
    ("PARTITON=gpu", ["PARTITON", "unknown key"]),
    ("NTASKS=four", ["--ntasks", "four"]),
    ("NODES=0", ["--nodes", "0"]),
    ("TIME_TOPOLOGY=30min", ["--time-topology", "30min"]),
    ("TIME_TRAIN=2:00:00:00", ["--time-train", "2:00:00:00"]),
])
def test_site_file_errors_name_the_value(tmp_path, line, words):
    path = tmp_path / "bad.conf"
    path.write_text(f"PARTITION=gpu\n{line}\n")
    with pytest.raises(ValueError) as exc:
        Site.from_file(path)
    for w in words:
        assert w in str(exc.value)


def test_updated_refuses_unknown_names_listing_the_valid_ones():
    with pytest.raises(ValueError) as exc:
        Site().updated(partitionn="gpu", bogus=1)
    msg = str(exc.value)
    assert "bogus" in msg and "partitionn" in msg
    assert all(name in msg for name in DEFAULTS)


def test_updated_keeps_values_for_none_and_empty():
    site = Site(partition="a", gpus_per_task=1).updated(partition=None, account="", qos="q", gpus_per_task=0)
    assert (site.partition, site.account, site.qos, site.gpus_per_task) == ("a", "", "q", 0)


def test_example_file_is_generated_from_site():
    assert (REPO / "slurm" / "site.conf.example").read_text() == Site.example_text()
    p = subprocess.run([sys.executable, "-m", "hpc.submit", "example"], capture_output=True, text=True,
                       timeout=60, cwd=REPO)
    assert p.returncode == 0 and p.stdout == Site.example_text()


def test_example_file_reads_back_as_the_defaults(tmp_path):
    path = tmp_path / "site.conf"
    path.write_text(Site.example_text())
    assert Site.from_file(path) == Site()


@pytest.mark.parametrize("limit,expected", [
    ("45", 45), ("10:30", 11), ("10:00", 10), ("02:00:00", 120), ("00:30:00", 30), ("00:00:30", 1),
    ("1-02", 1560), ("1-02:03", 1563), ("1-02:03:04", 1564), ("0", 1)])
def test_minutes_of_slurm_time_limits(limit, expected):
    assert minutes(limit) == expected


# ---------------------------------------------------------------- sbatch arguments and submitit

def test_sbatch_args(site_file):
    site = Site.from_file(site_file)
    assert site.sbatch_args("train") == TRAIN_ARGS
    assert site.sbatch_args("topology") == TOPO_ARGS
    with pytest.raises(ValueError):
        site.sbatch_args("extract")


def test_sbatch_args_of_defaults_leave_empty_values_out():
    assert Site().sbatch_args("train") == ["--ntasks", "1", "--cpus-per-task", "1", "--time", "02:00:00"]
    assert Site().sbatch_args("topology") == ["--nodes", "1", "--ntasks", "1", "--cpus-per-task", "1",
                                              "--time", "00:30:00"]


def test_submitit_parameters_of_topology(site_file):
    params = Site.from_file(site_file).submitit_parameters("topology", "x", "slurm", after="123")
    assert params == {
        "name": "x", "timeout_min": 45, "nodes": 2, "tasks_per_node": 2, "cpus_per_task": 3,
        "slurm_partition": "gpu", "slurm_account": "proj42", "slurm_qos": "normal", "slurm_mem": "16G",
        "slurm_srun_args": ["--mpi=pmix"], "slurm_additional_parameters": {"dependency": "afterok:123"},
        "slurm_setup": SETUP}


def test_submitit_parameters_of_train(site_file):
    params = Site.from_file(site_file).submitit_parameters("train", "t", "slurm")
    assert params == {
        "name": "t", "timeout_min": 240, "nodes": 1, "tasks_per_node": 1, "cpus_per_task": 3,
        "slurm_partition": "gpu", "slurm_account": "proj42", "slurm_qos": "normal", "slurm_mem": "16G",
        "slurm_srun_args": [], "slurm_additional_parameters": {}, "slurm_setup": SETUP,
        "slurm_gpus_per_task": 1}


def test_submitit_parameters_off_slurm_are_the_generic_ones():
    params = Site(ntasks=1, cpus_per_task=2).submitit_parameters("topology", "x", "local", after="123")
    assert params == {"name": "x", "timeout_min": 30, "nodes": 1, "tasks_per_node": 1, "cpus_per_task": 2}


# submitit's SlurmExecutor renames the generic parameters, and AutoExecutor strips the "slurm_" prefix
GENERIC_TO_SLURM = {"name": "job_name", "timeout_min": "time", "nodes": "nodes",
                    "tasks_per_node": "ntasks_per_node", "cpus_per_task": "cpus_per_task"}


def sbatch_text(params, folder, command):
    assert {k: v for k, v in submitit_slurm.SlurmExecutor._equivalence_dict().items()
            if k in GENERIC_TO_SLURM} == GENERIC_TO_SLURM  # the submitit this was written against
    kwargs = {(k[len("slurm_"):] if k.startswith("slurm_") else GENERIC_TO_SLURM[k]): v for k, v in params.items()}
    return submitit_slurm._make_sbatch_string(command=command, folder=folder, **kwargs)


def test_sbatch_script_rendered_by_submitit(site_file, tmp_path):
    params = Site.from_file(site_file).submitit_parameters("topology", "x", "slurm", after="123")
    command = "python -u -m submitit.core._submit /jobs"
    lines = sbatch_text(params, tmp_path / "jobs", command).splitlines()
    for expected in ("#SBATCH --partition=gpu", "#SBATCH --account=proj42", "#SBATCH --qos=normal",
                     "#SBATCH --mem=16G", "#SBATCH --nodes=2", "#SBATCH --ntasks-per-node=2",
                     "#SBATCH --cpus-per-task=3", "#SBATCH --time=45", "#SBATCH --dependency=afterok:123",
                     "#SBATCH --job-name=x", *SETUP):
        assert expected in lines, expected
    assert not [ln for ln in lines if ln.startswith("#SBATCH --gpus")]
    srun = [ln for ln in lines if ln.startswith("srun ")]
    assert len(srun) == 1 and " --mpi=pmix " in srun[0] and srun[0].endswith(command)
    # modules, then the environment, then the command
    assert lines.index(SETUP[0]) < lines.index(SETUP[1]) < lines.index(srun[0])


def test_sbatch_script_of_train_asks_for_the_gpu(site_file, tmp_path):
    params = Site.from_file(site_file).submitit_parameters("train", "t", "slurm")
    lines = sbatch_text(params, tmp_path / "jobs", "python run.py").splitlines()
    assert "#SBATCH --gpus-per-task=1" in lines and "#SBATCH --time=240" in lines
    assert not [ln for ln in lines if ln.startswith("#SBATCH --dependency")]
    srun = [ln for ln in lines if ln.startswith("srun ")]
    assert len(srun) == 1 and "--mpi" not in srun[0]


@pytest.mark.parametrize("nodes,ntasks", [(2, 5), (4, 2)])
def test_submitit_starts_the_ranks_that_sbatch_asks_for(nodes, ntasks):
    try:
        params = Site(nodes=nodes, ntasks=ntasks).submitit_parameters("topology", "x", "slurm")
    except ValueError:
        return  # refusing a count submitit cannot express is a fix too
    assert params["nodes"] * params["tasks_per_node"] == ntasks


def test_submitit_local_executor_accepts_a_multi_node_site(tmp_path):
    import submitit
    params = Site(nodes=2, ntasks=4).submitit_parameters("topology", "x", "local")
    submitit.AutoExecutor(folder=str(tmp_path), cluster="local").update_parameters(**params)


# ---------------------------------------------------------------- python -m hpc.submit shell

SHELL = ('eval "$("$0" -m hpc.submit shell --config "$1" --ntasks 4)" || exit 9; '
         'printf "%s\\n" "${train_site[@]}"; echo ==; printf "%s\\n" "${topo_site[@]}"; echo ==; '
         'printf "%s\\n" "$MODULES" "$MPI" "$VENV"')


def shell(config):
    p = subprocess.run(["bash", "-c", SHELL, sys.executable, str(config)], capture_output=True, text=True,
                       timeout=60, cwd=REPO)
    assert p.returncode == 0, p.stderr
    train, topo, rest = p.stdout.split("==\n")
    return train.splitlines(), topo.splitlines(), rest.splitlines()


def test_shell_sets_the_sbatch_arrays(tmp_path):
    path = tmp_path / "site.conf"
    path.write_text(SITE_FILE.replace("NTASKS=4", "NTASKS=2"))  # the flag overrides the file
    train, topo, rest = shell(path)
    assert train == TRAIN_ARGS
    assert topo == TOPO_ARGS
    assert rest == ["openmpi/4.1 python/3.11", "pmix", "/opt/my venv"]


def test_shell_defaults_the_environment_to_the_running_one(tmp_path):
    path = tmp_path / "site.conf"
    path.write_text("PARTITION=debug\n")
    train, topo, rest = shell(path)
    assert train == ["--partition", "debug", "--ntasks", "1", "--cpus-per-task", "1", "--time", "02:00:00"]
    assert topo == ["--partition", "debug", "--nodes", "1", "--ntasks", "4", "--cpus-per-task", "1",
                    "--time", "00:30:00"]
    assert rest == ["", "pmix", sys.prefix]


@pytest.mark.parametrize("content,flags,word", [
    ("NTASKS=four\n", [], "--ntasks"),
    ("PARTITION=gpu\n", ["--time-train", "2h"], "--time-train"),
    ("PARTITION=gpu\n", ["--ntasks", "0"], "--ntasks"),
    ("PARTITON=gpu\n", [], "PARTITON"),
    (None, [], "missing.conf"),
])
def test_shell_bad_value_exits_2_with_one_line(tmp_path, content, flags, word):
    path = tmp_path / ("missing.conf" if content is None else "site.conf")
    if content is not None:
        path.write_text(content)
    p = subprocess.run([sys.executable, "-m", "hpc.submit", "shell", "--config", str(path), *flags],
                       capture_output=True, text=True, timeout=60, cwd=REPO)
    assert p.returncode == 2
    assert p.stdout == ""
    assert len(p.stderr.splitlines()) == 1 and word in p.stderr, p.stderr
