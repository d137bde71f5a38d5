"""Released MACE foundation models by name: download once, check, convert once.

    jaxtl convert mace-mp-0-medium          # -> ~/.cache/jaxtl/foundations/mace-mp-0-medium/
    jaxtl.load_model("mace-off23-small")
    jaxtl finetune --foundation mace-mpa-0-medium ...

Cache (root: `cache=` / `--cache`, else $JAXTL_CACHE, else ~/.cache/jaxtl):

    ROOT/foundations/FILENAME     the mace-torch file, under its published name
    ROOT/foundations/NAME/        its converted, verified jaxtl model folder

A download goes to FILENAME.part and is renamed into place only after it passes
`check_file`: its length against the HTTP Content-Length, the CRC of every member of
the zip archive (torch `.model` files are zip archives), and its sha256 when one is
known (the registry's or the user's). Whatever fails leaves neither the `.part` nor the
final file behind. Without network, put the file at the path the error names.

$JAXTL_FOUNDATION_BASE_URL, when set, replaces the directory of every URL (a mirror,
or a local server in the tests). This module imports neither torch nor JAX; only the
conversion (`model_dir`) reaches `jaxtl.convert`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import http.client
import json
import os
import sys
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

BASE_URL_ENV = "JAXTL_FOUNDATION_BASE_URL"
CACHE_ENV = "JAXTL_CACHE"
CHUNK = 1 << 20  # bytes read per step of a download
TIMEOUT = 60.0  # seconds without a byte before a download is abandoned


class FoundationError(ValueError):
    """An unknown model name, or a download that failed or did not pass its checks."""


@dataclasses.dataclass(frozen=True)
class Foundation:
    """One released model file.

    Attributes:
        name: the name jaxtl accepts (`jaxtl convert NAME`).
        url: the official address of the mace-torch `.model` file.
        description: what it is, in a line.
        sha256: hex digest of the file, when known (checked after download).
        elements: the elements it was trained on, when known.
        level_of_theory: the reference method of its training data.
        license: "MIT" or "ASL" (Academic Software License, non-commercial).
    """

    name: str
    url: str
    description: str
    sha256: str | None = None
    elements: str | None = None
    level_of_theory: str | None = None
    license: str | None = None

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]


_MP = "https://github.com/ACEsuit/mace-mp/releases/download"
_FOUNDATIONS = "https://github.com/ACEsuit/mace-foundations/releases/download"
_OFF = "https://raw.githubusercontent.com/ACEsuit/mace-off/main"
_MPTRJ = "PBE/PBE+U (MPtrj)"
_SPICE = "wB97M-D3(BJ)/def2-TZVPPD (SPICE)"
_ORGANIC = "H C N O F P S Cl Br I"

FOUNDATIONS: dict[str, Foundation] = {
    f.name: f
    for f in (
        Foundation(
            "mace-mp-0-small",
            f"{_MP}/mace_mp_0/2023-12-10-mace-128-L0_energy_epoch-249.model",
            "MACE-MP-0 small: 128x0e, materials",
            elements="89",
            level_of_theory=_MPTRJ,
            license="MIT",
        ),
        Foundation(
            "mace-mp-0-medium",
            f"{_MP}/mace_mp_0/2023-12-03-mace-128-L1_epoch-199.model",
            "MACE-MP-0 medium: 128x0e+128x1o, materials",
            elements="89",
            level_of_theory=_MPTRJ,
            license="MIT",
        ),
        Foundation(
            "mace-mp-0-large",
            f"{_MP}/mace_mp_0/MACE_MPtrj_2022.9.model",
            "MACE-MP-0 large: 128x0e+128x1o+128x2e, materials",
            elements="89",
            level_of_theory=_MPTRJ,
            license="MIT",
        ),
        Foundation(
            "mace-mp-0b3-medium",
            f"{_MP}/mace_mp_0b3/mace-mp-0b3-medium.model",
            "MACE-MP-0b3 medium: density blocks, ZBL, better high-pressure behaviour",
            elements="89",
            level_of_theory=_MPTRJ,
            license="MIT",
        ),
        Foundation(
            "mace-mpa-0-medium",
            f"{_MP}/mace_mpa_0/mace-mpa-0-medium.model",
            "MACE-MPA-0 medium: MPtrj + sAlex",
            elements="89",
            level_of_theory="PBE/PBE+U (MPtrj + sAlex)",
            license="MIT",
        ),
        Foundation(
            "mace-omat-0-small",
            f"{_MP}/mace_omat_0/mace-omat-0-small.model",
            "MACE-OMAT-0 small: OMat24",
            elements="89",
            level_of_theory="PBE/PBE+U (OMat24)",
            license="ASL",
        ),
        Foundation(
            "mace-omat-0-medium",
            f"{_MP}/mace_omat_0/mace-omat-0-medium.model",
            "MACE-OMAT-0 medium: OMat24",
            elements="89",
            level_of_theory="PBE/PBE+U (OMat24)",
            license="ASL",
        ),
        Foundation(
            "mace-matpes-pbe-0",
            f"{_FOUNDATIONS}/mace_matpes_0/MACE-matpes-pbe-omat-ft.model",
            "MACE-MATPES-PBE-0: OMAT-0 fine-tuned on MatPES PBE",
            elements="89",
            level_of_theory="PBE, no +U (MatPES)",
            license="ASL",
        ),
        Foundation(
            "mace-matpes-r2scan-0",
            f"{_FOUNDATIONS}/mace_matpes_0/MACE-matpes-r2scan-omat-ft.model",
            "MACE-MATPES-r2SCAN-0: OMAT-0 fine-tuned on MatPES r2SCAN",
            elements="89",
            level_of_theory="r2SCAN (MatPES)",
            license="ASL",
        ),
        Foundation(
            "mace-off23-small",
            f"{_OFF}/mace_off23/MACE-OFF23_small.model",
            "MACE-OFF23 small: organic molecules",
            elements=_ORGANIC,
            level_of_theory=_SPICE,
            license="ASL",
        ),
        Foundation(
            "mace-off23-medium",
            f"{_OFF}/mace_off23/MACE-OFF23_medium.model",
            "MACE-OFF23 medium: organic molecules",
            elements=_ORGANIC,
            level_of_theory=_SPICE,
            license="ASL",
        ),
        Foundation(
            "mace-off23-large",
            f"{_OFF}/mace_off23/MACE-OFF23_large.model",
            "MACE-OFF23 large: organic molecules",
            elements=_ORGANIC,
            level_of_theory=_SPICE,
            license="ASL",
        ),
        Foundation(
            "mace-off24-medium",
            f"{_OFF}/mace_off24/MACE-OFF24_medium.model",
            "MACE-OFF24 medium: organic molecules",
            level_of_theory=_SPICE,
            license="ASL",
        ),
    )
}


def names() -> list[str]:
    return list(FOUNDATIONS)


def _key(name: str) -> str:
    key = name.strip().lower().replace("_", "-")
    return key if key in FOUNDATIONS or f"mace-{key}" not in FOUNDATIONS else f"mace-{key}"


def is_name(name: str) -> bool:
    return _key(str(name)) in FOUNDATIONS


def get(name: str) -> Foundation:
    """The registry entry of `name` (case, `_`/`-` and a missing `mace-` prefix forgiven)."""
    try:
        return FOUNDATIONS[_key(name)]
    except KeyError:
        raise FoundationError(f"{name!r} is not a released foundation model; known: {', '.join(names())}") from None


def cache_root(cache: str | Path | None = None) -> Path:
    return Path(cache or os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "jaxtl").expanduser()


def torch_path(model: Foundation, cache: str | Path | None = None) -> Path:
    """Where the mace-torch file of `model` lives in the cache."""
    return cache_root(cache) / "foundations" / model.filename


def converted_path(model: Foundation, cache: str | Path | None = None) -> Path:
    """Where the converted jaxtl model folder of `model` lives in the cache."""
    return cache_root(cache) / "foundations" / model.name


def source_url(model: Foundation, base_url: str | None = None) -> str:
    base = base_url or os.environ.get(BASE_URL_ENV)
    return f"{base.rstrip('/')}/{model.filename}" if base else model.url


# ---------------------------------------------------------------- integrity


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def check_file(
    path: str | Path,
    size: int | None = None,
    sha256: str | None = None,
    digest: str | None = None,
    label: str | None = None,
) -> None:
    """Raise FoundationError unless `path` is a whole, intact model file.

    size: the expected length in bytes (the HTTP Content-Length), if known.
    sha256: the expected hex digest, if known; `digest` is the file's own when
        already computed (during the download).
    A file that is not a zip archive passes only when its sha256 is given and matches
    (torch has written zip archives since 1.6; older files can be vouched for so).
    """
    path = Path(path)
    label = label or str(path)
    got = path.stat().st_size
    if size is not None and got != size:
        raise FoundationError(f"{label}: received {got} of {size} bytes (Content-Length): the download was cut short")
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as archive:
                bad = archive.testzip()
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as err:
            raise FoundationError(f"{label}: damaged zip archive ({err})") from err
        if bad is not None:
            raise FoundationError(f"{label}: zip member {bad!r} fails its CRC check: the file is corrupt")
    elif not sha256:
        raise FoundationError(
            f"{label}: not a zip archive, as torch .model files are (a truncated file, or an "
            "HTML page?); a file in torch's legacy format passes only with its --sha256"
        )
    if sha256:
        digest = digest or file_sha256(path)
        if digest != sha256.strip().lower():
            raise FoundationError(f"{label}: sha256 is {digest}, expected {sha256.strip().lower()}")


# ---------------------------------------------------------------- download


@contextlib.contextmanager
def _progress(total: int | None, label: str, enabled: bool) -> Iterator[Callable[[int], None]]:
    """A callback `advance(n_bytes)`: tqdm's bar when installed, else a line on stderr."""
    if not enabled:
        yield lambda n: None
        return
    try:
        from tqdm import tqdm
    except ImportError:
        tqdm = None
    if tqdm is not None:
        with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=label) as bar:
            yield bar.update
        return
    done, shown = 0, -1

    def advance(n: int) -> None:
        nonlocal done, shown
        done += n
        step = int(100 * done / total) if total else done // (10 * CHUNK)
        if step != shown:
            shown = step
            of = f" / {total / 1e6:.1f} MB ({step}%)" if total else " MB"
            print(f"\r{label}: {done / 1e6:.1f}{of}", end="", file=sys.stderr, flush=True)

    try:
        yield advance
    finally:
        print(file=sys.stderr)


def download(
    url: str, dest: str | Path, sha256: str | None = None, timeout: float = TIMEOUT, progress: bool = True
) -> str:
    """Fetch `url` into `dest` through `dest.part`; return the file's sha256.

    The file appears at `dest` only after `check_file` passed; on any failure (network,
    interruption, integrity, Ctrl-C) neither `dest.part` nor `dest` is left behind.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    request = urllib.request.Request(url, headers={"User-Agent": "jaxtl"})
    try:
        try:
            response = urllib.request.urlopen(request, timeout=timeout)
        except urllib.error.HTTPError as err:
            raise FoundationError(f"{url}: HTTP {err.code} {err.reason}") from err
        except (urllib.error.URLError, http.client.HTTPException, OSError) as err:
            reason = getattr(err, "reason", err)
            raise FoundationError(
                f"could not reach {url} ({reason}). Offline? Download the file elsewhere and put it at {dest}"
            ) from err
        digest, got = hashlib.sha256(), 0
        length = response.headers.get("Content-Length")
        size = int(length) if length is not None else None
        with response:
            if response.headers.get_content_type() == "text/html":
                raise FoundationError(f"{url} answered with an HTML page, not a model file: check the URL")
            try:
                with open(part, "wb") as f, _progress(size, dest.name, progress) as advance:
                    while chunk := response.read(CHUNK):
                        f.write(chunk)
                        digest.update(chunk)
                        got += len(chunk)
                        advance(len(chunk))
            except (http.client.HTTPException, OSError) as err:
                raise FoundationError(
                    f"download of {url} interrupted after {got} of {size or '?'} bytes ({err!r}); nothing was kept"
                ) from err
        check_file(part, size, sha256, digest.hexdigest(), label=f"download of {url}")
        os.replace(part, dest)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    return digest.hexdigest()


# ---------------------------------------------------------------- by name


def fetch(
    name: str,
    cache: str | Path | None = None,
    sha256: str | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> Path:
    """The checked mace-torch file of `name` in the cache, downloaded when missing.

    sha256: a digest to check, instead of the registry's. A file already in the cache
    (perhaps put there by hand) is checked too.
    """
    model = get(name)
    dest = torch_path(model, cache)
    sha256 = sha256 or model.sha256
    if dest.exists():
        try:
            check_file(dest, sha256=sha256)
        except FoundationError as err:
            raise FoundationError(f"{err}. Delete {dest} to download it again") from None
        return dest
    url = source_url(model)
    if model.license == "ASL":
        log(f"{model.name} is under the Academic Software License (no commercial use): https://github.com/gabor1/ASL")
    log(f"downloading {model.name} from {url} into {dest}")
    digest = download(url, dest, sha256=sha256, progress=progress)
    log(f"sha256 {digest}")
    return dest


def _is_converted(folder: Path, verified: bool, sha256: str | None = None) -> bool:
    """A complete model folder, verified against mace-torch if asked, converted from `sha256` if given."""
    if not ((folder / "config.json").exists() and (folder / "variables").exists()):
        return False
    meta_file = folder / "metadata.json"
    meta = json.loads(meta_file.read_text()) if meta_file.exists() else {}
    return (not verified or "parity" in meta) and (not sha256 or meta.get("sha256") == sha256.strip().lower())


def model_dir(
    name: str,
    cache: str | Path | None = None,
    sha256: str | None = None,
    check: bool = True,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> Path:
    """The converted jaxtl model folder of `name`: downloaded and converted the first time, reused after.

    check: verify the conversion against mace-torch (a folder converted without the
    check is converted again when one asks for it).
    sha256: the digest the source file must have (checked on the cached folder's record too).
    """
    model = get(name)
    out = converted_path(model, cache)
    if _is_converted(out, verified=check, sha256=sha256):
        return out
    source = fetch(name, cache, sha256, progress, log)
    from jaxtl.convert.convert import convert_file  # the only door to torch

    log(f"converting {model.name} into {out}")
    convert_file(source, out, check=check, log=log)
    meta_file = out / "metadata.json"
    meta = json.loads(meta_file.read_text()) if meta_file.exists() else {}
    meta.update(foundation=model.name, url=source_url(model), sha256=file_sha256(source))
    tmp = meta_file.with_name(meta_file.name + ".tmp")
    tmp.write_text(json.dumps(meta, indent=2, default=str))
    os.replace(tmp, meta_file)
    return out


def resolve(model: str | Path, cache: str | Path | None = None, log: Callable[[str], None] = print) -> Path:
    """A path that exists, as is; a released model's name, as its converted folder in the cache."""
    path = Path(model)
    if path.exists():
        return path
    if is_name(str(model)):
        return model_dir(str(model), cache, log=log)
    raise FoundationError(
        f"{model}: no such file or folder, and not a released foundation model (known: {', '.join(names())})"
    )


def export(folder: str | Path, out_dir: str | Path, dtype: str | None = None, head: str | None = None) -> Path:
    """Copy a model folder to `out_dir`, optionally cast to `dtype` and cut to one `head`."""
    from jaxtl.heads import select_head
    from jaxtl.model_io import cast_variables, load_model_files, save_model

    config, variables, meta = load_model_files(folder)
    if head is not None:
        config, variables = select_head(config, variables, head)
        meta["head"] = head
    dtype = dtype or config.dtype
    return save_model(out_dir, config.replace(dtype=dtype), cast_variables(variables, dtype), meta)


def describe(cache: str | Path | None = None) -> str:
    """The table `jaxtl models` prints: name, theory, license, cache state, URL."""
    lines = []
    for model in FOUNDATIONS.values():
        state = (
            "converted"
            if _is_converted(converted_path(model, cache), verified=False)
            else "downloaded"
            if torch_path(model, cache).exists()
            else ""
        )
        lines.append(f"{model.name:<22} {model.level_of_theory or '?':<34} {model.license or '?':<4} {state}")
        lines.append(f"    {model.description}; elements: {model.elements or '?'}")
        lines.append(f"    {model.url}")
    lines.append(f"cache: {cache_root(cache) / 'foundations'}")
    return "\n".join(lines)
