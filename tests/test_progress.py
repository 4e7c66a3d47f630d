"""The one progress bar: shown on a terminal, silent in logs and with -q."""
import fcntl
import io
import os
import pty
import re
import struct
import subprocess
import termios

from conftest import BIN
from dnntopo.progress import Progress


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_stages_on_a_terminal_and_silence_elsewhere():
    term = Terminal()
    with Progress("epoch 3", file=term, mininterval=0) as bar:
        bar.stage("activations", 4)
        bar.step(2)
        bar.stage("persistent homology (giotto)")
        bar.note("collapse pass 1: 1200 edges")
    out = term.getvalue()
    assert "epoch 3: activations" in out and "2/4" in out and "collapse pass 1: 1200 edges" in out
    log = io.StringIO()                                   # not a terminal: nothing
    with Progress("epoch 3", file=log) as bar:
        bar.stage("activations", 4)
        bar.step(4)
    assert log.getvalue() == ""
    quiet = Terminal()
    with Progress("epoch 3", enabled=False, file=quiet) as bar:
        bar.stage("activations", 4)
    assert quiet.getvalue() == "" and not bar.shown


def test_topology_shows_its_stages_on_a_terminal(module_run):
    """The real command under a pseudo-terminal: the bar names the PH step's inner stages."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 200, 0, 0))   # a 200-column terminal
    proc = subprocess.Popen([str(BIN / "dnntopo"), "topology", "--run", str(module_run), "--epochs", "1",
                             "--samples", "300", "--max-dim", "2", "--max-distance", "0.5", "--collapse", "on"],
                            stdout=subprocess.DEVNULL, stderr=slave, env=dict(os.environ, COLUMNS="200"))
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    assert proc.wait(timeout=300) == 0
    text = b"".join(chunks).decode(errors="replace")
    for stage in ("epoch 1: activations", "epoch 1: correlation", "epoch 1: persistent homology (giotto)",
                  "PH estimate: about", "collapse pass 1"):
        assert stage in text, (stage, text[-2000:])
    # the reduction names its engine: giotto-ph, or dnntopo.lowdim for a dense collapsed graph
    assert re.search(r"reduction \((giotto|dnntopo\.lowdim), dims 0-2, \d+ edges\)", text), text[-2000:]
