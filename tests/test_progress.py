"""A finished progress bar reads right in the saved notebook: its last state, as text, rather
than the text the widget was first shown with ("0%| | 0/5")."""

import nbformat
import pytest
from notebook_runner import notebook_client

from utils.export import ROOT


def _run(code: str, tmp_path):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)])
    notebook_client(nb, timeout=60, resources={"metadata": {"path": str(ROOT)}}).execute()
    return [
        output.get("data", {}).get("text/plain", "") or output.get("text", "")
        for output in nb.cells[0].outputs
    ]


@pytest.mark.parametrize("stop_at", [5, 3])
def test_a_closed_bar_leaves_its_last_state_as_text(tmp_path, stop_at):
    code = (
        "from utils.progress import progress_bar\n"
        "with progress_bar(total=5, desc='training', unit='step') as bar:\n"
        f"    for step in range({stop_at}):\n"
        "        bar.set_postfix(loss=1.5, refresh=False)\n"
        "        bar.update()\n"
        "    bar.write('a log line')\n"
    )
    texts = _run(code, tmp_path)
    bars = [text for text in texts if "training" in text]
    assert len(bars) == 1, texts  # one bar, not one per update
    assert f"training: {stop_at * 20:3d}%|" in bars[0] and f"| {stop_at}/5 " in bars[0], bars
    assert "loss=1.5" in bars[0]
    assert "a log line" in "".join(texts)


def test_the_plain_tqdm_widget_would_have_saved_its_first_state(tmp_path):
    """What progress_bar is for: tqdm's own widget saves '0%' as its text."""
    code = (
        "from tqdm.auto import tqdm\n"
        "with tqdm(total=5, desc='training') as bar:\n"
        "    for step in range(5):\n"
        "        bar.update()\n"
    )
    bars = [text for text in _run(code, tmp_path) if "training" in text]
    assert bars and "training:   0%|" in bars[0] and "| 0/5 " in bars[0]


def test_tqdm_disable_set_after_import_turns_the_bar_off(monkeypatch):
    """torchrun's other ranks set TQDM_DISABLE once tqdm is imported (tqdm reads it at import)."""
    from utils.progress import progress_bar

    monkeypatch.setenv("TQDM_DISABLE", "1")
    bar = progress_bar(total=3, desc="training")
    assert bar.disable
    bar.close()
