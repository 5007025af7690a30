"""Shared helpers for the GPT-2-from-scratch notebooks.

Modules (one guess each):
    configs    - the ci / cpu / gpu run configs and the notebooks' first-cell setup
    resources  - tokenizer, reference GPT-2 and corpus, online with offline fallbacks;
                 notebook 03's trained model (load_trained_model)
    bpe        - byte-level BPE (generated from notebooks/01_tokenisation.ipynb)
    model      - the clean GPT-2 (generated from notebooks/02_clean_implementation.ipynb)
    checks     - checks of the learner's code, one module per notebook (checks/tokenisation,
                 model, training, sampling, kv_cache, circuits)
    plotting   - plotly charts (attention patterns, loss curves)
    training   - data packing, baselines, the trainer, checkpoints
                 (generated from notebooks/03_training.ipynb)
    fused      - fused twins of model's layers, same parameters, for fast training
                 (generated from notebook 03)
    sampling   - generate (greedy, temperature, top-k, top-p, frequency penalty), the KV cache,
                 beam search (generated from notebook 04)
    hooks      - hook points with TransformerLens's names, run_with_cache / run_with_hooks,
                 the hand-off to TransformerLens (notebook 05)
    circuits   - residual components, direct logit attribution, induction and previous-token
                 scores, ablation (generated from notebook 05)
    profiling  - notebook 03's profile of training steps
    gpu        - what the GPU can do: precision, micro-batch, torch.compile, peak FLOPs for MFU
    export     - writes the generated modules from marked notebook cells
    exercises  - writes the exercise notebooks from the solution notebooks
    diagrams   - draws notebook 02's diagrams (residual stream, attention head, MLP) into its
                 markdown cells
"""
