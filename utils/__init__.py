"""Shared helpers for the GPT-2-from-scratch notebooks.

Modules (one guess each):
    configs    - the ci / cpu / gpu run configs and the notebooks' first-cell setup
    resources  - tokenizer, reference GPT-2 and corpus, online with offline fallbacks
    bpe        - byte-level BPE (generated from notebooks/01_tokenisation.ipynb)
    model      - the clean GPT-2 (generated from notebooks/02_clean_implementation.ipynb)
    checks     - layer-by-layer checks against Hugging Face's GPT-2
    plotting   - plotly charts (attention patterns, loss curves)
    training   - data packing, baselines, the trainer, checkpoints
    export     - writes the generated modules from marked notebook cells
"""
