"""Notebook 02's diagrams: the residual stream, one attention head and the MLP, with the tensor
shape at every step.

Drawn as plain SVG (no dependency) and embedded as attachments of notebook 02's markdown cells, so
they render wherever the notebook does: JupyterLab, Colab, GitHub and the HTML export. Change a
drawing here, then run `make diagrams` (`python -m utils.diagrams`); `--check` fails (and a test
with it) when the notebook's copies differ from what this file draws.
"""

from __future__ import annotations

import base64
import json
import sys
from html import escape
from pathlib import Path

from utils.export import NOTEBOOKS, run_generator

NOTEBOOK = NOTEBOOKS / "02_clean_implementation.ipynb"
W, H = 310, 50  # a box
COLOURS = {"tensor": "#eef4fb", "op": "#fff6e5", "param": "#f1f8ee", "sum": "#fbeeee"}


def _box(cx: float, y: float, title: str, shape: str, kind: str = "op", w: float = W) -> str:
    x = cx - w / 2
    return (
        f'<rect x="{x}" y="{y}" width="{w}" height="{H}" rx="7" fill="{COLOURS[kind]}" '
        'stroke="#555"/>'
        f'<text x="{cx}" y="{y + 20}" class="t">{escape(title)}</text>'
        f'<text x="{cx}" y="{y + 39}" class="s">{escape(shape)}</text>'
    )


def _arrow(x1: float, y1: float, x2: float, y2: float, label: str = "") -> str:
    path = (
        f'<line x1="{x1}" y1="{y1}" x2="{x2}" y2="{y2}" stroke="#555" stroke-width="1.5" '
        'marker-end="url(#head)"/>'
    )
    if label:
        path += (
            f'<text x="{(x1 + x2) / 2}" y="{(y1 + y2) / 2 - 6}" class="l" '
            f'text-anchor="middle">{escape(label)}</text>'
        )
    return path


def _svg(width: int, height: int, title: str, body: list[str]) -> str:
    return (
        (
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" font-family="Helvetica, Arial, sans-serif" '
            f'role="img" aria-label="{escape(title)}">'
            '<defs><marker id="head" markerWidth="8" markerHeight="8" refX="7" refY="4" '
            'orient="auto">'
            '<path d="M0,0 L8,4 L0,8 z" fill="#555"/></marker></defs>'
            "<style>.t{font-size:14px;text-anchor:middle;fill:#111}.s{font-size:12px;"
            "text-anchor:middle;fill:#2f5f8f;font-family:Menlo,Consolas,monospace}"
            ".l{font-size:12px;fill:#555}.h{font-size:15px;font-weight:bold;fill:#111}</style>"
            f'<rect width="{width}" height="{height}" fill="white"/><text x="12" y="22" '
            f'class="h">{escape(title)}</text>'
        )
        + "".join(body)
        + "</svg>"
    )


def residual_stream() -> str:
    left, right, gap = 185, 575, 74
    body, y = [], 40
    rows = [
        ("tokens", "[batch, posn]", "tensor"),
        ("embed(tokens) + pos_embed(tokens)", "[batch, posn, d_model]", "op"),
        ("resid_pre", "[batch, posn, d_model]", "tensor"),
    ]
    for i, (title, shape, kind) in enumerate(rows):
        body.append(_box(left, y, title, shape, kind))
        if i:
            body.append(_arrow(left, y - gap + H, left, y))
        y += gap
    block_top = y - 12
    for layer, (norm, name, out, resid) in enumerate(
        (
            ("ln1", "attn: every head, summed, + b_O", "attention output", "resid_mid"),
            ("ln2", "mlp", "MLP output", "resid_post"),
        )
    ):
        body.append(
            _arrow(left + W / 2, y - gap + H / 2, right - W / 2, y + H / 2)
        )  # the block reads the stream...
        body.append(_box(right, y, f"{norm}: LayerNorm", "[batch, posn, d_model]"))
        body.append(_box(right, y + gap, name, "[batch, posn, d_model]"))
        body.append(_arrow(right, y + H, right, y + gap))
        body.append(
            _box(left, y + gap, f"{resid} = stream + {out}", "[batch, posn, d_model]", "sum")
        )
        body.append(_arrow(left, y - gap + H, left, y + gap))
        body.append(
            _arrow(right - W / 2, y + gap + H / 2, left + W / 2, y + gap + H / 2, "adds back")
        )  # ...and writes to it
        y += 2 * gap
    body.append(
        f'<rect x="{left - W / 2 - 14}" y="{block_top}" width="{right - left + W + 28}" '
        f'height="{y - block_top - 10}" rx="10" fill="none" stroke="#999" stroke-dasharray="6 4"/>'
        f'<text x="{right + W / 2 + 14}" y="{y + 6}" class="l" text-anchor="end">one '
        "TransformerBlock, repeated n_layers times</text>"
    )
    for i, (title, shape, kind) in enumerate(
        (
            ("ln_final: LayerNorm", "[batch, posn, d_model]", "op"),
            ("unembed: x W_U + b_U", "[batch, posn, d_vocab]", "op"),
            ("logits", "[batch, posn, d_vocab]", "tensor"),
        )
    ):
        body.append(_arrow(left, y - gap + H + (10 if i == 0 else 0), left, y + 10))
        body.append(_box(left, y + 10, title, shape, kind))
        y += gap
    return _svg(
        760, y + 20, "The residual stream: each block reads it and adds its output back", body
    )


def attention_head() -> str:
    cols, gap = (130, 390, 650), 74
    body = [_box(cols[1], 40, "x = ln1(resid_pre)", "[batch, posn, d_model]", "tensor")]
    y = 40 + gap
    for cx, name in zip(cols, "QKV"):
        body.append(_arrow(cols[1], 40 + H, cx, y))
        body.append(
            _box(
                cx,
                y,
                f"{name.lower()} = x W_{name}[h] + b_{name}[h]",
                "[batch, posn, d_head]",
                "param",
                w=240,
            )
        )
    steps = [
        ("scores = q · k / sqrt(d_head)", "[batch, query_posn, key_posn]"),
        ("apply_causal_mask: future keys -inf", "same shape"),
        ("pattern = softmax over keys", "[batch, query_posn, key_posn]"),
    ]
    for i, (title, shape) in enumerate(steps):
        y += gap
        if i == 0:
            body += [
                _arrow(cols[0], y - gap + H, cols[1] - 60, y),
                _arrow(cols[1], y - gap + H, cols[1], y),
            ]
        else:
            body.append(_arrow(cols[1], y - gap + H, cols[1], y))
        body.append(_box(cols[1], y, title, shape))
    y += gap
    body += [
        _arrow(cols[1], y - gap + H, cols[1], y),
        _arrow(cols[2], 40 + gap + H, cols[1] + 150, y + H / 2, "v"),
    ]
    body.append(
        _box(
            cols[1],
            y,
            "z = pattern v (weighted sum of values)",
            "[batch, query_posn, d_head]",
            w=300,
        )
    )
    y += gap
    body += [
        _arrow(cols[1], y - gap + H, cols[1], y),
        _box(cols[1], y, "z W_O[h]", "[batch, posn, d_model]", "param"),
    ]
    y += gap
    body += [
        _arrow(cols[1], y - gap + H, cols[1], y),
        _box(
            cols[1], y, "sum over the n_heads heads, + b_O", "[batch, posn, d_model]", "sum", w=300
        ),
    ]
    body.append(
        f'<text x="20" y="{y + H + 30}" class="l">One head h. W_Q, W_K and W_V are [n_heads, '
        f'd_model, d_head], so W_Q[h] is [d_model, d_head];</text><text x="20" y="{y + H + 48}" '
        'class="l">W_O is [n_heads, d_head, d_model]. Every head does this in parallel: einsums '
        "keep n_heads as one more named dimension.</text>"
    )
    return _svg(790, y + H + 64, "One attention head (TransformerLens's layout)", body)


def mlp() -> str:
    cx, gap, y, body = 360, 74, 40, []
    steps = [
        ("x = ln2(resid_mid)", "[batch, posn, d_model]", "tensor"),
        ("pre = x W_in + b_in", "[batch, posn, d_mlp]", "param"),
        ("post = gelu_new(pre)", "[batch, posn, d_mlp]", "op"),
        ("post W_out + b_out", "[batch, posn, d_model]", "param"),
    ]
    for i, (title, shape, kind) in enumerate(steps):
        if i:
            body.append(_arrow(cx, y - gap + H, cx, y))
        body.append(_box(cx, y, title, shape, kind))
        y += gap
    body.append(
        f'<text x="40" y="{y + 6}" class="l">Each position on its own: widen to d_mlp = 4 x '
        "d_model, a nonlinearity, back to d_model.</text>"
    )
    return _svg(720, y + 30, "The MLP", body)


DIAGRAMS = {
    "residual_stream.svg": residual_stream,
    "attention_head.svg": attention_head,
    "mlp.svg": mlp,
}


def _attachment(name: str) -> str:
    """The drawing as a notebook attachment holds it: base64, which JupyterLab, Colab, GitHub and
    nbconvert all decode."""
    return base64.b64encode(DIAGRAMS[name]().encode("utf-8")).decode("ascii")


def _cells_with(nb: dict):
    """(cell, attachment name) for each markdown cell that shows a diagram: a line
    `![...](attachment:NAME.svg)`."""
    for cell in nb["cells"]:
        source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        for name in DIAGRAMS:
            if f"(attachment:{name})" in source and cell["cell_type"] == "markdown":
                yield cell, name


def stale(notebook: Path = NOTEBOOK) -> list[str]:
    nb = json.loads(notebook.read_text(encoding="utf-8"))
    found = {
        name: cell.get("attachments", {}).get(name, {}).get("image/svg+xml")
        for cell, name in _cells_with(nb)
    }
    return [name for name in DIAGRAMS if found.get(name) != _attachment(name)]


def write(notebook: Path = NOTEBOOK) -> list[str]:
    nb = json.loads(notebook.read_text(encoding="utf-8"))
    written = []
    for cell, name in _cells_with(nb):
        svg = _attachment(name)
        if cell.get("attachments", {}).get(name, {}).get("image/svg+xml") != svg:
            cell.setdefault("attachments", {})[name] = {"image/svg+xml": svg}
            written.append(name)
    if written:
        notebook.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return written


def main(argv: list[str] | None = None) -> int:
    return run_generator(
        argv,
        __doc__.split("\n\n")[0].replace("\n", " "),
        lambda: [f"{name} in {NOTEBOOK.name}" for name in stale()],
        lambda: [f"wrote {name} into {NOTEBOOK.name}" for name in write()],
        "diagrams",
    )


if __name__ == "__main__":
    sys.exit(main())
