"""Raw folders prepared as a careless or hostile user would leave them (issue 15): every case is a counted
skip or one clear line, never a traceback, a file read from outside the raw folder, or stale data."""

from __future__ import annotations

import builtins
import errno
import io
import json
import os
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile, ImageOps

from mmthesis.data import raw_files
from mmthesis.data.datasets import glue, imagenet, karpathy
from mmthesis.data.image_text import open_sample_image
from mmthesis.data.manifest import MANIFEST, iter_split, read_manifest
from mmthesis.data.registry import PrepareRequest, get_dataset
from mmthesis.data.sharding import CONFIG_MARKER


def jpeg(seed: int, size: tuple[int, int] = (24, 20)) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def coco_entry(cid: int, split: str = "train", sentences: object = None, filename: str | None = None) -> dict:
    return {
        "filepath": "train2014",
        "filename": filename or f"COCO_train2014_{cid:012d}.jpg",
        "split": split,
        "cocoid": cid,
        "sentences": [{"raw": f"photo {cid} caption {k}"} for k in range(2)] if sentences is None else sentences,
    }


def build_coco(raw: Path, n: int = 4, extra: list[dict] | None = None) -> list[dict]:
    """A Karpathy COCO folder with ``n`` good train images (ids 1..n) + ``extra`` entries; returns the entries."""
    entries = []
    for cid in range(1, n + 1):
        write(raw / "train2014" / f"COCO_train2014_{cid:012d}.jpg", jpeg(cid))
        entries.append(coco_entry(cid))
    entries += extra or []
    write_split_file(raw, entries)
    return entries


def write_split_file(raw: Path, entries: list[dict]) -> None:
    # json.dumps escapes a lone surrogate as the 6 characters \udcff, as a hostile file would hold it
    (raw / "dataset_coco.json").write_text(json.dumps({"images": entries}), encoding="ascii")


def shard_bytes(folder: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(folder.rglob("shard-*.tar")))


# --------------------------------------------------------------------------- symlinks


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every path raw_files opens (it is the only reader of raw images)."""
    seen: list[str] = []

    def spy(path, *args, **kwargs):  # noqa: ANN001, ANN202
        seen.append(os.fspath(path))
        return builtins.open(path, *args, **kwargs)

    monkeypatch.setattr(raw_files, "open", spy, raising=False)
    return seen


def test_coco_symlinks_out_of_the_raw_folder_are_refused_before_opening(tmp_path: Path, opened: list[str]) -> None:
    raw = tmp_path / "coco"
    outside = write(tmp_path / "elsewhere" / "stolen.jpg", jpeg(99))
    system_file = Path("/etc/hostname") if Path("/etc/hostname").is_file() else Path("/etc/passwd")
    (raw / "train2014").mkdir(parents=True)
    (raw / "train2014" / "COCO_train2014_000000000008.jpg").symlink_to(system_file)
    (raw / "train2014" / "COCO_train2014_000000000009.jpg").symlink_to(outside)
    inner = write(raw / "train2014" / "COCO_train2014_000000000001.jpg", jpeg(1))
    (raw / "train2014" / "COCO_train2014_000000000010.jpg").symlink_to(inner)  # a link inside the raw folder is fine
    build_coco(raw, n=1, extra=[coco_entry(8), coco_entry(9), coco_entry(10)])

    m = karpathy.prepare_karpathy(raw, tmp_path / "out" / "coco", karpathy.COCO)
    assert m.samples("train") == 2 and m.skipped == {"outside the raw folder": 2}
    real_raw = str(raw.resolve())
    assert opened and all(p.startswith(real_raw + os.sep) for p in opened)  # neither target was opened
    assert outside.read_bytes() not in shard_bytes(tmp_path / "out" / "coco")
    assert [s["json"]["id"] for s in iter_split("coco", "train", tmp_path / "out")] == ["1", "10"]


def test_imagenet_symlinks_out_of_the_raw_folder_are_refused(tmp_path: Path, opened: list[str]) -> None:
    raw = tmp_path / "ILSVRC2012"
    write(raw / "train/n01440764/n01440764_1.JPEG", jpeg(1))
    outside = write(tmp_path / "other" / "n01440764_9.JPEG", jpeg(9))
    (raw / "train/n01440764/n01440764_2.JPEG").symlink_to(Path("/etc/passwd"))
    (raw / "train/n01440764/n01440764_3.JPEG").symlink_to(outside)
    (tmp_path / "other-class").mkdir()
    write(tmp_path / "other-class" / "n02102040_1.JPEG", jpeg(3))
    (raw / "train/n02102040").symlink_to(tmp_path / "other-class", target_is_directory=True)  # a whole folder

    m = imagenet.prepare_from_raw(raw, tmp_path / "out" / "imagenet")
    assert m.samples("train") == 1 and m.skipped == {"outside the raw folder": 3}
    assert all(p.startswith(str(raw.resolve()) + os.sep) for p in opened)


def test_read_inside_refuses_dotdot_and_nul(tmp_path: Path) -> None:
    write(tmp_path / "secret.txt", b"secret")
    (tmp_path / "raw").mkdir()
    assert (
        raw_files.read_inside(tmp_path / "raw" / ".." / "secret.txt", tmp_path / "raw").reason
        == "outside the raw folder"
    )
    assert raw_files.read_inside(str(tmp_path / "raw" / "a\x00b"), tmp_path / "raw").reason == "unusable file name"
    assert raw_files.read_inside(tmp_path / "raw" / "nope.jpg", tmp_path / "raw").reason == "missing file"


# --------------------------------------------------------------------------- images that pass but should not


def png_bytes(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def test_decompression_bomb_is_refused_from_its_header(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    bomb = png_bytes(Image.new("L", (12000, 12000)))  # 144 MP, a few hundred KB: below PIL's hard limit
    assert len(bomb) < 1_000_000 and 12000 * 12000 > raw_files.DEFAULT_MAX_PIXELS
    loads: list[int] = []
    real_load = ImageFile.ImageFile.load
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda im: (loads.append(1), real_load(im))[1])
    assert raw_files.check_image(bomb).reason == "too many pixels"
    assert loads == []  # refused from the header: no pixel decoded
    assert raw_files.check_image(jpeg(1, (40, 30)), max_pixels=40 * 30) == ("jpg", jpeg(1, (40, 30)))
    assert raw_files.check_image(jpeg(1, (40, 30)), max_pixels=40 * 30 - 1).reason == "too many pixels"
    monkeypatch.undo()

    # configurable through `data prepare --max-pixels` (PrepareRequest), counted in the manifest
    raw = tmp_path / "ILSVRC2012"
    write(raw / "train/n01440764/small.JPEG", jpeg(1, (10, 10)))
    write(raw / "train/n01440764/large.JPEG", jpeg(2, (30, 30)))
    m = get_dataset("imagenet").prepare(PrepareRequest(out_root=tmp_path / "out", raw=raw, max_pixels=500))
    assert m.samples("train") == 1 and m.skipped == {"too many pixels": 1}
    assert m.config["max_image_pixels"] == 500


def test_16_bit_png_is_scaled_not_clipped_to_white(tmp_path: Path) -> None:
    values = np.linspace(0, 65535, 64 * 32).reshape(32, 64).astype(np.uint16)
    data = png_bytes(Image.fromarray(values))
    assert np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).mean() > 250  # the bug: PIL clips to white
    raw = tmp_path / "ILSVRC2012"
    write(raw / "train/n01440764/deep.png", data)
    imagenet.prepare_from_raw(raw, tmp_path / "out" / "imagenet")
    sample = next(iter_split("imagenet", "train", tmp_path / "out"))
    got = np.asarray(open_sample_image(sample, "imagenet"))
    expected = np.rint(values / 257.0).astype(np.uint8)  # 65535 -> 255, 257 -> 1: v * 255 / 65535
    assert got.shape == (32, 64, 3) and np.array_equal(got[..., 0], expected) and np.array_equal(got[..., 2], expected)


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    im = Image.fromarray(rng.integers(0, 255, (20, 40, 3), dtype=np.uint8))  # 40 wide, 20 high
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    buf = io.BytesIO()
    im.save(buf, format="JPEG", exif=exif.tobytes(), quality=95)
    data = buf.getvalue()
    upright = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB"))
    assert upright.shape == (40, 20, 3)

    raw = tmp_path / "coco"
    build_coco(raw, n=1, extra=[coco_entry(2)])
    write(raw / "train2014" / "COCO_train2014_000000000002.jpg", data)
    karpathy.prepare_karpathy(raw, tmp_path / "out" / "coco", karpathy.COCO)
    samples = {s["json"]["id"]: s for s in iter_split("coco", "train", tmp_path / "out")}
    got = np.asarray(open_sample_image(samples["2"], "coco"))
    assert np.array_equal(got, upright)  # as exif_transpose shows it, stored losslessly
    assert Image.open(io.BytesIO(samples["2"]["png"])).getexif().get(0x0112) is None  # nothing rotates it twice
    assert samples["1"]["jpg"] == (raw / "train2014" / "COCO_train2014_000000000001.jpg").read_bytes()  # untouched


# --------------------------------------------------------------------------- counted skips, not tracebacks


def test_bad_karpathy_entries_are_counted_skips(tmp_path: Path) -> None:
    raw = tmp_path / "coco"
    for cid in (5, 6):
        write(raw / "train2014" / f"COCO_train2014_{cid:012d}.jpg", jpeg(cid))
    extra = [
        coco_entry(
            5, sentences=[{"raw": "a fine caption"}, {"raw": "bad \udcff surrogate"}, {"raw": None}, {"raw": 5}]
        ),
        coco_entry(6, sentences=None),
        coco_entry(7, sentences=None),  # "sentences": null below
        coco_entry(8, filename="COCO_\x00nul.jpg"),
        coco_entry(9, filename="COCO_\udcff.jpg"),
    ]
    extra[2]["sentences"] = None
    build_coco(raw, n=1, extra=extra)
    assert "\\udcff" in (raw / "dataset_coco.json").read_text()

    m = karpathy.prepare_karpathy(raw, tmp_path / "out" / "coco", karpathy.COCO)
    assert m.samples("train") == 3
    assert m.skipped == {
        "caption not UTF-8": 1,
        "caption not a string": 2,  # raw null and raw 5: not stored as "None" / "5"
        "no valid caption": 1,  # sentences null
        "unusable file name": 2,  # NUL, lone surrogate
    }
    captions = {s["json"]["id"]: s["json"]["captions"] for s in iter_split("coco", "train", tmp_path / "out")}
    assert captions["5"] == ["a fine caption"]


def test_imagenet_bad_file_names_and_label_files(tmp_path: Path) -> None:
    raw = tmp_path / "ILSVRC2012"
    write(raw / "train/n01440764/n01440764_1.JPEG", jpeg(1))
    write(raw / "train/n02102040/n02102040_1.JPEG", jpeg(2))
    bad = os.fsencode(raw / "train/n01440764") + b"/n01440764_\xff.JPEG"  # not UTF-8
    with open(bad, "wb") as f:
        f.write(jpeg(3))
    write(raw / "val/ILSVRC2012_val_00000001.JPEG", jpeg(4))
    write(raw / "val/ILSVRC2012_val_00000002.JPEG", jpeg(5))
    (raw / "LOC_val_solution.csv").write_bytes(
        b"\xef\xbb\xbfImageId,PredictionString\n"  # a BOM, as Excel writes it
        b"ILSVRC2012_val_00000001,n02102040 1 2 3 4\n"
        b"ILSVRC2012_val_000\x00002,n01440764 1 2 3 4\n"  # a NUL in an id: matches no file
    )
    m = imagenet.prepare_from_raw(raw, tmp_path / "out" / "imagenet")
    assert m.samples("train") == 2 and m.samples("val") == 1
    assert m.skipped == {"unusable file name": 1, "no label": 1}
    assert m.stats["val_layout"] == "flat + LOC_val_solution.csv"


def test_empty_glue_sentence_is_a_bad_row(tmp_path: Path) -> None:
    raw = tmp_path / "glue_data"
    glue.write_standin_tsvs(raw)
    before = (raw / "CoLA" / "train.tsv").read_bytes()
    (raw / "CoLA" / "train.tsv").write_bytes(before + b"gj04\t1\t\t\ngj04\t0\t*\t   \n")
    m = glue.prepare_from_raw(raw, tmp_path / "out" / "glue")
    assert m.skipped == {"empty text": 2}
    assert all(r["sentence1"].strip() for r in glue.read_rows(tmp_path / "out" / "glue", "CoLA", "train"))
    assert m.samples("CoLA/train") == len(before.splitlines())

    datasets = pytest.importorskip("datasets")
    hf_rows = datasets.Dataset.from_dict({"sentence": ["fine", "", " "], "label": [1, 0, 1], "idx": [0, 1, 2]})
    rows = list(glue.parse_hf([("cola/train", hf_rows)], glue.TASKS["CoLA"]))
    assert [getattr(r, "reason", None) for r in rows] == [None, "empty text", "empty text"]


# --------------------------------------------------------------------------- full disk, read-only home


def cli(args: list[str]):  # noqa: ANN201 - a click Result
    from typer.testing import CliRunner

    from mmthesis.cli.app import app

    return CliRunner().invoke(app, args)


def leftovers(folder: Path) -> list[str]:
    return sorted(
        str(p.relative_to(folder)) for p in folder.rglob("*") if p.name.endswith(".tmp") or p.name == MANIFEST
    )


@pytest.mark.parametrize("code", [errno.EROFS, errno.ENOSPC])
def test_full_or_read_only_home_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int) -> None:
    raw = tmp_path / "coco"
    build_coco(raw)
    out = tmp_path / "home" / "data"
    real = tarfile.TarFile.addfile

    def failing(self, *args, **kwargs):  # noqa: ANN001, ANN202 - the disk fills (or is read-only) mid-shard
        real(self, *args, **kwargs)
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(tarfile.TarFile, "addfile", failing)
    result = cli(["data", "prepare", "coco", "--raw", str(raw), "--out", str(out)])
    assert result.exit_code == 2, result.output
    # one line besides the progress bar where it stopped ("coco/train 0/1")
    lines = [line for line in result.stderr.splitlines() if line.strip() and "coco/train" not in line[:14]]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert f"cannot write {out / 'coco' / 'train'}" in lines[0]
    if code == errno.ENOSPC:
        assert "no space left on the disk" in lines[0] and " free there, about " in lines[0]
        assert " kB more needed)" in lines[0]  # the 4 raw images (~1.4 kB) still to write
    else:
        assert "read-only file system" in lines[0]
    assert leftovers(out) == []  # no temp file, no manifest: nothing half-written

    monkeypatch.undo()
    result = cli(["data", "prepare", "coco", "--raw", str(raw), "--out", str(out)])
    assert result.exit_code == 0 and read_manifest("coco", out).samples("train") == 4


def test_full_disk_names_the_space_still_needed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mmthesis.core.errors import StorageError
    from mmthesis.core.io import format_bytes
    from mmthesis.data import manifest as manifest_mod

    raw = tmp_path / "coco"
    build_coco(raw, n=8)
    real, calls = manifest_mod.write_shard, []

    def third_fails(path, samples):  # noqa: ANN001, ANN202
        calls.append(path)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, samples)

    monkeypatch.setattr(manifest_mod, "write_shard", third_fails)
    with pytest.raises(StorageError) as info:
        karpathy.prepare_karpathy(raw, tmp_path / "out" / "coco", karpathy.COCO, samples_per_shard=2)
    shards = sorted((tmp_path / "out" / "coco" / "train").glob("shard-*.tar"))
    written = sum(p.stat().st_size for p in shards)
    raw_total = sum(p.stat().st_size for p in (raw / "train2014").iterdir())
    needed = max(raw_total - written, written // 2 * 2)  # the raw images left, or 2 more shards of the average size
    assert len(shards) == 2 and f"about {format_bytes(needed)} more needed" in str(info.value)


def test_storage_error_is_only_for_disk_problems() -> None:
    from mmthesis.core.io import format_bytes, storage_error

    assert storage_error(OSError(errno.ENOENT, "No such file")) is None  # a bug or a missing input, not the disk
    assert [format_bytes(n) for n in (999, 1500, 23_400_000, 1.2e12)] == ["999 B", "1.5 kB", "23.4 MB", "1.2 TB"]
    e = storage_error(OSError(errno.EACCES, "Permission denied", "/x/y"))
    assert e is not None and e.one_line().startswith("cannot write /x/y: permission denied (fix: ")


# --------------------------------------------------------------------------- stale prepared data


def test_changed_raw_inputs_are_prepared_again_and_said(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    raw = tmp_path / "coco"
    entries = build_coco(raw)
    folder = tmp_path / "out" / "coco"
    karpathy.prepare_karpathy(raw, folder, karpathy.COCO)
    karpathy.prepare_karpathy(raw, folder, karpathy.COCO)
    assert "coco: already prepared at" in capsys.readouterr().out

    entries[0]["sentences"] = [{"raw": "a corrected caption"}]
    write_split_file(raw, entries)
    karpathy.prepare_karpathy(raw, folder, karpathy.COCO)
    said = " ".join(capsys.readouterr().out.split())
    assert "the raw inputs changed" in said and "(dataset_coco.json changed): preparing again" in said
    assert next(iter_split("coco", "train", folder.parent))["json"]["captions"] == ["a corrected caption"]

    image = raw / "train2014" / "COCO_train2014_000000000002.jpg"
    image.write_bytes(jpeg(77))
    karpathy.prepare_karpathy(raw, folder, karpathy.COCO)
    assert "(train2014/: 4 files, sizes or dates changed)" in " ".join(capsys.readouterr().out.split())
    stored = {s["json"]["id"]: s["jpg"] for s in iter_split("coco", "train", folder.parent)}
    assert stored["2"] == jpeg(77)


def test_imagenet_added_image_is_prepared_again(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    raw = tmp_path / "ILSVRC2012"
    write(raw / "train/n01440764/a.JPEG", jpeg(1))
    folder = tmp_path / "out" / "imagenet"
    assert imagenet.prepare_from_raw(raw, folder).samples("train") == 1
    write(raw / "train/n01440764/b.JPEG", jpeg(2))
    assert imagenet.prepare_from_raw(raw, folder).samples("train") == 2
    assert "(train/: 1 -> 2 files): preparing again" in " ".join(capsys.readouterr().out.split())


def test_old_manifest_still_loads_and_force_prepares_again(tmp_path: Path) -> None:
    raw = tmp_path / "coco"
    build_coco(raw)
    out = tmp_path / "out"
    karpathy.prepare_karpathy(raw, out / "coco", karpathy.COCO)
    # what an earlier version wrote: no fingerprint, no pixel cap in the config
    for path in (out / "coco" / MANIFEST, out / "coco" / CONFIG_MARKER):
        data = json.loads(path.read_text())
        config = data.get("config", data)
        del config["raw_fingerprint"], config["max_image_pixels"]
        path.write_text(json.dumps(data))
    legacy = (out / "coco" / MANIFEST).read_bytes()
    assert len(list(iter_split("coco", "train", out))) == 4  # loads

    result = cli(["data", "prepare", "coco", "--raw", str(raw), "--out", str(out)])
    assert result.exit_code == 0 and (out / "coco" / MANIFEST).read_bytes() == legacy  # reused, not redone
    said = " ".join(result.stdout.split())
    assert "by an older version that did not record its raw inputs" in said and "--force" in said

    result = cli(["data", "prepare", "coco", "--raw", str(raw), "--out", str(out), "--force"])
    assert result.exit_code == 0, result.stderr
    assert "raw_fingerprint" in read_manifest("coco", out).config


# --------------------------------------------------------------------------- Ctrl-C


SLOW_DATASET = '''
"""A registered dataset whose items take a while (importable by spawned workers through PYTHONPATH)."""
import os
import time

from mmthesis.data.registry import DatasetSpec, register
from mmthesis.data.sharding import begin_preparation, finish_manifest, prepare_split

N = 120


def make_sample(i):
    time.sleep(float(os.environ.get("SLOW_SECONDS", "0")))
    return {"__key__": f"k{i:04d}", "txt": str(i)}


def prepare(req):
    folder = req.out_root / "slow"
    begin_preparation(folder, {"n": N})
    info = prepare_split(folder, "train", range(N), make_sample, samples_per_shard=2, workers=req.workers, total=N)
    return finish_manifest(folder, "slow", {"train": info}, {"n": N})


register(DatasetSpec("slow", "text", "slow items for the Ctrl-C test", prepare, raw_hint=""))
'''
CHILD = """
import sys
import slow_dataset  # noqa: F401 - registers "slow"
from mmthesis.cli.app import main
sys.argv = ["mmthesis", "data", "prepare", "slow", "--out", sys.argv[1], "--workers", "2"]
main()
"""


def test_ctrl_c_with_workers_stops_with_one_line_and_resumes(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys
    import time

    (tmp_path / "mod").mkdir()
    (tmp_path / "mod" / "slow_dataset.py").write_text(SLOW_DATASET)
    out = tmp_path / "out"
    env = {
        **os.environ,
        "SLOW_SECONDS": "0.25",
        "PYTHONPATH": f"{tmp_path / 'mod'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
    }
    # a new session, so the SIGINT goes to the parent and both workers, as a terminal's Ctrl-C does
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(out)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    try:
        while len(list((out / "slow" / "train").glob("shard-*.tar"))) < 2:
            assert child.poll() is None, child.communicate()
            assert time.monotonic() < deadline, "no shard within 120 s"
            time.sleep(0.05)
        os.killpg(child.pid, signal.SIGINT)
        stdout, stderr = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
    text = stderr.decode()
    assert child.returncode == 130, text
    assert "Traceback" not in text and "KeyboardInterrupt" not in text, text
    lines = [line for line in text.splitlines() if line.strip() and "slow/train" not in line[:14]]
    assert len(lines) == 1 and lines[0].startswith("interrupted: finished shards are kept"), text
    assert not (out / "slow" / MANIFEST).exists()

    kept = {
        p: p.stat().st_mtime_ns for p in (out / "slow" / "train").glob("shard-*.tar") if Path(f"{p}.json").is_file()
    }
    resumed = subprocess.run(
        [sys.executable, "-c", CHILD, str(out)], env={**env, "SLOW_SECONDS": "0"}, capture_output=True, timeout=120
    )
    assert resumed.returncode == 0, resumed.stderr.decode()
    assert read_manifest("slow", out).samples("train") == 120
    assert {p: p.stat().st_mtime_ns for p in kept} == kept  # the finished shards were kept
