"""jaxtl.datasets: lookup order (root=, $JAXTL_DATA, cache), checked downloads, clear errors,
and the registry's checksums against the mirror CI points $JAXTL_DATA at."""

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from jaxtl import datasets
from jaxtl.datasets import Dataset, DatasetError

MIRROR = os.environ.get(datasets.DATA_ENV)


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """No $JAXTL_DATA and an empty cache of our own: only what a test puts there is found."""
    monkeypatch.delenv(datasets.DATA_ENV, raising=False)
    monkeypatch.setenv("JAXTL_CACHE", str(tmp_path / "cache"))
    return tmp_path


def _entry(tmp_path, content=b'1\nProperties=species:S:1:pos:R:3 pbc="F F F"\nH 0 0 0\n', url=True, sha=None):
    source = tmp_path / "upstream" / "h.xyz"
    source.parent.mkdir(parents=True, exist_ok=True)
    source.write_bytes(content)
    return Dataset(
        "toy",
        "data/toy/h.extxyz",
        "one H atom",
        "MIT",
        "a test",
        sha or hashlib.sha256(content).hexdigest(),
        source.as_uri() if url else None,
    )


def test_lookup_order_root_then_env_then_cache(isolated, monkeypatch):
    entry = _entry(isolated, url=False)
    places = {}
    for name in ("root", "env", "cache"):
        base = isolated / "cache" / "datasets" if name == "cache" else isolated / name
        places[name] = base / entry.relpath
        places[name].parent.mkdir(parents=True)
        places[name].write_text(name)
    monkeypatch.setenv(datasets.DATA_ENV, str(isolated / "env"))
    assert datasets.path(entry, root=isolated / "root") == places["root"]
    assert datasets.path(entry) == places["env"]
    monkeypatch.delenv(datasets.DATA_ENV)
    assert datasets.path(entry) == places["cache"]
    places["cache"].unlink()
    with pytest.raises(DatasetError, match="'toy'.*not found") as err:
        datasets.path(entry)
    assert str(isolated / "cache" / "datasets") in str(err.value) and "$JAXTL_DATA is not set" in str(err.value)


def test_missing_without_url_names_entry_roots_and_env(isolated, monkeypatch):
    monkeypatch.setenv(datasets.DATA_ENV, str(isolated / "nowhere"))
    with pytest.raises(DatasetError) as err:
        datasets.path("mlearn-Si-train")
    message = str(err.value)
    assert "'mlearn-Si-train'" in message and "data/mlearn/Si_train.extxyz" in message
    assert str(isolated / "nowhere") in message and "JAXTL_DATA" in message and "no public download" in message


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(DatasetError, match="'aspirin'.*rmd17-aspirin-train"):
        datasets.path("aspirin")


def test_download_is_checked_and_cached(isolated):
    entry = _entry(isolated)
    got = datasets.path(entry, log=lambda _: None)
    assert got == isolated / "cache" / "datasets" / entry.relpath
    assert got.read_bytes() == (isolated / "upstream" / "h.xyz").read_bytes()
    (isolated / "upstream" / "h.xyz").unlink()  # found in the cache now: no second download
    assert datasets.path(entry, log=lambda _: None) == got


def test_download_with_wrong_sha256_is_an_error_and_keeps_nothing(isolated):
    entry = _entry(isolated, sha="0" * 64)
    with pytest.raises(DatasetError, match="'toy'.*sha256"):
        datasets.path(entry, log=lambda _: None)
    folder = isolated / "cache" / "datasets" / "data" / "toy"
    assert not folder.exists() or not any(folder.iterdir())
    with pytest.raises(DatasetError, match="not found"):
        datasets.path(entry, download=False)


def test_verify_catches_a_changed_mirror_file(isolated):
    entry = _entry(isolated, url=False)
    mirror = isolated / "mirror"
    (mirror / entry.relpath).parent.mkdir(parents=True)
    (mirror / entry.relpath).write_bytes((isolated / "upstream" / "h.xyz").read_bytes())
    assert datasets.verify(entry, root=mirror) == mirror / entry.relpath
    (mirror / entry.relpath).write_bytes(b"changed")
    with pytest.raises(DatasetError, match="'toy'.*sha256"):
        datasets.verify(entry, root=mirror)


def test_every_entry_has_a_description_licence_source_and_checksums():
    for entry in datasets.DATASETS.values():
        assert entry.description and entry.licence and entry.source, entry.name
        shas = [s for _, s in entry.files] if entry.is_folder else [entry.sha256]
        assert all(s and len(s) == 64 and int(s, 16) >= 0 for s in shas), entry.name
        assert entry.url is None or entry.url.startswith("https://"), entry.name


@pytest.mark.skipif(not MIRROR or not Path(MIRROR).is_dir(), reason="$JAXTL_DATA (the data mirror) is not set")
def test_mirror_matches_the_registry():
    """Every entry is in the mirror CI uses, with the recorded sha256 (a download would match it too)."""
    root = Path(MIRROR).expanduser()
    present = [e for e in datasets.DATASETS.values() if (root / e.relpath).exists()]
    if not present:
        pytest.skip(f"$JAXTL_DATA ({root}) holds none of the registry's files")
    missing = sorted(set(datasets.names()) - {e.name for e in present})
    assert not missing, f"{root} lacks {missing}"
    for entry in present:
        assert datasets.verify(entry, root=root) == root / entry.relpath


def test_import_pulls_in_neither_jax_nor_torch():
    code = "import sys, jaxtl.datasets; print(sorted({'jax', 'torch'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_datasets_command_lists_and_finds(isolated, monkeypatch, capsys):
    from jaxtl.cli import main

    entry = datasets.get("rmd17-aspirin-test")
    mirror = isolated / "mirror"
    (mirror / entry.relpath).parent.mkdir(parents=True)
    (mirror / entry.relpath).write_text("not the real file")
    assert main(["--no-cpu-tuning", "datasets", "rmd17-aspirin-test", "--root", str(mirror)]) == 0
    assert capsys.readouterr().out.strip() == str(mirror / entry.relpath)
    assert main(["--no-cpu-tuning", "datasets"]) == 0
    assert "rmd17-aspirin-test" in capsys.readouterr().out
    try:
        code = main(["--no-cpu-tuning", "datasets", "rmd17-aspirin-test", "--root", str(mirror), "--verify"])
    except SystemExit as exit_:
        code = exit_.code
    assert code != 0 and "the registry's is" in capsys.readouterr().err
