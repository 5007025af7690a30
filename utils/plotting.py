"""Plotly charts used by the notebooks."""

from __future__ import annotations

import plotly.express as px
import plotly.graph_objects as go
import torch

from utils.validation import require_int


def _unique_labels(labels: list[str]) -> list[str]:
    # plotly merges repeated category names, so prefix each token with its position
    return [f"{i}: {label!r}"[:24] for i, label in enumerate(labels)]


def plot_attention_patterns(
    pattern: torch.Tensor, labels: list[str], title: str = "Attention patterns", max_heads: int = 12
) -> go.Figure:
    """Heatmaps of one layer's pattern [n_heads, query_posn, key_posn], one panel per head, tokens
    on the axes."""
    if not isinstance(pattern, torch.Tensor):
        raise TypeError(f"pattern must be a torch.Tensor, got {type(pattern).__name__}")
    if isinstance(labels, (str, bytes)) or not isinstance(labels, (list, tuple)):
        raise TypeError(
            f"labels must be a list of strs, one per token, got {type(labels).__name__}"
        )
    max_heads = require_int("max_heads", max_heads)
    if pattern.ndim != 3 or pattern.shape[1] != pattern.shape[2]:
        raise ValueError(
            "pattern must be [n_heads, query_posn, key_posn] with equal positions, got "
            f"{tuple(pattern.shape)}"
        )
    if len(labels) != pattern.shape[-1]:
        raise ValueError(
            f"need one label per position: {pattern.shape[-1]} positions, {len(labels)} labels"
        )
    pattern = pattern[:max_heads].detach().float().cpu()
    n_heads, n_tokens = pattern.shape[0], pattern.shape[-1]
    # long texts get wider panels, so that each token's label has ~9 px (a font of 8 px):
    # 4 panels a row fit 20 tokens in a notebook's ~1000 px, 2 fit 50, 1 fits ~100
    columns = min(n_heads, 4 if n_tokens <= 20 else 2 if n_tokens <= 50 else 1)
    labels = _unique_labels(labels)
    fig = px.imshow(
        pattern.numpy(),
        facet_col=0,
        facet_col_wrap=columns,
        facet_row_spacing=0.2 / -(-n_heads // columns),
        x=labels,
        y=labels,
        zmin=0,
        zmax=1,
        color_continuous_scale="Blues",
        title=title,
        labels=dict(x="key (attended to)", y="query (attending)", color="weight"),
    )
    for annotation in fig.layout.annotations:  # "facet_col=3" -> "head 3"
        annotation.text = "head " + annotation.text.split("=")[-1]
    rows = -(-n_heads // columns)
    panel = max(240, 900 // columns - 80)  # square panels: as tall as they are wide
    # no fixed width: the figure fits the notebook's output area
    fig.update_layout(height=panel * rows + 140, autosize=True)
    fig.update_xaxes(showticklabels=False)
    # every token's label while there is room for it (~9 px each), else every second or third
    fig.update_yaxes(dtick=max(1, -(-9 * n_tokens // (panel - 20))), tickfont_size=8)
    return fig


def plot_loss_curve(
    history: dict, baselines: dict[str, float] | None = None, title: str = "Training loss"
) -> go.Figure:
    """Train and validation loss against tokens seen, with horizontal baseline lines (uniform,
    unigram, bigram...)."""
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(x=history["train_tokens"], y=history["train_loss"], name="train", mode="lines")
    )
    if history.get("val_tokens"):
        fig.add_trace(
            go.Scatter(
                x=history["val_tokens"],
                y=history["val_loss"],
                name="validation",
                mode="lines+markers",
            )
        )
    for name, value in (baselines or {}).items():
        fig.add_hline(
            y=value,
            line_dash="dot",
            annotation_text=f"{name} {value:.2f}",
            annotation_position="top right",
        )
    fig.update_layout(
        title=title,
        xaxis_title="training tokens",
        yaxis_title="cross-entropy (nats per token)",
        height=450,
    )
    return fig
