"""Run notebooks top to bottom from the shell, each one's outputs saved into it.

    .venv/bin/python notebooks/execute.py notebooks/01_dpo.ipynb
    NOTEBOOK_SMALL=1 NOTEBOOK_OUT=/tmp/nb .venv/bin/python notebooks/execute.py notebooks/*.ipynb

The kernel starts in the notebooks folder (so that `common` imports) and talks to this
process over local sockets in a scratch folder, not a network port. NOTEBOOK_SMALL=1 swaps
every run for its --smoke version, as the tests do (notebooks/common.py); the committed
notebooks are full runs.
"""

import sys
import tempfile
import time
from pathlib import Path

import nbformat
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError


def execute(path, timeout: int = 1800) -> nbformat.NotebookNode:
    """The notebook at path, run top to bottom (a cell's error raises CellExecutionError)."""
    nb = nbformat.read(path, as_version=4)
    with tempfile.TemporaryDirectory() as sockets:
        km = KernelManager(kernel_name="python3", transport="ipc", ip=str(Path(sockets) / "k"))
        try:
            NotebookClient(nb, km=km, timeout=timeout,
                           resources={"metadata": {"path": str(Path(path).resolve().parent)}}
                           ).execute()
        finally:
            if km.has_kernel:
                km.shutdown_kernel()
    return nb


def main(paths: list[str]) -> None:
    if not paths:
        sys.exit(__doc__)
    for path in paths:
        if not Path(path).is_file():
            sys.exit(f"error: {path}: no such notebook")
        try:
            nbformat.read(path, as_version=4)
        except Exception as e:          # not JSON, or JSON that is not a notebook
            sys.exit(f"error: {path}: not a Jupyter notebook ({str(e).splitlines()[0][:120]})")
        t0 = time.time()
        try:
            nb = execute(path)
        except CellExecutionError as e:
            sys.exit(f"error: {path}: a cell failed, nothing saved:\n{e}")
        nbformat.write(nb, path)
        print(f"{path}: ran top to bottom in {time.time() - t0:.0f} s; outputs saved in it")


if __name__ == "__main__":
    main(sys.argv[1:])
