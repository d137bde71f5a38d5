"""Foundation models by name (`jaxtl.foundations`), against a local HTTP server.

A small random mace-torch model is served from 127.0.0.1 under the published file
names ($JAXTL_FOUNDATION_BASE_URL points the registry there); nothing else is reached.
"""

import hashlib
import http.server
import json
import os
import socket
import subprocess
import sys
import threading

import pytest

from jaxtl import foundations
from jaxtl.foundations import FoundationError

RELEASED = [
    "mace-mp-0-small",
    "mace-mp-0-medium",
    "mace-mp-0-large",
    "mace-mp-0b3-medium",
    "mace-mpa-0-medium",
    "mace-omat-0-small",
    "mace-omat-0-medium",
    "mace-matpes-pbe-0",
    "mace-matpes-r2scan-0",
    "mace-off23-small",
    "mace-off23-medium",
    "mace-off23-large",
    "mace-off24-medium",
]


class Server:
    """A file server whose answers the tests choose: whole, cut short, or as HTML."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.modes: dict[str, str] = {}
        self.requests: list[str] = []
        state = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                name = self.path.lstrip("/")
                state.requests.append(name)
                body, mode = state.files.get(name), state.modes.get(name, "whole")
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/html" if mode == "html" else "application/octet-stream")
                # "cut": promise more bytes than are sent, then hang up
                self.send_header("Content-Length", str(len(body) + (1000 if mode == "cut" else 0)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2] if mode == "cut" else body)
                self.close_connection = True

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def serve(self, name: str, body: bytes, mode: str = "whole") -> str:
        """Serve `body` under the published file name of foundation `name`; return that file name."""
        filename = foundations.get(name).filename
        self.files[filename], self.modes[filename] = body, mode
        return filename

    def count(self, filename: str) -> int:
        return self.requests.count(filename)


@pytest.fixture(scope="module")
def model_bytes(tmp_path_factory):
    """A small random mace-torch model, saved the way released .model files are (whole module)."""
    import torch
    from convert.torch_models import l0_interaction_residual

    model, _ = l0_interaction_residual(seed=3)
    path = tmp_path_factory.mktemp("torch") / "small.model"
    torch.save(model, path)
    return path.read_bytes()


@pytest.fixture(scope="module")
def server():
    s = Server()
    yield s
    s.httpd.shutdown()


@pytest.fixture
def local(server, monkeypatch):
    monkeypatch.setenv(foundations.BASE_URL_ENV, server.url)
    return server


def cache_files(cache) -> list[str]:
    folder = cache / "foundations"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_registry_knows_every_released_model():
    assert set(RELEASED) <= set(foundations.names())
    filenames = [foundations.get(n).filename for n in foundations.names()]
    assert len(set(filenames)) == len(filenames) and all(f.endswith(".model") for f in filenames)
    assert all(foundations.get(n).url.startswith("https://") for n in foundations.names())
    assert foundations.get("MP-0_medium").name == "mace-mp-0-medium"
    with pytest.raises(FoundationError) as err:
        foundations.get("mace-mp-7-huge")
    assert all(n in str(err.value) for n in RELEASED)


def test_import_jaxtl_foundations_does_not_import_torch():
    code = "import sys, jaxtl, jaxtl.foundations; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_download_convert_then_reuse(local, model_bytes, tmp_path, monkeypatch):
    filename = local.serve("mace-mp-0-medium", model_bytes)
    folder = foundations.model_dir("mace-mp-0-medium", cache=tmp_path, progress=False)
    assert folder == tmp_path / "foundations" / "mace-mp-0-medium"
    assert local.count(filename) == 1
    assert (tmp_path / "foundations" / filename).read_bytes() == model_bytes
    assert cache_files(tmp_path) == sorted([filename, "mace-mp-0-medium"])  # no .part left
    meta = json.loads((folder / "metadata.json").read_text())
    assert meta["foundation"] == "mace-mp-0-medium" and "parity" in meta
    assert meta["sha256"] == hashlib.sha256(model_bytes).hexdigest()

    import jaxtl.convert.convert as convert

    def no_second_conversion(*args, **kwargs):
        raise AssertionError("converted twice")

    monkeypatch.setattr(convert, "convert_file", no_second_conversion)
    assert foundations.model_dir("mace-mp-0-medium", cache=tmp_path) == folder
    with pytest.raises(FoundationError, match="sha256 is"):  # a pinned digest is checked on reuse too
        foundations.model_dir("mace-mp-0-medium", cache=tmp_path, sha256="1" * 64)
    monkeypatch.setenv(foundations.CACHE_ENV, str(tmp_path))
    import jaxtl

    loaded = jaxtl.load_model("mace-mp-0-medium")
    assert list(loaded.config.atomic_numbers) == [1, 6, 8, 29]
    from jaxtl.finetune import load_foundation  # what `jaxtl finetune --foundation NAME` calls

    _, _, meta = load_foundation("mace-mp-0-medium", tmp_path / "run")
    assert meta["foundation"] == "mace-mp-0-medium"
    assert local.count(filename) == 1


def test_interrupted_download_leaves_nothing(local, model_bytes, tmp_path):
    filename = local.serve("mace-off23-small", model_bytes, mode="cut")
    with pytest.raises(FoundationError, match="cut short"):
        foundations.fetch("mace-off23-small", cache=tmp_path, progress=False)
    assert local.count(filename) == 1
    assert cache_files(tmp_path) == []


def test_checksum(local, model_bytes, tmp_path):
    local.serve("mace-mpa-0-medium", model_bytes)
    with pytest.raises(FoundationError, match="sha256 is"):
        foundations.fetch("mace-mpa-0-medium", cache=tmp_path, sha256="0" * 64, progress=False)
    assert cache_files(tmp_path) == []
    right = hashlib.sha256(model_bytes).hexdigest()
    path = foundations.fetch("mace-mpa-0-medium", cache=tmp_path, sha256=right.upper(), progress=False)
    assert path.read_bytes() == model_bytes


def test_corrupt_zip_is_refused(local, model_bytes, tmp_path):
    body = bytearray(model_bytes)
    middle = len(body) // 2
    body[middle : middle + 16] = bytes(b ^ 0xFF for b in body[middle : middle + 16])
    local.serve("mace-mp-0-small", bytes(body))
    with pytest.raises(FoundationError, match="CRC|damaged"):
        foundations.fetch("mace-mp-0-small", cache=tmp_path, progress=False)
    assert cache_files(tmp_path) == []


def test_html_page_is_refused(local, tmp_path):
    local.serve("mace-mp-0-large", b"<html>rate limited</html>", mode="html")
    with pytest.raises(FoundationError, match="HTML"):
        foundations.fetch("mace-mp-0-large", cache=tmp_path, progress=False)
    assert cache_files(tmp_path) == []


def test_offline_names_the_cache_path_and_url(monkeypatch, model_bytes, tmp_path):
    with socket.socket() as s:  # a port nobody listens on: connection refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv(foundations.BASE_URL_ENV, f"http://127.0.0.1:{port}")
    model = foundations.get("mace-off24-medium")
    dest = foundations.torch_path(model, tmp_path)
    with pytest.raises(FoundationError) as err:
        foundations.fetch(model.name, cache=tmp_path, progress=False)
    assert str(dest) in str(err.value) and foundations.source_url(model) in str(err.value)
    assert cache_files(tmp_path) == []
    # put there by hand, the file is checked and used without the network
    dest.write_bytes(model_bytes)
    assert foundations.fetch(model.name, cache=tmp_path, progress=False) == dest
    dest.write_bytes(model_bytes[:-100])
    with pytest.raises(FoundationError, match=f"Delete {dest}"):
        foundations.fetch(model.name, cache=tmp_path, progress=False)


def jaxtl_cli(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "jaxtl.cli", *map(str, args)],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
    )


def test_cli_convert_by_name(server, model_bytes, tmp_path):
    filename = server.serve("mace-off23-medium", model_bytes)
    env = {foundations.BASE_URL_ENV: server.url}
    cache = tmp_path / "cache"
    proc = jaxtl_cli("convert", "mace-off23-medium", "--cache", cache, env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    folder = cache / "foundations" / "mace-off23-medium"
    assert "parity float64" in proc.stdout and str(folder) in proc.stdout
    assert (folder / "config.json").exists() and server.count(filename) == 1
    # a second call copies the cached conversion out: no download, no conversion
    proc = jaxtl_cli("convert", "mace-off23-medium", tmp_path / "out", "--dtype", "float32", "--cache", cache, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "parity" not in proc.stdout and server.count(filename) == 1
    assert json.loads((tmp_path / "out" / "config.json").read_text())["dtype"] == "float32"
    listing = jaxtl_cli("models", "--cache", cache).stdout
    assert all(n in listing for n in RELEASED)
    assert [line.split()[-1] for line in listing.splitlines() if line.startswith("mace-off23-medium")] == ["converted"]
    proc = jaxtl_cli("convert", "mace-mp-7-huge", "--cache", cache, env=env)
    assert proc.returncode == 1 and "mace-mp-0-medium" in proc.stderr
