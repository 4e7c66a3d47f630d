"""hpc.io: atomic writes and the cleaning of killed writers' temporaries; hpc.submit's site file."""
import os
import socket
import subprocess

import pytest

from hpc.io import TMP_MARK, atomic_path, clean_stale, temp_name
from hpc.submit import Site, minutes


def test_atomic_path_renames_on_success_and_removes_on_failure(tmp_path):
    target = tmp_path / "sub" / "f.txt"
    with atomic_path(target) as tmp:
        tmp.write_text("x")
        assert not target.exists()
    assert target.read_text() == "x"
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "g.txt") as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash")
    assert os.listdir(tmp_path) == ["sub"]


def test_clean_stale_keeps_live_writers(tmp_path):
    target = tmp_path / "epoch_0001.h5"
    dead = subprocess.Popen(["true"])
    dead.wait()
    host = socket.gethostname()
    stale = tmp_path / f".epoch_0001.h5{TMP_MARK}{host}-{dead.pid}"
    other_host = tmp_path / f".epoch_0001.h5{TMP_MARK}elsewhere-{os.getpid()}"
    live = temp_name(target)
    other_epoch = tmp_path / f".epoch_0002.h5{TMP_MARK}{host}-{dead.pid}"
    other_epoch_live = tmp_path / f".epoch_0003.h5{TMP_MARK}{host}-{os.getpid()}"
    other_epoch_elsewhere = tmp_path / f".epoch_0004.h5{TMP_MARK}elsewhere-{dead.pid}"
    for p in (stale, other_host, live, other_epoch, other_epoch_live, other_epoch_elsewhere):
        p.write_text("")
    removed = clean_stale(target)
    # a dead writer of this host goes whatever its file (the next write of the folder cleans it);
    # another host's temporary only for this very file (jobs on other nodes may be writing now)
    assert sorted(removed) == sorted([stale, other_host, other_epoch])
    assert live.exists() and other_epoch_live.exists() and other_epoch_elsewhere.exists()


def test_site_file_and_time_limits(tmp_path):
    conf = tmp_path / "site.conf"
    conf.write_text('PARTITION=gpu   # the GPU nodes\nNTASKS=4\nMODULES="openmpi/4.1 python/3.11"\n\nMEM=\n')
    site = Site.from_file(conf)
    assert (site.partition, site.ntasks, site.modules, site.mem) == ("gpu", 4, "openmpi/4.1 python/3.11", "")
    conf.write_text("PARTITON=gpu\n")
    with pytest.raises(ValueError, match="unknown key PARTITON"):
        Site.from_file(conf)
    assert [minutes(t) for t in ("30", "05:30", "02:00:00", "1-00", "1-02:30:00")] == [30, 6, 120, 1440, 1590]
