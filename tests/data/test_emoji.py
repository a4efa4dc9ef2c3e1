"""The emoji dataset: tarball handling, record parsing, skips, refusal of unsafe members, preparation."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import stat
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from mmthesis.core.errors import DataMissingError
from mmthesis.core.paths import raw_root
from mmthesis.data.datasets import emoji
from mmthesis.data.manifest import iter_split, read_manifest
from mmthesis.data.registry import get_dataset, prepare_command


def test_registered() -> None:
    spec = get_dataset("emoji")
    assert spec.kind == "image-text" and spec.scales == ("smoke",)
    assert spec.raw_hint == "emoji-datasource-twitter-16.0.0.tgz"
    assert not spec.needs_raw("smoke")  # fetched with npm when --raw is absent
    assert prepare_command("emoji", "smoke") == "mmthesis data prepare emoji"


def test_sha1_is_checked_by_default(mini_tarball: Path) -> None:
    with pytest.raises(DataMissingError, match="sha1"):
        emoji.ensure_tarball(mini_tarball)
    assert emoji.ensure_tarball(mini_tarball, expected_sha1=None) == mini_tarball
    actual = hashlib.sha1(mini_tarball.read_bytes()).hexdigest()
    assert (
        emoji.ensure_tarball(mini_tarball.parent, expected_sha1=actual) == mini_tarball
    )  # a folder holding it works too


def test_missing_raw_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DataMissingError, match="does not exist") as info:
        emoji.ensure_tarball(tmp_path / "nope.tgz")
    assert "--raw" in info.value.one_line()


def test_cached_tarball_in_raw_root_is_used(mini_tarball: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cached = raw_root() / "emoji" / emoji.TARBALL
    cached.parent.mkdir(parents=True)
    shutil.copy(mini_tarball, cached)
    monkeypatch.setattr(emoji, "_npm_pack", lambda dest: pytest.fail("must not fetch when cached"))
    assert emoji.ensure_tarball(None, expected_sha1=None) == cached


def test_npm_missing_names_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(emoji.shutil, "which", lambda _: None)
    with pytest.raises(DataMissingError, match="npm is not installed") as info:
        emoji.ensure_tarball(None)
    assert "--raw" in info.value.fix


def test_npm_failure_names_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "bin" / "npm"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho 'npm ERR! network unreachable' >&2\nexit 1\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    with pytest.raises(DataMissingError, match="network unreachable") as info:
        emoji.ensure_tarball(None)
    assert "--raw" in info.value.fix
    assert not (raw_root() / "emoji" / emoji.TARBALL).exists()  # nothing half-written


def test_iter_records_parses_and_reports_skips(mini: SimpleNamespace, mini_tarball: Path) -> None:
    skipped = []
    records = list(emoji.iter_records(mini_tarball, on_skip=skipped.append))
    # NO_CAPTION has an image: it is a record here; prepare() skips it for lack of captions
    assert [r.id for r in records] == [e["unified"].lower() for e in (*mini.GOOD, mini.NO_CAPTION)]
    assert {(s.id, s.reason) for s in skipped} == {
        (mini.MISSING_PNG["unified"].lower(), "no image"),
        (mini.CORRUPT_PNG["unified"].lower(), "corrupt PNG"),
    }
    first = records[0]
    assert (first.name, first.short_names, first.category, first.subcategory) == (
        "GRINNING FACE",
        ("grinning",),
        "Smileys & Emotion",
        "face-smiling",
    )
    assert Image.open(io.BytesIO(first.png)).size == (64, 64)


@pytest.mark.parametrize("bad_name", ["../evil", "package/../../evil", "/etc/evil", "package/img/../../../evil"])
def test_members_outside_the_package_are_refused(mini: SimpleNamespace, tmp_path: Path, bad_name: str) -> None:
    tarball = mini.build_tarball(tmp_path / "evil.tgz", extra={bad_name: b"pwned"})
    with pytest.raises(DataMissingError, match="outside package/"):
        list(emoji.iter_records(tarball))
    assert not (tmp_path / "evil").exists() and not Path("/etc/evil").exists()


def test_image_field_escaping_the_image_folder_is_skipped(mini: SimpleNamespace, tmp_path: Path) -> None:
    entry = dict(mini.GOOD[0], image="../../package.json")
    tarball = mini.build_tarball(tmp_path / "t.tgz", entries=[entry, mini.GOOD[1]])
    skipped = []
    records = list(emoji.iter_records(tarball, on_skip=skipped.append))
    assert [r.id for r in records] == [mini.GOOD[1]["unified"].lower()]
    assert [s.reason for s in skipped] == ["unsafe or empty image path"]


def test_not_a_tarball_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.tgz"
    bad.write_bytes(b"definitely not gzip")
    with pytest.raises(DataMissingError, match="not a readable tarball"):
        list(emoji.iter_records(bad))


def test_captions_are_lowercased_name_plus_short_names_deduplicated() -> None:
    rec = emoji.EmojiRecord(
        "1f601", "GRINNING FACE WITH SMILING EYES", ("grin", "grinning_face_with_smiling_eyes"), "c", "s", b""
    )
    assert emoji.captions(rec) == ["grinning face with smiling eyes", "grin"]
    rec = emoji.EmojiRecord("1f98a", "FOX FACE", ("fox_face", "fox"), "c", "s", b"")
    assert emoji.captions(rec) == ["fox face", "fox"]
    assert emoji.captions(emoji.EmojiRecord("x", "", (), "c", "s", b"")) == []


def test_rgba_is_composited_on_white(mini: SimpleNamespace) -> None:
    png = mini.rgba_png((255, 0, 0, 128))  # half-transparent red square on a fully transparent background
    rgb = np.asarray(Image.open(io.BytesIO(emoji.to_rgb_png(png))))
    assert rgb.shape == (64, 64, 3)
    assert rgb[0, 0].tolist() == [255, 255, 255]  # transparent -> white
    # red at alpha 128/255 over white: 255 for R; 255 * (1 - 128/255) = 127 for G and B (PIL rounds to 127)
    assert rgb[32, 32].tolist() == [255, 127, 127]


def test_split_is_deterministic_and_roughly_80_10_10() -> None:
    ids = [f"{i:05x}" for i in range(5000)]
    splits = [emoji.split_of(i) for i in ids]
    assert splits == [emoji.split_of(i) for i in ids]
    counts = Counter(splits)
    assert (
        0.77 < counts["train"] / 5000 < 0.83
        and 0.08 < counts["val"] / 5000 < 0.12
        and 0.08 < counts["test"] / 5000 < 0.12
    )


def test_prepare_miniature(mini: SimpleNamespace, mini_tarball: Path, tmp_path: Path) -> None:
    out = tmp_path / "prepared"
    manifest = emoji.prepare_from_tarball(mini_tarball, out)
    assert manifest.skipped == {"corrupt PNG": 1, "no caption": 1, "no image": 1}
    assert sum(manifest.samples(s) for s in ("train", "val", "test")) == len(mini.GOOD)
    assert manifest.stats["images"] == len(mini.GOOD)
    n_pairs = sum(
        len(emoji.captions(emoji.EmojiRecord("", e["name"], tuple(e["short_names"]), "", "", b""))) for e in mini.GOOD
    )
    assert manifest.stats["pairs"] == n_pairs == sum(manifest.splits[s]["pairs"] for s in manifest.splits)
    assert manifest.stats["label_names"] == ["Animals & Nature", "Smileys & Emotion"]
    assert (out / "emoji" / "tokenizer.json").is_file()
    by_id = {e["unified"].lower(): e for e in mini.GOOD}
    for split in ("train", "val", "test"):
        for sample in iter_split("emoji", split, out):
            meta = sample["json"]
            entry = by_id[meta["id"]]
            assert emoji.split_of(meta["id"]) == split
            assert meta["captions"][0] == entry["name"].lower()
            assert manifest.stats["label_names"][meta["label"]] == entry["category"] == meta["label_name"]
            assert meta["subcategory"] == entry["subcategory"]
            im = Image.open(io.BytesIO(sample["png"]))
            assert (im.mode, im.size) == ("RGB", (64, 64))


def test_prepare_is_idempotent_and_repairs(
    mini_tarball: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "prepared"
    first = emoji.prepare_from_tarball(mini_tarball, out)
    files = sorted(p for p in (out / "emoji").rglob("*") if p.is_file())
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in files}
    capsys.readouterr()
    again = emoji.prepare_from_tarball(mini_tarball, out)
    assert "already prepared" in capsys.readouterr().out
    assert again == first
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in files} == before
    # a damaged shard is redone (to the same bytes) instead of being accepted
    shard = next(p for p in files if p.suffix == ".tar")
    shard.write_bytes(b"garbage")
    emoji.prepare_from_tarball(mini_tarball, out)
    assert shard.read_bytes() == before[shard][1]
    assert read_manifest("emoji", out) == first


@pytest.mark.network
@pytest.mark.slow
def test_real_package_prepares(tmp_path: Path) -> None:
    """Fetch emoji-datasource-twitter@16.0.0 with npm and prepare it (the pinned sha1 makes the counts fixed)."""
    if os.environ.get("MMTHESIS_OFFLINE") == "1":
        pytest.skip("MMTHESIS_OFFLINE=1")
    if shutil.which("npm") is None:
        pytest.skip("npm is not installed")
    tarball = emoji.ensure_tarball(None)  # npm pack into the isolated raw_root(), sha1-verified
    assert tarball == raw_root() / "emoji" / emoji.TARBALL
    manifest = emoji.prepare(emoji.PrepareRequest(out_root=tmp_path / "prepared", raw=None, workers=1))
    assert manifest.skipped == {}
    counts = {s: manifest.samples(s) for s in ("train", "val", "test")}
    assert counts == {"train": 1543, "val": 193, "test": 175}
    assert manifest.stats["images"] == 1911 and manifest.stats["pairs"] == 2890
    assert len(manifest.stats["label_names"]) == 10
    grinning = next(
        s for s in iter_split("emoji", emoji.split_of("1f600"), tmp_path / "prepared") if s["__key__"] == "1f600"
    )
    assert grinning["json"]["captions"] == ["grinning face", "grinning"]
    assert grinning["json"]["label_name"] == "Smileys & Emotion"
