"""`mmthesis doctor`: what this installation can do, and what is missing."""

from __future__ import annotations

import json

from rich.table import Table

from mmthesis.core.console import console
from mmthesis.core.paths import data_root, mmthesis_home, runs_root
from mmthesis.core.provenance import MMTHESIS_PACKAGES, hardware, package_versions


def doctor() -> None:
    import torch

    hw = hardware()
    env = Table("item", "value", title="Environment")
    env.add_row("torch", torch.__version__)
    env.add_row("CUDA available", str(torch.cuda.is_available()) + (f" (CUDA {hw['cuda']})" if hw["cuda"] else ""))
    env.add_row("devices", ", ".join(hw["gpus"]) or f"CPU only ({hw['cpu_count']} cores)")
    env.add_row("python", hw["python"])
    env.add_row("MMTHESIS_HOME", str(mmthesis_home()))
    env.add_row("data root", str(data_root()))
    env.add_row("runs root", str(runs_root()))
    console.print(env)

    pkgs = Table("package", "version", title="Packages")
    for name, version in package_versions().items():
        style = "" if version else "red"
        pkgs.add_row(name, version or "not installed", style=style if name in MMTHESIS_PACKAGES else "")
    console.print(pkgs)

    _datasets()
    _teachers()


def _datasets() -> None:
    from mmthesis.data.manifest import MANIFEST, dataset_dir
    from mmthesis.data.registry import dataset_names, get_dataset, prepare_command, prepared_name

    table = Table("dataset", "scale", "status", "samples", "fix", title=f"Datasets ({data_root()})")
    for name in dataset_names():
        spec = get_dataset(name)
        for scale in spec.scales:
            folder = dataset_dir(prepared_name(name, scale))
            path = folder / MANIFEST
            if path.is_file():
                manifest = json.loads(path.read_text(encoding="utf-8"))
                counts = ", ".join(f"{s}: {v.get('samples', '?')}" for s, v in manifest.get("splits", {}).items())
                table.add_row(name, scale, "[green]prepared[/]", counts, "")
            else:
                table.add_row(name, scale, "[yellow]missing[/]", "", prepare_command(name, scale))
    console.print(table)


def _teachers() -> None:
    try:
        from mmthesis.teachers import list_teachers
    except ImportError as e:  # the teachers package is installed but may predate list_teachers
        console.print(f"[yellow]teachers: cannot list ({e})[/]")
        return
    table = Table("teacher", "format", "expected file", "status", title="Checkpoints")
    for info in list_teachers():
        path = getattr(info, "expected_path", None)
        found = path is not None and path.exists()
        table.add_row(
            getattr(info, "name", str(info)),
            getattr(info, "format", ""),
            str(path) if path else "",
            "[green]found[/]" if found else "[yellow]missing[/]",
        )
    console.print(table)
