"""The datasets and model files of jaxtl's notebooks, examples and benchmarks, by name.

    import jaxtl.datasets
    train = jaxtl.datasets.path("rmd17-aspirin-train")   # -> Path of an extxyz file
    jaxtl.datasets.path("spice-mace")                     # a mace-torch model file

A name resolves to a file (or, for `h2cu-slabs`, a folder) found under the first of
these roots that holds it:

1. `root=` (an explicit mirror directory),
2. $JAXTL_DATA (an offline mirror: CI and the tests point it at ../shared),
3. the user cache, `cache_root()/datasets` ($JAXTL_CACHE, else ~/.cache/jaxtl),

each laid out as the mirror is: `data/molecules/aspirin_train.extxyz`,
`models/spice_mace.model`, ... (`Dataset.relpath`). An entry with a public `url` that is
found nowhere is downloaded into the cache and kept only if its sha256 matches the
registry's. An entry without one (the files that were converted from their source's
format) must come from a mirror; the error names the entry, the roots searched and
$JAXTL_DATA. This module imports neither JAX nor torch.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path

from jaxtl.foundations import FoundationError, cache_root, download, file_sha256

DATA_ENV = "JAXTL_DATA"


class DatasetError(ValueError):
    """An unknown name, a file found nowhere, or a file whose sha256 is not the registry's."""


@dataclasses.dataclass(frozen=True)
class Dataset:
    """One file (or a folder of files) of the registry.

    Attributes:
        name: the name `path()` accepts.
        relpath: where it lies under a mirror root (POSIX separators).
        description: what it is, in a line.
        licence: the licence of the source.
        source: where it comes from (a repository or paper), for people.
        sha256: hex digest of the file; for a folder, `files` holds one per member.
        url: a public address of exactly this file, when one exists (downloads check
            `sha256`); None for files that exist only in a mirror.
        files: for a folder, its members as (file name, sha256) pairs.
    """

    name: str
    relpath: str
    description: str
    licence: str
    source: str
    sha256: str | None = None
    url: str | None = None
    files: tuple[tuple[str, str], ...] = ()

    @property
    def is_folder(self) -> bool:
        return bool(self.files)


_MACE_JAX = "https://raw.githubusercontent.com/ACEsuit/mace-jax/adc9c3363158adda49e7c1a05d7b10110e20d71f/data"
_MACE = "https://raw.githubusercontent.com/ACEsuit/mace/1c0e4e8742292641ae874f3f77b091d58fb6e9f0"
_UNSTATED = "see the source"
_MLEARN = "materialsvirtuallab/mlearn (Zuo et al., J. Phys. Chem. A 124, 731 (2020)), converted from JSON to extxyz"
_MLEARN_SHA = {
    ("Si", "train"): "96dac8e530b6361c388e1538137dabc5eb90f39b0de9ea843d6bce9e7cfe465a",
    ("Si", "test"): "846c6cb24ff55a894454d1b1626b48a28bfd91321e65810ab5a7d08cfc9ebfd3",
    ("Mo", "train"): "5b0d51d50eca185d96f4c0e07a256b58663f41a4044c33c871b6f55bbf891407",
    ("Mo", "test"): "8bebf9c53a154d11ec7d064afd884800c9137f386d32a15f3d771f76a5e3cbcf",
    ("Ge", "train"): "9d31a8c4e2a8c6c22b4c29f0bd8c3c24c5f72146213bd07629ff30267d402ca3",
    ("Ge", "test"): "6873b2c05131896e016e409c7a6467bf39a4c44bbc093fca2fad7f272101b974",
    ("Li", "train"): "01a445e0704ee0b86596b4f2ceefcf4f69471d417f5ec7f89b2bcb734923631b",
    ("Li", "test"): "5acf85fce7e8e529f55f88734af0fc9a20408025a141b6a9376b7d549522944d",
}
_H2CU_SLABS = (
    ("cu100.in", "7d28912ccab043e06d2417a74686f9e40b4840634a0e4fda190eae1b245d38f3"),
    ("cu100_0K.in", "07e8840583a94afa7e4d6ac18c71732fb1ba76d5c2223619494b9566a82f440f"),
    ("cu100_3_66_ase.in", "cae61b75cb733336e07797d43795b702e354afc8cc16896075b5ffb0b60a27b8"),
    ("cu100_3_68_ase.in", "f62589576142c19e148c5cea45bb1b52ccb394b4ad7f90023e0f65ffb54a99b6"),
    ("cu100_3_71_ase.in", "04af2e48f720fbdfc55102f78533ffb7533e697b79197c1bed142881eb4aae14"),
    ("cu100_4x4.in", "6cfea20c06befe2561a957f4c818d9d61f8e7885133e23031e8b5c9608a3a9c7"),
    ("cu100_925K.in", "729c672db118e86271779932f5c7766cccc9b09026beef8b7bf3c147dda0cd00"),
    ("cu100_h7.0_full_0K.in", "85d9e508ce4b874bf6bf80cbeea121bc69c0c06c6d6c2162c92dedec1737946b"),
    ("cu110.in", "041306a8d95c6d25f172af19de43cd7d53d581bea6b030a90578d5c991b08cfa"),
    ("cu110_0K.in", "9efcbe73039a56537c6ffe68eb86b72b00f46620fb97156ac875e318e6fb1579"),
    ("cu110_2.in", "82d8cffd044e4989ec9e9d45e68a4f11ff7b2036e20eab32abcbf240cf68eccc"),
    ("cu110_3_66_ase.in", "526e953d0b1621515f2d6f1821ec6f409d5819a100bb66736cea41ec7843178b"),
    ("cu110_3_68_ase.in", "185c32e4e7fbc67017b8703c6a24d3c1b14f32db35f49f749042c4e7e76554ea"),
    ("cu110_3_71_ase.in", "435d3d3397be3e5d82e2faaa4f3376983184fe550292ec00bd0a2bbe678d93da"),
    ("cu110_4x4.in", "33a8dc7484c0a2bda8f044e69ae29e586ce1ece278be396ff049a1c088003677"),
    ("cu110_925K.in", "e9ce8233cd1ae20344e7d8ea08e736b84b0974f8011289b99cbd0e8be54bcfbf"),
    ("cu110_h7.0_full_0K.in", "94c5f9c31952972b2b5a64ce5b810201499a0e81b9bed41ab03b4a16f71207b9"),
    ("cu111.in", "c53bd1799d1abccb0aeeda3f9ce32721e49a6e0bca4cf145ca964217dfca9b93"),
    ("cu111_0K.in", "33ec7c8683cb179b87ece3ad8367536b4207798f12751439aeca504ad86b7664"),
    ("cu111_0K_3x3_20lr.in", "19df28112e70539e7916e600709d06adf85b1592e39e91248efc1f445a4fe202"),
    ("cu111_0K_d2.in", "33ec7c8683cb179b87ece3ad8367536b4207798f12751439aeca504ad86b7664"),
    ("cu111_3_66_ase.in", "f0259781bfebcfe8f69bc8e8fe4ad1ff8cd00c1462b691dae203dcc99693dabd"),
    ("cu111_3_68_ase.in", "aa16e03780d7d30ef778592e40b0de72a9dd5eb62491a694c8b17cafd4a2cd08"),
    ("cu111_3_71_ase.in", "a786c6406052d5f2fa928127d26125e25e0916fe4c117e5134e12373e0020c2f"),
    ("cu111_4x4.in", "caef8e56fbc17c6d008762e181df0ff7bf4013b079c14f2c989381ddc906a6f5"),
    ("cu111_925K.in", "7202ae706e23f0b5dc47168a519a7a39fe8cb2ad1ad4fc482b3bb8f7bed3484b"),
    ("cu111_h7.0_full_0K.in", "ec1ffce9398d275ed1fae472fc8efee96ffde8e8f5a830ee161c69792a2ac62b"),
    ("cu111_h7.0_full_925K.in", "9ace96c471edbf44c93ed3d10978fa74259d0c4cbed7dee6dd7e78b6d9d92b16"),
    ("cu211.in", "7ea135167d954bb4c5e3560bd3003e09c8e6ab153e24f61595afa189682e2a9f"),
    ("cu211_0K.in", "5cb3b368f04ff39ffb7cb6b2f2ff1b005226eedb367e479a29b742ff92d7c53c"),
    ("cu211_0K_3x4.in", "7ac0a1d2dbc6fb436e23e4380c9ba53e95c31d83b795c61396f0cebabf8c8dfb"),
    ("cu211_2.in", "fff5de42444e0d38eb38ce0be6809f9c1aed1d10343c0a673ce1ebe174659932"),
    ("cu211_3_66_3x4_ase.in", "8697b14f4b79e79c3156eb03b84e509ea124be9eddb574307e921d02cee0be43"),
    ("cu211_3_66_ase.in", "5d99ddc30a869a126d32f469ee3b0817cf9f6624ed8a9e1f2f0d10f6079dd6d1"),
    ("cu211_3_68_3x4_ase.in", "dc1af2e2209623da99823a6b81ffa7155300c92a7dbb818a9c2418296ffe68fb"),
    ("cu211_3_71_3x4_ase.in", "a5fbd42e48b625feb4a0500db41eded84673c0a5907f538cd452c8cae8fc4dae"),
    ("cu211_3_71_ase.in", "348b719ed0357010ceb5c0230487440f34f5c0842c4483ecc97ddc74ae2fdbc0"),
    ("cu211_4x4.in", "012fe2deb29f63586e6523d09e3b292b7b28bf506ff0c439df508104d222099e"),
    ("cu211_925K.in", "348b719ed0357010ceb5c0230487440f34f5c0842c4483ecc97ddc74ae2fdbc0"),
    ("cu211_h7.0_full_0K.in", "e30a898d033cd5eb675e6ad74d839ce143307f210942d9c9f2facf7a3fbd69f1"),
    ("cu211_h7.0_full_925K.in", "24d86b93f196753825c3135e17dc21ca02f4d0bcf4e68314f241d087d9fce170"),
)

DATASETS: dict[str, Dataset] = {
    d.name: d
    for d in (
        Dataset(
            "rmd17-aspirin-train",
            "data/molecules/aspirin_train.extxyz",
            "revised MD17 aspirin, 1200 structures of 21 atoms (C, H, O), PBE/def2-SVP, non-periodic",
            _UNSTATED,
            "rMD17 (Christensen and von Lilienfeld 2020), as shipped in ACEsuit/mace-jax data/",
            "1d7146a572e49b475e437f232b4d1e6b2f294bd8ce76dbc0e904bbdac25bfc63",
            f"{_MACE_JAX}/rmd17_aspirin_train.xyz",
        ),
        Dataset(
            "rmd17-aspirin-test",
            "data/molecules/aspirin_test.extxyz",
            "revised MD17 aspirin, 1800 structures of 21 atoms (C, H, O), PBE/def2-SVP, non-periodic",
            _UNSTATED,
            "rMD17 (Christensen and von Lilienfeld 2020), as shipped in ACEsuit/mace-jax data/",
            "17d8b0b6b485855c581ff8ddf2b4e056f6e99d4a682691cad7b3b5f44822599a",
            f"{_MACE_JAX}/rmd17_aspirin_test.xyz",
        ),
        Dataset(
            "3bpa-300K",
            "data/molecules/3bpa_300K.extxyz",
            "3BPA, 500 structures of 27 atoms (C, H, N, O) from 300 K MD, wB97X/6-31G(d)",
            _UNSTATED,
            "Kovacs et al., JCTC 17, 7696 (2021), as shipped in ACEsuit/mace-jax data/",
            "d109971fab90e2231ad931a83eb704c8d940f5c7d7a8de27fe3b84ea18634c0a",
        ),
        *(
            Dataset(
                f"mlearn-{el}-{split}",
                f"data/mlearn/{el}_{split}.extxyz",
                f"mlearn {el} {split} set (AIMD, elastic, vacancy, surface config_types), VASP PBE",
                "BSD-3-Clause",
                _MLEARN,
                sha,
            )
            for (el, split), sha in _MLEARN_SHA.items()
        ),
        Dataset(
            "co2-ni100",
            "data/co2_ni100/co2_ni100.extxyz",
            "CO2 on a 4-layer 3x3 Ni(100) slab, 991 structures of 39 atoms (C, O, Ni), VASP PBE",
            "MIT",
            "zhangylch/REANN data/co2+Ni100 (converted from REANN's text format)",
            "8af58ec765c3147cd74e1a7939218cb988eea8ff78b6cd76b95e3a425156eda9",
        ),
        Dataset(
            "alniti",
            "data/alniti/alniti.extxyz",
            "Al-Ni-Ti alloys, 2187 structures of 1-56 atoms, VASP PBE (filter the extrapolation frames)",
            "research and education use",
            "Gubaev et al., Comput. Mater. Sci. 156, 148 (2019), via colabfit/colabfit-tools",
            "d85f7b3dcd4d1d0da40e425e53d0ee18cd96ed9c794a2750f2f8b92266488654",
        ),
        Dataset(
            "wbe",
            "data/wbe/wbe.extxyz.xz",
            "W-Be binary, 25,422 structures of 1-257 atoms, VASP PBE (xz-compressed; slow to parse)",
            "GPL-2.0",
            "Wood et al., PRB 99, 184305 (2019), via FitSNAP/FitSNAP examples/WBe_PRB2019",
            "9a12d3ddb4ca7b3717428847eee03899d920ffc35becde2d9d9f69592976b2a3",
        ),
        Dataset(
            "h2cu-slabs",
            "data/h2cu_slabs",
            "FHI-aims geometry files of Cu(100), (110), (111), (211) slabs: MD starts for the H2/Cu model",
            "MIT",
            "wgst/ml-gas-surface init_structures/",
            files=_H2CU_SLABS,
        ),
        Dataset(
            "h2cu-mace",
            "models/h2cu_mace.model",
            "mace-torch 0.2.0 ScaleShiftMACE for H2 on Cu surfaces (H, Cu; 16x0e, 2 interactions, float32)",
            "MIT",
            "wgst/ml-gas-surface models/h2cu/pes/MACE_model_swa.model (Stark et al., JPCC 127, 24168 (2023))",
            "2c8e8953a3d05cac94b8d9d8ded6f7884b66e71fd5b9251d139019ad6ccb158e",
        ),
        Dataset(
            "spice-mace",
            "models/spice_mace.model",
            "mace-torch ~0.1 ScaleShiftMACE trained on SPICE, 15 elements, 32x0e, r_max 4.5 A, float32",
            "MIT",
            "ACEsuit/mace tests/test_openmm/MACE_SPICE.model",
            "ba43f51ff202b77d3cbae8c4fac1172e64b4e5cd564b670af6e1f158b82bd8df",
            f"{_MACE}/tests/test_openmm/MACE_SPICE.model",
        ),
    )
}


def names() -> list[str]:
    return list(DATASETS)


def get(name: str) -> Dataset:
    """The registry entry of `name`.

    Examples:
        >>> get("rmd17-aspirin-train").relpath
        'data/molecules/aspirin_train.extxyz'
        >>> get("mlearn-Si-train").url is None  # converted from mlearn's JSON: mirror only
        True
        >>> get("aspirin")
        Traceback (most recent call last):
        ...
        jaxtl.datasets.DatasetError: 'aspirin' is not a jaxtl dataset; known: rmd17-aspirin-train, ...
    """
    try:
        return DATASETS[name]
    except KeyError:
        raise DatasetError(f"{name!r} is not a jaxtl dataset; known: {', '.join(names())}") from None


def cache_dir(cache: str | Path | None = None) -> Path:
    """Where downloads go: `cache_root()/datasets`, laid out as a mirror."""
    return cache_root(cache) / "datasets"


def roots(root: str | Path | None = None, cache: str | Path | None = None) -> list[Path]:
    """The directories searched, in order: `root`, $JAXTL_DATA, the user cache."""
    env = os.environ.get(DATA_ENV)
    found = [Path(r).expanduser() for r in (root, env) if r]
    return [*found, cache_dir(cache)]


def _present(entry: Dataset, base: Path) -> bool:
    where = base / entry.relpath
    if entry.is_folder:
        return all((where / name).is_file() for name, _ in entry.files)
    return where.is_file()


def path(
    name: str | Dataset,
    root: str | Path | None = None,
    download: bool = True,
    cache: str | Path | None = None,
    log: Callable[[str], None] = print,
) -> Path:
    """The local path of dataset `name`, downloaded (and checked) into the cache when it is nowhere.

    root: a mirror directory searched first; $JAXTL_DATA next, then the cache.
    download: fetch entries that have a public URL when no root holds them.
    Files found in a root are not hashed here (`verify` does that).
    """
    entry = get(name) if isinstance(name, str) else name
    searched = roots(root, cache)
    for base in searched:
        if _present(entry, base):
            return base / entry.relpath
    if entry.url and download:
        dest = cache_dir(cache) / entry.relpath
        log(f"downloading {entry.name} from {entry.url} into {dest}")
        try:
            _download(entry.url, dest, entry.sha256)
        except FoundationError as err:
            raise DatasetError(f"dataset {entry.name!r}: {err}") from None
        return dest
    env = os.environ.get(DATA_ENV)
    how = (
        f"download it from {entry.url}"
        if entry.url
        else f"it has no public download (source: {entry.source}): get a mirror that holds it"
    )
    raise DatasetError(
        f"dataset {entry.name!r} ({entry.relpath}) not found in {', '.join(str(b) for b in searched)}; "
        f"${DATA_ENV} is {'set to ' + repr(env) if env else 'not set'}. Point ${DATA_ENV} (or root=) at a mirror "
        f"directory holding {entry.relpath}, or {how}"
    )


def _download(url: str, dest: Path, sha256: str | None) -> None:
    if not sha256:
        raise FoundationError(f"{url} has no recorded sha256: refusing a file that cannot be checked")
    download(url, dest, sha256=sha256, progress=False)


def verify(name: str | Dataset, root: str | Path | None = None, cache: str | Path | None = None) -> Path:
    """`path(name)` (no download), after checking the sha256 of the file or of every file of the folder."""
    entry = get(name) if isinstance(name, str) else name
    where = path(entry, root, download=False, cache=cache)
    members = [(where / f, sha) for f, sha in entry.files] if entry.is_folder else [(where, entry.sha256)]
    for file, expected in members:
        got = file_sha256(file)
        if expected and got != expected:
            raise DatasetError(f"dataset {entry.name!r}: {file} has sha256 {got}, the registry's is {expected}")
    return where


def describe(root: str | Path | None = None, cache: str | Path | None = None) -> str:
    """A table of the registry: name, where it was found (or its URL), licence, description."""
    lines = []
    for entry in DATASETS.values():
        found = next((b for b in roots(root, cache) if _present(entry, b)), None)
        state = (
            str(found / entry.relpath)
            if found
            else (f"downloadable: {entry.url}" if entry.url else "not found (mirror only)")
        )
        lines.append(f"{entry.name:<20} {entry.licence:<20} {state}")
        lines.append(f"    {entry.description}")
    lines.append(f"searched: {', '.join(str(b) for b in roots(root, cache))}")
    return "\n".join(lines)
