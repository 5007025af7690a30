"""The tests' notebook runner: nbclient's, with each kernel on Unix sockets (`ipc`) instead of TCP
ports. With TCP, jupyter_client picks five free ports and lets them go before the kernel binds
them; a port another process takes in between (JupyterLab's own kernels in test_browser, a
browser's connection) kills the kernel at its start ("Kernel died before replying to
kernel_info", "Address already in use"), as it did once in CI. A socket file in a folder of its
own cannot be taken."""

import atexit
import shutil
import tempfile
from pathlib import Path

import nbclient
from traitlets.config import Config

_SOCKETS = Path(tempfile.mkdtemp(prefix="kernels_"))  # short: a socket's path has 107 bytes
atexit.register(shutil.rmtree, _SOCKETS, ignore_errors=True)


def socket_folder() -> Path:
    """A new empty folder with a short path, for one kernel's socket files (removed at exit)."""
    return Path(tempfile.mkdtemp(dir=_SOCKETS))


def notebook_client(nb, **options) -> nbclient.NotebookClient:
    """nbclient.NotebookClient(nb, **options), its kernel listening on socket files."""
    ipc = Config({"KernelManager": {"transport": "ipc", "ip": str(socket_folder() / "kernel")}})
    return nbclient.NotebookClient(nb, config=ipc, **options)
