"""SplitIndex: random access to prepared samples by byte range, cached by shard checksums."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from mmthesis.core.errors import DataMissingError
from mmthesis.data.image_text import ImageTextPairs, PairImages
from mmthesis.data.manifest import iter_split, read_manifest
from mmthesis.data.shard_index import INDEX_DIR, SplitIndex
from mmthesis.data.transforms import eval_transform


def _copy(shapes_root: Path, tmp_path: Path) -> Path:
    shutil.copytree(shapes_root / "shapes", tmp_path / "shapes", ignore=shutil.ignore_patterns(INDEX_DIR))
    return tmp_path


def test_every_sample_reads_back_as_iter_split_gives_it(shapes_root: Path, tmp_path: Path) -> None:
    root = _copy(shapes_root, tmp_path)
    for split in ("train", "test"):
        index = SplitIndex("shapes", split, root)
        expected = list(iter_split("shapes", split, root))
        assert len(index) == len(expected) == read_manifest("shapes", root).samples(split)
        order = np.random.default_rng(0).permutation(len(index))  # random access, any order
        for i in order.tolist():
            assert index.sample(i) == expected[i]
        assert index.label.tolist() == [s["json"]["label"] for s in expected]
        assert index.captions.tolist() == [len(s["json"]["captions"]) for s in expected]
        assert len(set(index.shard.tolist())) == len(read_manifest("shapes", root).split(split)["shards"])


def test_cache_is_reused_and_rebuilt_when_shards_change(shapes_root: Path, tmp_path: Path) -> None:
    root = _copy(shapes_root, tmp_path)
    SplitIndex("shapes", "test", root)
    cache = root / "shapes" / INDEX_DIR / "test.npz"
    assert cache.is_file()
    before = cache.stat().st_mtime_ns
    again = SplitIndex("shapes", "test", root)
    assert cache.stat().st_mtime_ns == before and again.sample(0) == next(iter_split("shapes", "test", root))
    # a re-prepared dataset (other shard checksums) is indexed afresh, not read with stale offsets
    manifest = read_manifest("shapes", root)
    bogus = np.load(cache)
    np.savez(cache, **{k: bogus[k] for k in bogus.files if k != "fingerprint"}, fingerprint=np.asarray("stale"))
    fresh = SplitIndex("shapes", "test", root)
    assert len(fresh) == manifest.samples("test") and fresh.sample(3) == list(iter_split("shapes", "test", root))[3]
    assert str(np.load(cache)["fingerprint"]) != "stale"


def test_unwritable_cache_place_indexes_without_cache(shapes_root: Path, tmp_path: Path) -> None:
    root = _copy(shapes_root, tmp_path)
    blocker = root / "shapes" / INDEX_DIR
    blocker.write_text("not a folder")  # the cache cannot be written (as in a read-only folder, even for root)
    index = SplitIndex("shapes", "val", root)
    assert index.sample(0) == next(iter_split("shapes", "val", root))
    assert blocker.read_text() == "not a folder"


def test_truncated_shard_is_a_clear_error(shapes_root: Path, tmp_path: Path) -> None:
    root = _copy(shapes_root, tmp_path)
    index = SplitIndex("shapes", "test", root)
    last = len(index) - 1
    shard = Path(index.shards[int(index.shard[last])])
    with open(shard, "r+b") as f:
        f.truncate(int(index.start[last]) + 100)
    with pytest.raises(DataMissingError, match="truncated"):
        index.sample(last)
    shard.unlink()
    with pytest.raises(DataMissingError, match="missing"):
        SplitIndex("shapes", "test", root, cache=False)


class _Keys(Dataset):
    def __init__(self, index: SplitIndex) -> None:
        self.index = index

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> str:
        return self.index.sample(i)["__key__"]


def test_worker_processes_open_their_own_files(shapes_root: Path, tmp_path: Path) -> None:
    root = _copy(shapes_root, tmp_path)
    index = SplitIndex("shapes", "train", root)
    index.sample(0)  # the parent has an open descriptor; workers must not share its file position
    loader = DataLoader(_Keys(index), batch_size=5, num_workers=2, collate_fn=list)
    keys = [k for batch in loader for k in batch]
    assert keys == [s["__key__"] for s in iter_split("shapes", "train", root)]


def test_pairs_hold_no_decoded_images_and_pair_images_cover_each_image_once(shapes_root: Path) -> None:
    ds = ImageTextPairs("shapes", "train", None, eval_transform(16), root=shapes_root)
    assert not any(isinstance(v, list) and v and isinstance(v[0], np.ndarray) for v in vars(ds).values())
    images = PairImages(ds, eval_transform(16))
    ids = [images[i][0] for i in range(len(images))]
    assert ids == [s["json"]["id"] for s in iter_split("shapes", "train", shapes_root)]
    first_pair = ds[0]
    assert torch.equal(images[0][1], first_pair["image"]) and ids[0] == first_pair["image_id"]
    assert ds.image_labels == [s["json"]["label"] for s in iter_split("shapes", "train", shapes_root)]


def _tar_bytes(members: dict[str, bytes], fmt: int) -> bytes:
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for name, body in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    return buf.getvalue()


@pytest.mark.parametrize("fmt_name", ["USTAR_FORMAT", "GNU_FORMAT", "PAX_FORMAT"])
def test_member_parsing_fast_path_equals_tarfile(fmt_name: str) -> None:
    import tarfile

    from mmthesis.data.shard_index import _padded, _parse_members, _tarfile_members, _ustar_members

    members = {"k" * 120 + ".json": b'{"captions": ["a"]}', "k" * 120 + ".png": bytes(range(256)) * 3}
    if fmt_name == "USTAR_FORMAT":  # names over 100 bytes go to the ustar prefix field
        members = {f"{'d' * 60}/{'k' * 60}.json": b"{}", f"{'d' * 60}/{'k' * 60}.png": b"x" * 700}
    data = _tar_bytes(members, getattr(tarfile, fmt_name))
    end = sum(512 + _padded(len(b)) for b in members.values())
    # a sample's range in a shard has no end-of-archive blocks; GNU/pax headers make it longer than ``end``
    chunk = data[:end] if fmt_name == "USTAR_FORMAT" else data
    expected = _tarfile_members(chunk)
    assert [(n, b) for n, b in expected if n in members] == list(members.items())
    fast = _ustar_members(chunk)
    if fmt_name == "USTAR_FORMAT":
        assert fast == expected
    else:
        assert fast is None  # GNU long names / pax headers: parsed by tarfile instead
    assert _parse_members(chunk, "test chunk")["__key__"]
