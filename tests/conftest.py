import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault(
    "HF_HUB_OFFLINE", "1"
)  # tests never touch the network; the online path is tested by the notebooks

# Tests write only to a temporary folder: notebooks they run (their kernels inherit this) save
# checkpoints there, never in the learner's checkpoints/, and hypothesis keeps its files there too
_scratch = tempfile.mkdtemp(prefix="tutorial_tests_")
atexit.register(shutil.rmtree, _scratch, ignore_errors=True)
os.environ["TUTORIAL_CHECKPOINTS"] = os.path.join(_scratch, "checkpoints")
os.environ.setdefault(
    "HYPOTHESIS_STORAGE_DIRECTORY", os.path.join(_scratch, "hypothesis")
)  # no .hypothesis/ in the repository

from hypothesis import settings  # noqa: E402 (after its storage folder is set)

settings.register_profile("no_files", database=None)
settings.load_profile("no_files")


def pytest_report_header(config):
    """One line when the browser test cannot run here (tests/test_browser.py)."""
    if not (shutil.which("chromium") or shutil.which("chromium-browser")):
        return "test_browser: skipped, no Chromium here (the Debian package `chromium`)"
    return None
