"""The shape of the library: modules import in the order the notebooks teach, layer classes are
chosen rather than rebuilt, and the explicit model does not wait for the GPU."""

import ast
import re

import pytest
import torch

from utils.export import ROOT
from utils.model import Config, DemoTransformer
from utils.validation import require_token_ids

UTILS = ROOT / "utils"
# the notebook a module belongs to: generated ones by their notebook, hand-written ones by the
# first notebook that needs them (0: plumbing every notebook may use)
LEVEL = {
    "validation": 0,
    "configs": 0,
    "resources": 0,
    "gpu": 0,
    "plotting": 0,
    "timing": 0,
    "files": 0,
    "cli": 0,
    "progress": 0,
    "printing": 0,
    "tracebacks": 0,
    "warmup": 0,
    "bpe": 1,
    "model": 2,
    "training": 3,
    "fused": 3,
    "checkpoints": 3,
    "safe_training": 3,
    "runs": 3,
    "profiling": 3,
    "sampling": 4,
    "hook_tools": 5,
    "hooks": 5,
    "circuits": 5,
    "transformer_lens_handoff": 5,
    "hf_export": 5,
    "patching": 7,
    "scaling": 6,
    "distributed": 6,
    "train": 6,
}


def _imports(path) -> set[str]:
    """The utils modules a file imports, anywhere in it (inside functions too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        for name in names:
            match = re.fullmatch(r"utils\.(\w+)(\..*)?", name)
            if match and (UTILS / f"{match[1]}.py").exists():
                found.add(match[1])
    return found - {path.stem}


def test_every_module_has_a_level():
    modules = {p.stem for p in UTILS.glob("*.py")} - {"__init__", "export", "exercises", "diagrams"}
    assert modules <= set(LEVEL), f"give these modules a level: {sorted(modules - set(LEVEL))}"


def test_no_module_imports_one_of_a_later_notebook():
    later = {
        (name, imported)
        for name, level in LEVEL.items()
        for imported in _imports(UTILS / f"{name}.py")
        if LEVEL.get(imported, 0) > level
    }
    assert not later, f"modules that import a later notebook's module: {sorted(later)}"


def test_no_two_modules_import_each_other():
    graph = {p.stem: _imports(p) for p in UTILS.glob("*.py") if p.stem != "__init__"}
    graph.update({f"checks.{p.stem}": _imports(p) for p in (UTILS / "checks").glob("*.py")})

    def reaches(start, target, seen=()):
        return any(
            nxt == target or (nxt not in seen and reaches(nxt, target, (*seen, nxt)))
            for nxt in graph.get(start, ())
        )

    circles = sorted(name for name in graph if reaches(name, name))
    assert not circles, f"modules in an import circle: {circles}"


def test_the_twins_choose_their_layer_classes_instead_of_rebuilding_them():
    for path in UTILS.glob("*.py"):
        assert "nn.Module.__init__(self)" not in path.read_text(encoding="utf-8"), path.name
    from utils.fused import FusedAttention, FusedLayerNorm, FusedTransformer
    from utils.hooks import HookedAttention, HookedDemoTransformer

    cfg = Config(d_model=16, d_vocab=20, n_ctx=8, d_head=4, d_mlp=32, n_heads=4, n_layers=2)
    torch.manual_seed(0)
    explicit = DemoTransformer(cfg)
    for cls, attention in (
        (FusedTransformer, FusedAttention),
        (HookedDemoTransformer, HookedAttention),
    ):
        torch.manual_seed(0)
        twin = cls(cfg)
        assert isinstance(twin.blocks[1].attn, attention) and isinstance(
            twin.ln_final, FusedLayerNorm
        )
        # built in notebook 02's order: the same seed gives the same weights
        for (name, p), (twin_name, q) in zip(explicit.named_parameters(), twin.named_parameters()):
            assert name == twin_name and torch.equal(p, q)


class _OnTheGPU(torch.Tensor):
    """A CPU tensor that says it lives on a GPU, and counts the reads of its values."""

    reads = 0

    @property
    def device(self):
        return torch.device("cuda", 0)

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        if getattr(func, "__name__", "") in (
            "min",
            "max",
            "item",
            "__int__",
            "tolist",
            "any",
            "all",
        ):
            _OnTheGPU.reads += 1
        return super().__torch_function__(func, types, args, kwargs or {})


def test_the_explicit_forward_does_not_read_token_values_back_from_a_gpu():
    cfg = Config(d_model=16, d_vocab=20, n_ctx=8, d_head=4, d_mlp=32, n_heads=4, n_layers=1)
    tokens = torch.randint(0, 20, (2, 5)).as_subclass(_OnTheGPU)
    _OnTheGPU.reads = 0
    require_token_ids(tokens, cfg)  # what DemoTransformer.forward calls first
    assert _OnTheGPU.reads == 0
    require_token_ids(tokens, cfg, check_values=True)  # asked for: then it does read them
    assert _OnTheGPU.reads > 0
    with pytest.raises(ValueError, match=r"ids in \[0, 20\)"):
        require_token_ids(torch.tensor([[25]]), cfg)  # on the CPU the range is always checked
