"""DIPHA's file formats (byte-exact fixtures built by hand), dnntopo-dipha against the diagrams
the real DIPHA produced, export/import, and the handoff under mpiexec."""
import os
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from conftest import BIN, REPO, copy_run, dnntopo
from dnntopo import dipha, storage
from dnntopo.errors import UserError

# DIPHA's own regression data is not part of the repository: it lies in shared/ beside it (as
# in CI, whose .ci/run sets DNNTOPO_DIPHA_REGRESSION so that its absence fails there).
REQUIRED = os.environ.get("DNNTOPO_DIPHA_REGRESSION", "")
SHARED = Path(REQUIRED or REPO.parent / "shared" / "dipha-regression")
MAGIC = 8067171840
CASES = [("sphere_1", "sphere_3_32", 1), ("sphere_2", "sphere_3_32", 2), ("sphere_3", "sphere_3_32", 3),
         ("sphere_3_2", "sphere_3_32_2", 3), ("sphere_3_0.8", "sphere_3_32_0.8", 3),
         ("sphere_2_0.5", "sphere_3_32_0.5", 2), ("sphere_1_0.3", "sphere_3_32_0.3", 2)]


def full_bytes():
    d = [0.0, 0.5, 1.5, 0.5, 0.0, 0.25, 1.5, 0.25, 0.0]
    return struct.pack("<qqq", MAGIC, 7, 3) + struct.pack("<9d", *d), np.array(d).reshape(3, 3)


def sparse_bytes():
    # 3 vertices, edges 0-1 (0.1) and 1-2 (0.2), listed from both ends
    return (struct.pack("<qqq", MAGIC, 8, 3) + struct.pack("<3q", 1, 2, 1) + struct.pack("<4q", 1, 0, 2, 1)
            + struct.pack("<4d", 0.1, 0.1, 0.2, 0.2))


def diagram_bytes():
    return struct.pack("<qqq", MAGIC, 2, 2) + struct.pack("<qdd", -1, 0.0, 0.5) + struct.pack("<qdd", 0, 0.0, 0.125)


def test_full_matrix_read_and_write(tmp_path):
    raw, mat = full_bytes()
    (tmp_path / "a").write_bytes(raw)
    assert np.array_equal(dipha.read_full(tmp_path / "a"), mat)
    dipha.write_full(tmp_path / "b", mat)
    assert (tmp_path / "b").read_bytes() == raw


def test_sparse_matrix_read_and_write(tmp_path):
    (tmp_path / "a").write_bytes(sparse_bytes())
    n, counts, idx, val = dipha.read_sparse(tmp_path / "a")
    assert n == 3 and list(counts) == [1, 2, 1] and list(idx) == [1, 0, 2, 1] and list(val) == [0.1, 0.1, 0.2, 0.2]
    c, cols, vals, _ = dipha.symmetric_lists(3, np.array([0, 1]), np.array([1, 2]), np.array([0.1, 0.2]))
    dipha.write_sparse(tmp_path / "b", 3, c, cols, vals)
    assert (tmp_path / "b").read_bytes() == sparse_bytes()
    n, i, j, d = dipha.edges_from_file(tmp_path / "a")
    assert (list(i), list(j), list(d)) == ([0, 1], [1, 2], [0.1, 0.2])


def test_diagram_read_and_write(tmp_path):
    (tmp_path / "a").write_bytes(diagram_bytes())
    dims, b, d = dipha.read_diagram(tmp_path / "a")
    assert list(dims) == [-1, 0] and list(b) == [0, 0] and list(d) == [0.5, 0.125]
    dipha.write_diagram(tmp_path / "b", dims, b, d)
    assert (tmp_path / "b").read_bytes() == diagram_bytes()
    # conventions: halved values, essential with the largest value, no zero-persistence pair
    # ... and DIPHA's order: by (dim, birth, death), dim signed (essential classes first)
    dims, b, d = dipha.to_dipha([np.array([[0, 0.25], [0, np.inf]]), np.array([[0.3, 0.3], [0.2, 0.4]])], top=1.0)
    assert list(dims) == [-1, 0, 1] and list(b) == [0, 0, 0.1] and list(d) == [0.5, 0.125, 0.2]
    back = dipha.from_dipha(dims, b, d)
    assert np.array_equal(back[0], [[0, 0.25], [0, np.inf]]) and np.array_equal(back[1], [[0.2, 0.4]])
    dims, b, d = dipha.to_dipha([np.array([[0, 0.5], [0, 0.25], [0, np.inf]]), np.array([[0.3, np.inf]]),
                                 np.array([[0.2, np.inf]])], top=1.0)
    assert list(dims) == [-3, -2, -1, 0, 0] and list(d) == [0.5, 0.5, 0.5, 0.125, 0.25]


def test_bad_files_are_one_line(tmp_path):
    bad = tmp_path / "bad"
    bad.write_bytes(struct.pack("<qqq", 1234, 7, 3))
    with pytest.raises(UserError, match="not a DIPHA file"):
        dipha.read_full(bad)
    bad.write_bytes(diagram_bytes())
    with pytest.raises(UserError, match="is a persistence diagram .* expected a sparse distance matrix"):
        dipha.read_sparse(bad)
    bad.write_bytes(full_bytes()[0][:-8])
    with pytest.raises(UserError, match="is truncated"):
        dipha.read_full(bad)
    raw = bytearray(sparse_bytes())
    raw[24:32] = struct.pack("<q", 5)          # counts now add up to 8 neighbours, the file has 4
    bad.write_bytes(bytes(raw))
    with pytest.raises(UserError, match="8 neighbours"):
        dipha.read_sparse(bad)
    bad.write_bytes(struct.pack("<qq", MAGIC, 9))
    with pytest.raises(UserError, match="truncated"):
        dipha.header(bad)
    p = subprocess.run([str(BIN / "dnntopo-dipha"), str(bad), str(tmp_path / "o")], capture_output=True, text=True)
    assert p.returncode != 0 and len(p.stderr.strip().splitlines()) == 1 and "Traceback" not in p.stderr


@pytest.fixture(scope="module")
def regression():
    if not SHARED.is_dir():
        msg = f"DIPHA's regression data is not at {SHARED} (shared/dipha-regression beside the repository)"
        if REQUIRED:
            pytest.fail(f"{msg}, but DNNTOPO_DIPHA_REGRESSION asks for it")
        pytest.skip(f"{msg}; set DNNTOPO_DIPHA_REGRESSION to run these tests")
    return SHARED


@pytest.mark.parametrize("expected,source,upper", CASES)
def test_dnntopo_dipha_equals_real_dipha(regression, tmp_path, expected, source, upper):
    out = tmp_path / "out.diagram"
    subprocess.run([str(BIN / "dnntopo-dipha"), "--upper_dim", str(upper), "--dual",
                    str(regression / f"{source}.complex"), str(out)], check=True)
    # byte for byte: the float64 values of the input (not float32), in DIPHA's order of pairs
    assert out.read_bytes() == (regression / f"{expected}.diagram").read_bytes()


def test_dnntopo_dipha_command_line_is_diphas(tmp_path):
    """DIPHA's flags: options before IN OUT, --upper_dim required for a distance matrix,
    --upper_dim 0 an empty diagram; anything else one usage line and a non-zero exit."""
    src, out = tmp_path / "in.complex", tmp_path / "out.diagram"
    src.write_bytes(full_bytes()[0])

    def run(*args):
        return subprocess.run([str(BIN / "dnntopo-dipha"), *map(str, args)], capture_output=True, text=True)

    from dnntopo.dipha.cli import UsageError, parse
    for args in [("--upper_dim", src, out), ("--upper_dim", "x", src, out), ("--upper_dim", "-1", src, out),
                 ("--upper_dim", "2", "--twist", src, out), (src, out, "--upper_dim", "2"),
                 ("--upper_dim=2", src, out), (src,)]:
        with pytest.raises(UsageError):
            parse(args)
    assert parse(["--dual", "--upper_dim", "3", "--upper_dim", "2", src, out])["upper_dim"] == 2
    p = run(src, out)          # no --upper_dim: DIPHA refuses a distance matrix without it
    assert p.returncode != 0 and not out.exists()
    assert len(p.stderr.strip().splitlines()) == 1 and "usage: dnntopo-dipha" in p.stderr, p.stderr
    assert run("--upper_dim", "0", src, out).returncode == 0
    assert out.read_bytes() == struct.pack("<qqq", MAGIC, 2, 0)
    p = run("--benchmark", "--dual", "--upper_dim", "1", src, out)
    assert p.returncode == 0 and "dnntopo-dipha: 3 vertices" in p.stdout
    # 3 points, edges 0.5 (0-1), 0.25 (1-2), 1.5 (0-2): one essential class, two finite pairs
    assert out.read_bytes() == (struct.pack("<qqq", MAGIC, 2, 3) + struct.pack("<qdd", -1, 0, 0.75)
                                + struct.pack("<qdd", 0, 0, 0.125) + struct.pack("<qdd", 0, 0, 0.25))


def four_cycle(eps=1e-10):
    """A 4-cycle with sides 1 and diagonals 1 + eps: DIPHA reports the dim-1 pair (1, 1 + eps),
    halved; in float32 the diagonals equal the sides and the pair has zero persistence."""
    a, b = 1.0, 1.0 + eps
    return np.array([[0, a, b, a], [a, 0, a, b], [b, a, 0, a], [a, b, a, 0]])


@pytest.mark.parametrize("kind", ["full", "sparse"])
def test_float32_would_merge_distances_so_float64_is_used(tmp_path, kind):
    mat = four_cycle()
    src, out = tmp_path / "c4.complex", tmp_path / "c4.diagram"
    if kind == "full":
        dipha.write_full(src, mat)
    else:
        i, j = np.triu_indices(4, 1)
        c, cols, vals, _ = dipha.symmetric_lists(4, i, j, mat[i, j])
        dipha.write_sparse(src, 4, c, cols, vals)
    subprocess.run([str(BIN / "dnntopo-dipha"), "--upper_dim", "2", str(src), str(out)], check=True)
    top = (1 + 1e-10) / 2
    want = (struct.pack("<qqq", MAGIC, 2, 5) + struct.pack("<qdd", -1, 0, top) + struct.pack("<qdd", 0, 0, 0.5) * 3
            + struct.pack("<qdd", 1, 0.5, top))
    assert out.read_bytes() == want


def test_float32_merge_without_a_float64_engine_is_refused(tmp_path, monkeypatch):
    import importlib.util

    from dnntopo.dipha import cli
    src = tmp_path / "c4.complex"
    dipha.write_full(src, four_cycle())
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "gudhi" else real(name, *a))
    with pytest.raises(UserError, match=f"{src}: distinct distances .* equal in float32") as exc:
        cli.compute(src, tmp_path / "o.diagram", 2)
    assert "\n" not in str(exc.value) and not (tmp_path / "o.diagram").exists()
    # without a merge, the float32 engine is used (and gives DIPHA's values)
    dipha.write_full(src, four_cycle(eps=0.25))
    assert cli.compute(src, tmp_path / "o.diagram", 2) == 5


@pytest.fixture(scope="module")
def giotto_epoch(trained_run, tmp_path_factory):
    """A run whose epoch 1 was computed serially by giotto (as `mpi_topology` asks for it)."""
    run_dir = copy_run(trained_run, tmp_path_factory.mktemp("giotto") / "run")
    dnntopo("-q", "topology", "--run", run_dir, "--epochs", "1", "--samples", "400", "--max-dim", "2",
            "--max-distance", "0.5", check=True)
    return run_dir


def test_export_run_import_roundtrip(giotto_epoch, tmp_path):
    run_dir = Path(shutil.copytree(giotto_epoch, tmp_path / "run"))
    run = storage.Run(run_dir)
    with h5py.File(run.epoch_file(1)) as f:
        before = {k: f[f"diagrams/dim_{k}"][()] for k in range(3)}
        i, j, d = f["graph/edges/i"][()], f["graph/edges/j"][()], f["graph/edges/distance"][()]
    p = dnntopo("-q", "export-dipha", "--run", run_dir, "--epoch", "1", check=True)
    src = Path(p.stdout.strip())
    n, ei, ej, ed = dipha.edges_from_file(src)
    assert n == 1820 and np.array_equal(ei, i) and np.array_equal(ej, j) and np.array_equal(ed, d.astype(np.float64))
    out = tmp_path / "e.diagram"
    subprocess.run([str(BIN / "dnntopo-dipha"), "--upper_dim", "3", str(src), str(out)], check=True)
    dims, b, de = dipha.read_diagram(out)
    # DIPHA's conventions on the LeNet graph: half distances; one essential class per component
    ess0 = (dims == -1)
    assert ess0.sum() == np.isinf(before[0][:, 1]).sum() and np.all(de[ess0] == d.max() / 2)
    # the whole diagram is the giotto backend's, written by hand in DIPHA's conventions
    want = []
    for k, dg in before.items():
        for birth, death in dg:
            if np.isinf(death):
                want.append((-k - 1, birth / 2, float(d.max()) / 2))
            elif death > birth:
                want.append((k, birth / 2, death / 2))
    assert sorted(want) == sorted(zip(dims.tolist(), b.tolist(), de.tolist()))
    dnntopo("-q", "import-dipha", "--run", run_dir, "--epoch", "1", "--diagram", out, check=True)
    with h5py.File(run.epoch_file(1)) as f:
        assert f.attrs["backend"] == "dipha"
        for k in range(3):
            assert np.array_equal(f[f"diagrams/dim_{k}"][()], before[k])


MPI_ENV = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
           "OMPI_MCA_rmaps_base_oversubscribe": "1"}
FAKE = {"crash": "import sys\nfrom mpi4py import MPI\nsys.exit(3)\n",
        "hang": "import time\nfrom mpi4py import MPI\ntime.sleep(600)\n",
        # writes a complete diagram, then never finishes: the wait for its end is bounded too
        "linger": "import struct, sys, time\nfrom mpi4py import MPI\nif MPI.COMM_WORLD.Get_rank() == 0:\n"
                  "    open(sys.argv[-1], 'wb').write(struct.pack('<qqq', 8067171840, 2, 0))\ntime.sleep(600)\n"}


def mpi_topology(run_dir, k, extra, timeout=180):
    cmd = [shutil.which("mpiexec"), "-n", str(k), "--oversubscribe", str(BIN / "dnntopo"), "-q", "topology",
           "--run", str(run_dir), "--epochs", "1", "--samples", "400", "--max-dim", "2", "--max-distance", "0.5",
           "--force", *map(str, extra)]
    return subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, **MPI_ENV), timeout=timeout)


@pytest.mark.mpi
def test_handoff_spawn_and_fallback_give_the_same_file(trained_run, tmp_path):
    run_dir = copy_run(trained_run, tmp_path / "run")
    p = mpi_topology(run_dir, 2, [])
    assert p.returncode == 0, p.stderr
    path = storage.Run(run_dir).epoch_file(1)
    with h5py.File(path) as f:
        ref = {k: f[f"diagrams/dim_{k}"][()] for k in range(3)}
        ref_sum = dict(f["summary/dim_1"].attrs)
    for mode in ("spawn", "mpiexec"):
        p = mpi_topology(run_dir, 2, ["--backend", "dipha", "--dipha", BIN / "dnntopo-dipha", "--dipha-launch", mode])
        assert p.returncode == 0, p.stderr
        with h5py.File(path) as f:
            assert f.attrs["backend"] == "dipha"
            for k in range(3):
                assert np.array_equal(f[f"diagrams/dim_{k}"][()], ref[k]), (mode, k)
            assert dict(f["summary/dim_1"].attrs) == ref_sum
        assert not [q for q in os.listdir(path.parent) if q.startswith(".")]


# A DIPHA that writes a complete-looking diagram (right header and size) with wrong pairs first
# and the right pairs in place 2 s later, as DIPHA writes its header before sorting the pairs in
# place; it records its arguments beside itself.
TORN = """
import os, struct, sys, time
from mpi4py import MPI
args = sys.argv[1:]
if MPI.COMM_WORLD.Get_rank() == 0:
    with open(sys.argv[0] + ".args", "w") as fh:
        fh.write(" ".join(args))
    from dnntopo.dipha.cli import compute
    src, out = args[-2], args[-1]
    right = out + ".right"
    compute(src, right, int(args[args.index("--upper_dim") + 1]))
    with open(right, "rb") as fh:
        raw = fh.read()
    os.unlink(right)
    with open(out, "wb") as fh:
        fh.write(raw[:24] + struct.pack("<qdd", 0, 0.0, 0.01) * ((len(raw) - 24) // 24))
    time.sleep(2)
    with open(out, "r+b") as fh:
        fh.seek(24)
        fh.write(raw[24:])
MPI.COMM_WORLD.Barrier()
"""


@pytest.mark.mpi
def test_spawned_dipha_is_read_only_once_finished(giotto_epoch, tmp_path):
    run_dir = Path(shutil.copytree(giotto_epoch, tmp_path / "run"))
    path = storage.Run(run_dir).epoch_file(1)
    with h5py.File(path) as f:
        ref = [f[f"diagrams/dim_{k}"][()] for k in range(3)]
    fake = tmp_path / "dipha_torn"
    fake.write_text(f"#!{sys.executable}\n" + TORN)
    fake.chmod(0o755)
    p = mpi_topology(run_dir, 2, ["--backend", "dipha", "--dipha", fake, "--dipha-launch", "spawn"])
    assert p.returncode == 0, p.stderr
    args = (tmp_path / "dipha_torn.args").read_text().split()
    assert "--dual" in args and args[args.index("--upper_dim") + 1] == "3"   # DIPHA's fast path
    with h5py.File(path) as f:
        assert f.attrs["backend"] == "dipha"
        for k in range(3):
            assert np.array_equal(f[f"diagrams/dim_{k}"][()], ref[k]), k
    assert not [q for q in os.listdir(path.parent) if q.startswith(".")]


@pytest.mark.mpi
@pytest.mark.parametrize("kind,mode", [("crash", "mpiexec"), ("hang", "mpiexec"), ("hang", "spawn"),
                                       ("linger", "spawn")])
def test_failing_dipha_ends_the_job(trained_run, tmp_path, kind, mode):
    run_dir = copy_run(trained_run, tmp_path / "run")
    fake = tmp_path / f"dipha_{kind}"
    fake.write_text(f"#!{sys.executable}\n" + FAKE[kind])
    fake.chmod(0o755)
    t = time.monotonic()
    p = mpi_topology(run_dir, 2, ["--backend", "dipha", "--dipha", fake, "--dipha-launch", mode,
                                  "--dipha-timeout", "8"], timeout=120)
    assert time.monotonic() - t < 60
    assert p.returncode != 0
    assert ("exited with status 3" if kind == "crash" else "timeout") in p.stderr
    assert not storage.Run(run_dir).epoch_file(1).exists()


def test_dipha_backend_needs_a_binary(trained_run):
    p = dnntopo("topology", "--run", trained_run, "--epochs", "1", "--backend", "dipha", env={"DIPHA": ""})
    assert p.returncode == 2 and "--backend dipha needs the DIPHA binary" in p.stderr
