"""Progress bars that still read right when a notebook is reopened or exported.

In a notebook, tqdm draws its bar as a widget. A saved notebook keeps no widget state, only the
text the widget was first shown with, so reopened (or exported, or on GitHub) every finished
training run would show "0%|          | 0/224" above its log. `progress_bar` is tqdm.auto's bar
(the widget in Jupyter, text in a terminal); in a notebook, when it closes, its output is replaced
by the bar's last state as a line of text, which is what the saved notebook then holds.
"""

from __future__ import annotations

import os

from tqdm.auto import tqdm
from tqdm.autonotebook import tqdm as _chosen

from utils.printing import wrap_lines

IN_NOTEBOOK = _chosen.__module__ == "tqdm.notebook"  # what tqdm.auto picked: the widget


class progress_bar(tqdm):  # a class, named like the function tqdm it stands for
    def __init__(self, *args, **kwargs):
        self._handle = None
        if os.environ.get("TQDM_DISABLE", "").lower() in ("1", "true"):  # tqdm reads it at import
            kwargs.setdefault("disable", True)
        if IN_NOTEBOOK and not kwargs.get("disable"):
            kwargs["display"] = False  # shown below, with a handle to replace it by
        super().__init__(*args, **kwargs)
        if IN_NOTEBOOK and getattr(self, "container", None) is not None:
            from IPython.display import display

            self._handle = display(self.container, display_id=True)
            self.displayed = True

    @classmethod
    def write(cls, s, file=None, end="\n", nolock=False) -> None:
        """tqdm's write (a line above the bar), wrapped to fit the output area (utils/printing)."""
        super().write(wrap_lines(s), file=file, end=end, nolock=nolock)

    def close(self) -> None:
        if self.disable:
            return
        super().close()
        if self._handle is not None:
            handle, self._handle = self._handle, None
            # the whole run's speed (n / elapsed), not tqdm's average of the last few updates
            final = self.format_meter(**{**self.format_dict, "ncols": None, "rate": None})
            handle.update({"text/plain": final}, raw=True)
