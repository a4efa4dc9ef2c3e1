"""`mmthesis data ...`: list, prepare, inspect and verify datasets.

User errors are raised as ``MMThesisError`` subclasses; the main app prints
them as one line and exits 2. ``verify`` exits 1 when it finds problems.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from mmthesis.cli.errors import CommandGroup
from mmthesis.core.console import console, err_console
from mmthesis.core.errors import ConfigError, DataMissingError, MMThesisError
from mmthesis.core.paths import data_root
from mmthesis.core.registry import unknown_name
from mmthesis.core.scales import check_scale
from mmthesis.data.manifest import Manifest, dataset_dir, read_manifest, verify
from mmthesis.data.raw_files import DEFAULT_MAX_PIXELS
from mmthesis.data.registry import (
    DatasetSpec,
    PrepareRequest,
    dataset_names,
    get_dataset,
    prepare_command,
    prepared_name,
)
from mmthesis.data.sharding import discard_prepared

app = typer.Typer(
    cls=CommandGroup,
    help="Prepare, list, inspect and verify datasets (raw -> checksummed tar shards).", no_args_is_help=True
)


ScaleOpt = Annotated[
    str | None, typer.Option("--scale", help="smoke | small | full (default: full, or the only scale the dataset has)")
]
RootOpt = Annotated[
    Path | None,
    typer.Option("--root", help="prepared datasets root (default: $MMTHESIS_DATA_ROOT or $MMTHESIS_HOME/data)"),
]


def resolve_scale(spec: DatasetSpec, scale: str | None) -> str:
    """The scale to use: as given (must be supported), else ``full`` if supported, else the first supported."""
    if scale is None:
        return "full" if "full" in spec.scales else spec.scales[0]
    check_scale(scale)
    if scale not in spec.scales:
        raise MMThesisError(
            f"dataset {spec.name!r} has no {scale!r} scale", f"use --scale {' or --scale '.join(spec.scales)}"
        )
    return scale


def _manifest_or_none(name: str, root: Path) -> Manifest | None:
    try:
        return read_manifest(name, root)
    except DataMissingError:
        return None


_SPLIT_ORDER = ("train", "val", "validation", "dev", "test")


def _ordered_splits(manifest: Manifest) -> list[str]:
    """train, val, test first (the manifest stores splits sorted by name)."""
    return sorted(manifest.splits, key=lambda s: (_SPLIT_ORDER.index(s) if s in _SPLIT_ORDER else len(_SPLIT_ORDER), s))


def _counts(manifest: Manifest) -> str:
    return ", ".join(f"{split} {manifest.splits[split]['samples']}" for split in _ordered_splits(manifest))


@app.command("list")
def list_datasets(root: RootOpt = None) -> None:
    """List every registered dataset, its scales, the raw layout it expects and whether it is prepared.

    Example: mmthesis data list
    """
    root = root or data_root()
    table = Table(title=f"datasets (prepared root: {root})", caption="* stand-in: built without the user's data")
    for col in ("name", "kind", "scales", "raw (--raw)", "prepared"):
        table.add_column(col, no_wrap=col in ("name", "kind", "scales"), overflow="fold")
    for name in dataset_names():
        spec = get_dataset(name)
        prepared = []
        for scale in spec.scales:
            manifest = _manifest_or_none(prepared_name(name, scale), root)
            if manifest is not None:
                prepared.append(f"{scale}: {_counts(manifest)}")
        raw = spec.raw_hint or "(generated)"
        if spec.fetches_raw:
            raw += " (optional: fetched if absent)"
        scales = ", ".join(f"{s}*" if s in spec.stand_in else s for s in spec.scales)
        table.add_row(name, spec.kind, scales, raw, "; ".join(prepared) or "no")
    console.print(table)


@app.command("prepare")
def prepare(
    name: Annotated[str, typer.Argument(help="dataset name (see `mmthesis data list`)")],
    raw: Annotated[Path | None, typer.Option("--raw", help="the raw download, in the publisher's layout")] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="prepared datasets root (default: $MMTHESIS_HOME/data)")
    ] = None,
    workers: Annotated[int, typer.Option("--workers", min=1, help="parallel worker processes")] = 1,
    scale: ScaleOpt = None,
    force: Annotated[
        bool, typer.Option("--force", help="discard the prepared dataset (shards, manifest) and prepare it again")
    ] = False,
    max_pixels: Annotated[
        int,
        typer.Option(
            "--max-pixels", min=1, help="skip (and count) images with more pixels than this: decompression bombs"
        ),
    ] = DEFAULT_MAX_PIXELS,
) -> None:
    """Prepare a dataset: raw files -> checksummed tar shards + manifest (resumable, idempotent).

    A prepared dataset is reused while its config and raw inputs are unchanged; when the raw files
    changed (their fingerprint in the manifest differs) it says what changed and prepares again.
    Ctrl-C stops it; the same command resumes after the finished shards.

    Example: mmthesis data prepare shapes
    Example: mmthesis data prepare coco --raw /data/coco
    """
    spec = get_dataset(name)
    scale = resolve_scale(spec, scale)
    if raw is None and spec.needs_raw(scale):
        raise DataMissingError(
            f"dataset {name!r} needs its raw files ({spec.raw_hint})", f"run `{prepare_command(name, scale)}`"
        )
    if raw is not None and not spec.raw_hint and scale not in spec.stand_in:
        raise MMThesisError(f"dataset {name!r} is generated and takes no --raw", f"run `mmthesis data prepare {name}`")
    if raw is not None and not raw.exists():
        raise DataMissingError(f"--raw {raw} does not exist", f"point --raw to {spec.raw_hint or 'the raw download'}")
    out_root = out or data_root()
    if force:
        discard_prepared(dataset_dir(prepared_name(name, scale), out_root))
    request = PrepareRequest(out_root=out_root, raw=raw, workers=workers, scale=scale, max_pixels=max_pixels)  # type: ignore[arg-type]
    try:
        manifest = spec.prepare(request)
    except KeyboardInterrupt:
        err_console.print(
            f"interrupted: finished shards are kept; run `mmthesis data prepare {name}` with the same options to resume",
            soft_wrap=True,
            highlight=False,
        )
        raise typer.Exit(130) from None
    console.print(f"{manifest.name}: {_counts(manifest)} -> {dataset_dir(manifest.name, out_root)}")


def _stats_rows(value: Any) -> str:
    if isinstance(value, list):
        shown = ", ".join(str(v) for v in value[:12])
        return shown + (f", ... ({len(value)} in all)" if len(value) > 12 else "")
    if isinstance(value, dict):
        return ", ".join(f"{k} {v}" for k, v in value.items())
    return str(value)


def _table4_row(manifest: Manifest, folder: Path, caption_unit: str = "words") -> str | None:
    """The thesis's Table 4 columns for an image-text training split (None for other datasets)."""
    from mmthesis.data.counts import image_text_summary

    row = image_text_summary(manifest, caption_unit=caption_unit, folder=folder)
    if row is None:
        return None
    return (
        f"Table 4 row (train): avg caption length {row.avg_caption_length} ({row.caption_length_unit}), "
        f"captions per image {row.captions_per_image}, images {row.images}, image-text pairs {row.pairs}"
    )


@app.command("download")
def download_cmd(
    name: Annotated[str, typer.Argument(help="cc3m or cc12m")],
    raw: Annotated[Path, typer.Option("--raw", help="folder holding the dataset's TSV; images go to RAW/images/")],
    workers: Annotated[int, typer.Option("--workers", min=1, help="concurrent requests")] = 32,
    limit: Annotated[
        int | None,
        typer.Option("--limit", min=1, help="only the first N rows (the thesis tried the first 3M of CC12M)"),
    ] = None,
    timeout: Annotated[float, typer.Option("--timeout", help="seconds per request")] = 5.0,
    retries: Annotated[int, typer.Option("--retries", min=1, help="attempts per URL")] = 3,
) -> None:
    """Download the images of a URL-list dataset (resumable; failures logged in RAW/download-*/failures.jsonl).

    Example: mmthesis data download cc3m --raw /data/cc3m --workers 64
    """
    from mmthesis.data.datasets import cc

    layouts = {"cc3m": cc.CC3M, "cc12m": cc.CC12M}
    if name not in layouts:
        raise unknown_name("dataset to download", name, layouts, also="(the others are downloaded by hand)")
    report = cc.download_cc(raw, layouts[name], workers=workers, limit=limit, timeout=timeout, retries=retries)
    console.print(
        f"{name}: {report.downloaded} downloaded, {report.already_present} already present, failed: {dict(report.failed) or 'none'}"
    )
    console.print(f"next: `mmthesis data prepare {name} --raw {raw}`")


@app.command("stats")
def stats(
    name: Annotated[str, typer.Argument(help="dataset name")],
    scale: ScaleOpt = None,
    root: RootOpt = None,
    caption_unit: Annotated[
        str,
        typer.Option(
            "--caption-unit",
            help="Table 4 caption length of image-text sets: `words` (whitespace) or `bert-tokens` "
            "(BERT-uncased WordPiece, no [CLS]/[SEP]; reads every train caption)",
        ),
    ] = "words",
) -> None:
    """Show a prepared dataset's counts per split, its statistics and why items were skipped.

    Example: mmthesis data stats emoji
    Example: mmthesis data stats coco --caption-unit bert-tokens
    """
    from mmthesis.data.counts import check_caption_unit

    check_caption_unit(caption_unit)
    spec = get_dataset(name)
    folder_name = prepared_name(name, resolve_scale(spec, scale))
    manifest = read_manifest(folder_name, root)
    splits = Table(title=f"{folder_name}: splits")
    extra = sorted({k for info in manifest.splits.values() for k in info if k not in ("samples", "shards", "skipped")})
    for col in ("split", "samples", *extra, "skipped", "shards", "MB"):
        splits.add_column(col, justify="left" if col == "split" else "right")
    for split in _ordered_splits(manifest):
        info = manifest.splits[split]
        mb = sum(s["bytes"] for s in info["shards"]) / 1e6
        splits.add_row(
            split,
            str(info["samples"]),
            *(str(info.get(k, "")) for k in extra),
            str(info.get("skipped", 0)),
            str(len(info["shards"])),
            f"{mb:.1f}",
        )
    console.print(splits)
    if manifest.stats:
        table = Table(title=f"{folder_name}: statistics")
        table.add_column("statistic")
        table.add_column("value")
        for key, value in manifest.stats.items():
            table.add_row(key, _stats_rows(value))
        console.print(table)
    row = _table4_row(manifest, dataset_dir(folder_name, root), caption_unit)
    if row:
        console.print(row)
    elif caption_unit != "words":
        raise ConfigError(
            f"{folder_name} has no Table 4 caption statistics, so --caption-unit does not apply",
            "use it with an image-text dataset: coco, flickr30k, cc3m, cc12m",
        )
    if manifest.skipped:
        table = Table(title=f"{folder_name}: skipped items")
        table.add_column("reason")
        table.add_column("count", justify="right")
        for reason, count in manifest.skipped.items():
            table.add_row(reason, str(count))
        console.print(table)
    else:
        console.print("skipped: none")


@app.command("verify")
def verify_cmd(
    name: Annotated[str, typer.Argument(help="dataset name")],
    scale: ScaleOpt = None,
    root: RootOpt = None,
) -> None:
    """Re-check the sha256 of every shard of a prepared dataset; exit 1 and list the problems if any.

    Example: mmthesis data verify shapes
    """
    spec = get_dataset(name)
    folder_name = prepared_name(name, resolve_scale(spec, scale))
    problems = verify(folder_name, root)
    if problems:
        for problem in problems:
            console.print(f"[red]problem[/red] {problem}")
        console.print(
            f"{len(problems)} problem(s); fix: re-run `{prepare_command(name, resolve_scale(spec, scale))}` (it redoes bad shards)"
        )
        raise typer.Exit(1)
    manifest = read_manifest(folder_name, root)
    n = sum(len(info["shards"]) for info in manifest.splits.values())
    console.print(f"{folder_name}: ok ({n} shards checked)")
