"""nnsight on the learner's own model, as notebook 05 shows it: no conversion, the same numbers as
our hooks. nnsight is optional (pip install nnsight): without it this file is skipped
(tests/handoff_envs.sh runs it in an environment with it). nnsight reads the source of each
`with` block, which is why these traces are in a file."""

import dataclasses

import pytest
import torch

nnsight = pytest.importorskip("nnsight")

from utils.hooks import HookedDemoTransformer  # noqa: E402 (after the skip)
from utils.model import Config, DemoTransformer  # noqa: E402

CFG = Config(d_model=64, n_heads=4, d_head=16, d_mlp=256, n_layers=2, n_ctx=32, d_vocab=100)
TOKENS = torch.randint(0, 100, (2, 12), generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("model_class", [DemoTransformer, HookedDemoTransformer])
@pytest.mark.parametrize("attn_only", [False, True])
def test_a_trace_reads_and_ablates_as_our_hooks_do(model_class, attn_only):
    torch.manual_seed(0)
    model = model_class(dataclasses.replace(CFG, attn_only=attn_only)).eval()
    hooked = HookedDemoTransformer.from_model(model).eval()
    traced = nnsight.NNsight(model)
    with torch.no_grad():
        with traced.trace(TOKENS):
            resid = traced.blocks[0].output.save()
            lens = traced.unembed(traced.ln_final(traced.blocks[0].output)).save()
            traced.blocks[1].attn.output[:] = 0
            ablated = traced.output.save()
        _, cache = hooked.run_with_cache(TOKENS)
        ours_ablated = hooked.run_with_hooks(
            TOKENS, fwd_hooks=[("blocks.1.hook_attn_out", lambda x, hook: torch.zeros_like(x))]
        )
    torch.testing.assert_close(resid, cache["resid_post", 0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(
        lens, hooked.unembed(hooked.ln_final(cache["resid_post", 0])), atol=1e-5, rtol=1e-5
    )
    torch.testing.assert_close(ablated, ours_ablated, atol=1e-5, rtol=1e-5)
    with torch.no_grad():  # the ablation was for that trace only: the model itself is untouched
        torch.testing.assert_close(model(TOKENS), cache["unembed.hook_out"], atol=1e-5, rtol=1e-5)
