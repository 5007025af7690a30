"""Notebook 02's diagrams: the residual stream, one attention head and the MLP, with the tensor
shape at every step.

Drawn here as SVG text (the single source), rasterised by `make diagrams` to PNG at twice the
drawing's size (sharp on high-density screens) and embedded as `image/png` attachments of notebook
02's markdown cells: every viewer renders PNG attachments (JupyterLab, Colab, GitHub, VS Code and
the HTML export), while JupyterLab 4 shows only the alt text of an SVG one. Each markdown image sits
in a `<div style="max-width: ...">` of the drawing's own width, so it is shown at its drawn size,
not stretched to the cell's width (viewers that drop the style scale it to the cell's width).

Only `make diagrams` needs the rasteriser (resvg-py, which the Makefile installs on demand). The
check needs none: each PNG carries the SHA-256 of the SVG it was drawn from in a tEXt chunk, and
`--check` (and a test with it) decodes the attachment and compares that hash, and the PNG's size,
with what this file draws now. So a notebook that JupyterLab re-saved (base64 wrapped differently,
other metadata) still passes, and a changed drawing fails until `make diagrams` is run.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
import struct
import subprocess
import sys
import zlib
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
    "residual_stream.png": residual_stream,
    "attention_head.png": attention_head,
    "mlp.png": mlp,
}
SCALE = 2  # PNG pixels per SVG pixel
HASH_KEY = b"svg-sha256"  # the tEXt chunk's keyword
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def svg_size(svg: str) -> tuple[int, int]:
    found = re.match(r'<svg [^>]*?width="(\d+)" height="(\d+)"', svg)
    return int(found[1]), int(found[2])


def svg_hash(svg: str) -> str:
    return hashlib.sha256(svg.encode("utf-8")).hexdigest()


# ------------------------------------------------------------------ PNG chunks, no dependency


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_chunks(png: bytes) -> list[tuple[bytes, bytes]]:
    """(type, data) of each chunk; ValueError unless `png` is a whole, uncorrupted PNG."""
    if not png.startswith(PNG_SIGNATURE):
        raise ValueError("not a PNG")
    chunks, at = [], len(PNG_SIGNATURE)
    while at < len(png):
        if at + 12 > len(png):
            raise ValueError("a PNG cut short")
        (length,) = struct.unpack(">I", png[at : at + 4])
        kind, data = png[at + 4 : at + 8], png[at + 8 : at + 8 + length]
        (crc,) = struct.unpack(">I", png[at + 8 + length : at + 12 + length] or b"\0\0\0\0")
        if len(data) != length or crc != zlib.crc32(kind + data):
            raise ValueError(f"a corrupt {kind!r} chunk")
        chunks.append((kind, data))
        at += 12 + length
    if not chunks or chunks[0][0] != b"IHDR" or chunks[-1][0] != b"IEND":
        raise ValueError("a PNG without IHDR or IEND")
    return chunks


def png_info(png: bytes) -> dict:
    """Width, height and the SVG hash (or None) that a PNG records; ValueError if it is no PNG or
    its pixel data does not decompress to its size."""
    chunks = png_chunks(png)
    width, height, depth, colour = struct.unpack(">IIBB", chunks[0][1][:10])
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[colour]
    pixels = zlib.decompress(b"".join(data for kind, data in chunks if kind == b"IDAT"))
    if len(pixels) != height * (1 + (width * channels * depth + 7) // 8):
        raise ValueError("PNG pixel data of the wrong size")
    texts = dict(data.split(b"\0", 1) for kind, data in chunks if kind == b"tEXt")
    digest = texts.get(HASH_KEY)
    return {"width": width, "height": height, "svg_sha256": digest and digest.decode("ascii")}


def _font(generic: str, default: str) -> str:
    """The font family fontconfig picks for a generic family (resvg's own defaults, Arial and
    Courier New, are missing on most Linux machines, which would leave the text out)."""
    if shutil.which("fc-match"):
        found = subprocess.run(
            ["fc-match", "-f", "%{family[0]}", generic], capture_output=True, text=True
        ).stdout.strip()
        return found or default
    return default


def rasterise(svg: str) -> bytes:
    """The drawing as a PNG at SCALE times its size, recording the SVG's hash (needs resvg-py)."""
    try:
        import resvg_py
    except ImportError:
        raise SystemExit(
            "drawing the diagrams needs resvg-py: run `make diagrams`, which installs it"
        ) from None
    fonts = {
        "sans_serif_family": _font("sans-serif", "DejaVu Sans"),
        "monospace_family": _font("monospace", "DejaVu Sans Mono"),
    }

    def render(text: str) -> bytes:
        return bytes(resvg_py.svg_to_bytes(svg_string=text, zoom=SCALE, **fonts))

    png = render(svg)
    # resvg leaves out text it has no font for, silently: a drawing without its words must differ
    without_shapes = render(re.sub(r'<text [^>]*class="s">.*?</text>', "", svg))
    without_text = render(re.sub(r"<text [^>]*>.*?</text>", "", svg))
    if png == without_shapes or without_shapes == without_text:
        raise SystemExit(
            f"resvg found no font for the diagrams' text ({fonts}): install one, e.g. the Debian "
            "package fonts-dejavu-core"
        )
    chunks = [(kind, data) for kind, data in png_chunks(png) if kind not in (b"pHYs", b"tEXt")]
    dots_per_metre = round(SCALE * 96 / 0.0254)  # tells image viewers it is a 2x image
    extra = [
        (b"pHYs", struct.pack(">IIB", dots_per_metre, dots_per_metre, 1)),
        (b"tEXt", HASH_KEY + b"\0" + svg_hash(svg).encode("ascii")),
    ]
    return PNG_SIGNATURE + b"".join(_chunk(k, d) for k, d in chunks[:1] + extra + chunks[1:])


# ------------------------------------------------------------------ the notebook


def _source(cell: dict) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def _image(name: str) -> str:
    """The markdown image line that shows diagram `name`."""
    return r"!\[[^\n]*?\]\(attachment:" + re.escape(name) + r"\)"


def _framed(name: str, source: str) -> str:
    """The cell's source with the diagram's image in a div of the drawing's width (not wider)."""
    width = svg_size(DIAGRAMS[name]())[0]
    frame = r'(?:<div style="max-width: ?\d+px">\n\n)?(' + _image(name) + r")(?:\n\n</div>)?"
    return re.sub(
        frame,
        lambda m: f'<div style="max-width: {width}px">\n\n{m[1]}\n\n</div>',
        source,
        count=1,
    )


def _cells_with(nb: dict):
    """(cell, attachment name) for each markdown cell that shows a diagram: a line
    `![...](attachment:NAME.png)`."""
    for cell in nb["cells"]:
        for name in DIAGRAMS:
            if cell["cell_type"] == "markdown" and re.search(_image(name), _source(cell)):
                yield cell, name


def attached_png(cell: dict, name: str) -> bytes | None:
    """The decoded PNG attachment `name` of a cell, however the base64 text was split or wrapped
    (Jupyter stores it as one string or as a list of lines), or None."""
    data = cell.get("attachments", {}).get(name, {}).get("image/png")
    if data is None:
        return None
    text = "".join(data) if isinstance(data, list) else str(data)
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except ValueError:
        return None


def problem(cell: dict, name: str) -> str | None:
    """Why the cell's copy of diagram `name` differs from what this file draws, or None. Compares
    what the PNG records (the hash of its SVG, its size), not how the notebook file spells it."""
    svg = DIAGRAMS[name]()
    png = attached_png(cell, name)
    if png is None:
        return "no image/png attachment"
    try:
        info = png_info(png)
    except (ValueError, KeyError, struct.error, zlib.error) as err:
        return f"its attachment is not a valid PNG ({err})"
    if info["svg_sha256"] != svg_hash(svg):
        return "drawn from another version of the drawing"
    width, height = svg_size(svg)
    if (info["width"], info["height"]) != (SCALE * width, SCALE * height):
        return f"{info['width']}x{info['height']} pixels, not {SCALE}x the drawing's size"
    if _framed(name, _source(cell)) != _source(cell):
        return f'its image is not in a <div style="max-width: {width}px">'
    if name.removesuffix(".png") + ".svg" in cell.get("attachments", {}):
        return "the cell still holds the old SVG attachment"
    return None


def problems(notebook: Path = NOTEBOOK) -> dict[str, str]:
    nb = json.loads(notebook.read_text(encoding="utf-8"))
    found = {name: problem(cell, name) for cell, name in _cells_with(nb)}
    return {
        name: found.get(name, "no markdown cell shows it")
        for name in DIAGRAMS
        if found.get(name, "no markdown cell shows it") is not None
    }


def stale(notebook: Path = NOTEBOOK) -> list[str]:
    return list(problems(notebook))


def write(notebook: Path = NOTEBOOK) -> list[str]:
    """Rasterise each out-of-date diagram into its cell; the notebook is written as Jupyter itself
    writes it, so that JupyterLab's next save leaves it as it is."""
    import nbformat

    nb = json.loads(notebook.read_text(encoding="utf-8"))
    written = []
    for cell, name in _cells_with(nb):
        why = problem(cell, name)
        if why is None:
            continue
        attachments = cell.setdefault("attachments", {})
        attachments.pop(name.removesuffix(".png") + ".svg", None)
        png = attached_png(cell, name)
        svg = DIAGRAMS[name]()
        try:
            fresh = png_info(png)["svg_sha256"] == svg_hash(svg) if png else False
        except (ValueError, KeyError, struct.error, zlib.error):
            fresh = False
        if not fresh:
            encoded = base64.b64encode(rasterise(svg)).decode("ascii")
            attachments[name] = {"image/png": encoded}
        cell["source"] = _framed(name, _source(cell))
        written.append(f"{name} ({why})")
    if written:
        text = nbformat.writes(nbformat.from_dict(nb), version=4) + "\n"
        notebook.write_text(text, encoding="utf-8")
    return written


def main(argv: list[str] | None = None) -> int:
    return run_generator(
        argv,
        __doc__.split("\n\n")[0].replace("\n", " "),
        lambda: [f"{name} in {NOTEBOOK.name}: {why}" for name, why in problems().items()],
        lambda: [f"wrote {item} into {NOTEBOOK.name}" for item in write()],
        "diagrams",
    )


if __name__ == "__main__":
    sys.exit(main())
