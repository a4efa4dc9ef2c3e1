"""Fixtures for the data tests: an isolated MMTHESIS_HOME, a small prepared shapes dataset, a miniature emoji tarball."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from types import SimpleNamespace

import pytest
from PIL import Image

from mmthesis.data.datasets.shapes import ShapesConfig, prepare_shapes

SMALL_SHAPES = ShapesConfig(train=48, val=12, test=10, samples_per_shard=20)


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own MMTHESIS_HOME; nothing is written to the real home."""
    home = tmp_path / "mmthesis-home"
    monkeypatch.setenv("MMTHESIS_HOME", str(home))
    monkeypatch.delenv("MMTHESIS_DATA_ROOT", raising=False)
    monkeypatch.delenv("MMTHESIS_RUNS_ROOT", raising=False)
    return home


@pytest.fixture(scope="session")
def shapes_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A prepared root holding a small shapes dataset (70 images); read-only for tests."""
    root = tmp_path_factory.mktemp("shapes-root")
    prepare_shapes(root, SMALL_SHAPES)
    return root


# --------------------------------------------------------------------------- miniature emoji tarball


def rgba_png(colour: tuple[int, int, int, int], size: int = 64) -> bytes:
    """A ``size`` x ``size`` RGBA PNG: transparent except a centred square of ``colour``."""
    im = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    q = size // 4
    im.paste(Image.new("RGBA", (size // 2, size // 2), colour), (q, q))
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def _entry(unified: str, name: str, short_names: list[str], category: str, subcategory: str = "sub") -> dict:
    return {
        "name": name,
        "unified": unified,
        "short_name": short_names[0] if short_names else "",
        "short_names": short_names,
        "category": category,
        "subcategory": subcategory,
        "image": f"{unified.lower()}.png",
        "has_img_twitter": True,
    }


# 9 good records (2 categories), then 3 planted bad ones.
GOOD = [
    _entry("1F600", "GRINNING FACE", ["grinning"], "Smileys & Emotion", "face-smiling"),
    _entry("1F603", "SMILING FACE WITH OPEN MOUTH", ["smiley"], "Smileys & Emotion", "face-smiling"),
    _entry("1F604", "SMILING FACE WITH OPEN MOUTH AND SMILING EYES", ["smile"], "Smileys & Emotion", "face-smiling"),
    _entry(
        "1F601",
        "GRINNING FACE WITH SMILING EYES",
        ["grin", "grinning_face_with_smiling_eyes"],
        "Smileys & Emotion",
        "face-smiling",
    ),
    _entry("1F436", "DOG FACE", ["dog"], "Animals & Nature", "animal-mammal"),
    _entry("1F431", "CAT FACE", ["cat"], "Animals & Nature", "animal-mammal"),
    _entry("1F42D", "MOUSE FACE", ["mouse"], "Animals & Nature", "animal-mammal"),
    _entry("1F98A", "FOX FACE", ["fox_face", "fox"], "Animals & Nature", "animal-mammal"),
    _entry("1F43B", "BEAR FACE", ["bear"], "Animals & Nature", "animal-mammal"),
]
MISSING_PNG = _entry("1F9FF", "NAZAR AMULET", ["nazar_amulet"], "Objects", "other-object")
CORRUPT_PNG = _entry("1F4A9", "PILE OF POO", ["poop"], "Smileys & Emotion", "face-costume")
NO_CAPTION = _entry("1F47B", "", [], "Smileys & Emotion", "face-costume")
ENTRIES = [*GOOD, MISSING_PNG, CORRUPT_PNG, NO_CAPTION]


def build_tarball(path: Path, entries: list[dict] | None = None, extra: dict[str, bytes] | None = None) -> Path:
    """A tarball in the npm package's layout (package/emoji.json + package/img/twitter/64/*.png)."""
    entries = ENTRIES if entries is None else entries
    files: dict[str, bytes] = {
        "package/package.json": b'{"name": "emoji-datasource-twitter"}',
        "package/emoji.json": json.dumps(entries).encode(),
    }
    for i, e in enumerate(entries):
        if e is MISSING_PNG:
            continue
        data = b"\x89PNG\r\n\x1a\nthis is not a png" if e is CORRUPT_PNG else rgba_png((20 * i, 100, 200, 255))
        files[f"package/img/twitter/64/{e['image']}"] = data
    files.update(extra or {})
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture
def mini_tarball(tmp_path: Path) -> Path:
    return build_tarball(tmp_path / "emoji-datasource-twitter-16.0.0.tgz")


@pytest.fixture
def mini() -> SimpleNamespace:
    """The miniature tarball's records and builders (fixtures, not imports: other test folders have conftests too)."""
    return SimpleNamespace(
        GOOD=GOOD,
        MISSING_PNG=MISSING_PNG,
        CORRUPT_PNG=CORRUPT_PNG,
        NO_CAPTION=NO_CAPTION,
        build_tarball=build_tarball,
        rgba_png=rgba_png,
    )
