"""Shared helpers for the GPT-2-from-scratch notebooks, in the order the notebooks teach.

Generated from the notebooks' `#| export` cells (the lesson: edit the notebook, `make export`):
    bpe        - byte-level BPE (notebook 01)
    model      - the clean GPT-2, layer by layer (notebook 02)
    training   - data packing, baselines, the recipe, the Trainer (notebook 03)
    fused      - fused twins of model's layers: same parameters, faster kernels (notebook 03)
    sampling   - samplers, generate, the KV cache, beam search (notebook 04)
    hooks      - hook points, the hooked model, run_with_cache (notebook 05)
    circuits   - residual components, attribution, induction scores, ablation (notebook 05)

Hand-written (the plumbing: what exists because of machines, people, time or other libraries):
    validation    - clear errors for bad arguments, used by every notebook's code
    configs       - the ci / cpu / gpu run configs and the notebooks' first-cell setup
    resources     - tokenizer, reference GPT-2 and corpus, online, with offline fallbacks
    gpu           - what the GPU can do: precision, micro-batch, compilation, FLOPs and MFU
    timing        - timing for the notebooks' speed comparisons
    plotting      - plotly charts (attention patterns, loss curves)
    printing      - print_wrapped: printed lines that fit JupyterLab's output area (100 characters)
    tracebacks    - hide_call_frames: a notebook's tracebacks without PyTorch's module-call frames
    checkpoints   - checkpoint files that lose nothing: run folders, atomic writes, safe loading
    safe_training - SafeTraining: notebook 03's Trainer for long runs (Ctrl-C, resume, NaN, GPU)
    runs          - one pipeline for notebook 03's run, reloaded by notebooks 04 and 05
    profiling     - notebook 03's profile of training steps
    hook_tools    - the conveniences around notebook 05's hook points (names, cache, guards)
    transformer_lens_handoff - notebook 05's converters to and from TransformerLens
    checks        - the checks of the exercises, one module per notebook (checks/...)
    export, exercises, diagrams - the generators (CONTRIBUTING.md)
    cli           - the command lines' parser (utils.train, export, exercises): one-line errors
"""
