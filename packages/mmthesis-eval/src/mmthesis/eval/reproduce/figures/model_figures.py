"""Builders of the figures that run a model or read its evaluation (Figures 12, 20, 29, 35-37, 39, 40, 42, 43).

Each builder reads its spec's parameters, loads what the thesis's figure used
(a recipe's teacher as training loads it, a trained run through the run cache,
an evaluation's per-sample rows through the eval harness), calls the tested
computation and drawing functions of ``views``, ``attention``, ``tcmli``,
``class_probs`` and ``retrieval_examples``, and says in its caption the scale,
the runs and what stood in for what. Those modules (torch, torchvision) are
imported inside the builders, so listing the specs stays light.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from mmthesis.eval.reproduce.engine import Context, PlannedStep
from mmthesis.eval.reproduce.figures import FigureOutput, FigureSpec, register_figure


# ------------------------------------------------------------------------------ builder (Figures 12, 35, 36)
@dataclass
class CropViewsParams:
    caption: str
    scale_bounds: list[float]  # RandomResizedCrop's scale (lower, upper): 0.08-1 (Figs. 12, 35) or 0.9-1 (Fig. 36)
    dataset: str = "coco"
    split: str = "train"
    views: int = 6
    seed: int = 0
    size: int = 224  # the views' side in pixels (the students' input size at full scale)

    def __post_init__(self) -> None:
        if len(self.scale_bounds) != 2 or not 0 < self.scale_bounds[0] <= self.scale_bounds[1] <= 1:
            raise ValueError(f"scale_bounds must be [lower, upper] with 0 < lower <= upper <= 1, got {self.scale_bounds}")


@register_figure("crop-views", params=CropViewsParams)
def crop_views_figure(spec: FigureSpec, ctx: Context) -> FigureOutput:
    from mmthesis.eval.reproduce.figures.run_parts import chosen_pairs, data_standin, with_standins
    from mmthesis.eval.reproduce.figures.views import crop_views, draw_crop_views

    p: CropViewsParams = spec.params
    pairs, folder = chosen_pairs(p.dataset, p.split, ctx.scale, 1, p.seed)
    image_id, image, text = pairs[0]
    lo, hi = p.scale_bounds
    got = crop_views(image, p.size, (lo, hi), p.views, p.seed)
    fig = draw_crop_views(image, got, f"RandomResizedCrop scale ({lo:g}, {hi:g}), {p.size} px")
    standins = data_standin(p.dataset, folder, ctx.scale)
    caption = (f"{p.caption} {p.views} draws (seed {p.seed}) of the students' training transform "
               f"(mmthesis.data.transforms.train_transform, scale ({lo:g}, {hi:g})) on image {image_id} of "
               f"{folder} {p.split} (caption: \"{text}\"); scale {ctx.scale}.")
    caption = with_standins(caption, standins)
    values = {"image_id": image_id, "caption": text, "image_size": list(got.image_size), "scale_bounds": [lo, hi],
              "boxes_top_left_height_width": [list(b) for b in got.boxes], "area_fractions": got.area_fractions}
    return FigureOutput(fig, caption, standins=standins, values=values)


# ------------------------------------------------------------------------------ builders
def _steps(run) -> str:
    steps = run.result.metrics.get("steps")
    return "?" if steps is None else f"{int(steps)}"


def _recipe(recipe: str, scale: str, overrides: list[str] | None = None):
    from mmthesis.students.recipes import load_recipe

    return load_recipe(recipe, scale, list(overrides or []))


@dataclass
class BertAttentionParams:
    caption: str
    sentences: list[str]
    recipe: str = "f-distilbert"  # whose teacher (and vocabulary) at the scale: bert-base-uncased at full
    layer: int = 0
    head: int = 0


@register_figure("bert-attention", params=BertAttentionParams)
def bert_attention_figure(spec: FigureSpec, ctx: Context) -> FigureOutput:
    """Figure 20: the recipe's text teacher, loaded as training loads it, run on each sentence."""
    from mmthesis.data.tokenizers import bert_wordpiece
    from mmthesis.eval.reproduce.figures.attention import bert_attention, draw_token_attention
    from mmthesis.eval.reproduce.figures.run_parts import teacher_description, with_standins
    from mmthesis.students.lightning_module import build_teacher
    from mmthesis.students.paths import resolve_path

    p: BertAttentionParams = spec.params
    config = _recipe(p.recipe, ctx.scale)
    teacher = build_teacher(config)
    tokenizer = bert_wordpiece(resolve_path(config.data.tokenizer))
    maps = [bert_attention(teacher, tokenizer, s, p.layer, p.head) for s in p.sentences]
    fig = draw_token_attention(maps, [f"layer {p.layer + 1}, head {p.head + 1}" for _ in maps])
    what = teacher_description(config)
    standins = [] if config.teacher.checkpoint == "default" else [f"{what} stands in for bert-base-uncased"]
    caption = (f"{p.caption} Teacher of recipe {p.recipe} at scale {ctx.scale}: {what} "
               f"({teacher.num_blocks} layers, {teacher.config['num_heads']} heads); layer {p.layer + 1}, head {p.head + 1}.")
    caption = with_standins(caption, standins)
    values = {s: {"tokens": m.tokens, "weights": m.weights.tolist()} for s, m in zip(p.sentences, maps, strict=True)}
    return FigureOutput(fig, caption, standins=standins, values=values)


@dataclass
class ClsAttentionParams:
    caption: str
    recipe: str = "s-smke-cdl-mb-dino"  # the recipe whose DINO teacher is shown
    task: str = "retrieval-coco"  # the image-text test pairs: this task's dataset and split at the scale
    pairs: int = 4
    seed: int = 0
    overrides: list[str] = field(default_factory=list)  # key=value overrides of the recipe


def _needs_run(config) -> bool:
    """A teacher without released weights (smoke: random + pre-fitted) exists only inside its trained run."""
    return config.teacher.checkpoint is None


def plan_cls_attention(spec: FigureSpec, ctx: Context) -> list[PlannedStep]:
    from mmthesis.eval.reproduce.figures.runs import plan_runs

    p: ClsAttentionParams = spec.params
    return plan_runs([(p.recipe, p.overrides)], ctx) if _needs_run(_recipe(p.recipe, ctx.scale, p.overrides)) else []


@register_figure("cls-attention", plan=plan_cls_attention, params=ClsAttentionParams)
def cls_attention_figure(spec: FigureSpec, ctx: Context) -> FigureOutput:
    """Figure 42: the recipe's DINO teacher (from its trained run when it has no released weights)."""
    import torch
    
    from mmthesis.data.transforms import eval_transform
    from mmthesis.eval.reproduce.figures.attention import draw_cls_attention, vit_cls_attention
    from mmthesis.eval.reproduce.figures.run_parts import (
        chosen_pairs,
        data_standin,
        run_teacher,
        task_data,
        teacher_description,
        with_standins,
    )
    from mmthesis.eval.reproduce.figures.runs import trained_run
    from mmthesis.students.lightning_module import build_teacher

    p: ClsAttentionParams = spec.params
    config = _recipe(p.recipe, ctx.scale, p.overrides)
    dataset, split, thesis_dataset = task_data(p.task, ctx.scale)
    pairs, folder = chosen_pairs(dataset, split, ctx.scale, p.pairs, p.seed)
    records = []
    if _needs_run(config):
        run = trained_run(p.recipe, p.overrides, ctx)
        teacher, records = run_teacher(run.folder), [run.record]
    else:
        teacher = build_teacher(config).freeze()
    transform = eval_transform(config.model.img_size)
    images = torch.stack([transform(img) for _, img, _ in pairs])
    maps = vit_cls_attention(teacher, images).mean(dim=1)
    fig = draw_cls_attention(images, maps, [c for _, _, c in pairs])
    what = teacher_description(config)
    standins = data_standin(thesis_dataset, folder, ctx.scale)
    if config.teacher.checkpoint != "default":
        standins.append(f"{what} stands in for the released DINO ViT-B/16")
    caption = (f"{p.caption} Teacher of recipe {p.recipe} at scale {ctx.scale}: {what}; "
               f"{config.model.img_size} px images of {folder} {split} ({maps.shape[-2]}x{maps.shape[-1]} patches).")
    caption = with_standins(caption, standins)
    values = {image_id: {"caption": c, "cls_attention_mean_of_heads": m.tolist()}
              for (image_id, _, c), m in zip(pairs, maps, strict=True)}
    return FigureOutput(fig, caption, records=records, standins=standins, values=values)


# ------------------------------------------------------------------------------ builder (Figure 29)
@dataclass
class TcmliParams:
    caption: str
    recipe: str = "s-smke-t-cmli"
    task: str = "retrieval-coco"  # the test pairs: this task's dataset and split at the scale
    pairs: int = 2
    k: int = 5
    max_tokens: int = 8
    seed: int = 0
    overrides: list[str] = field(default_factory=list)  # key=value overrides of the recipe


def plan_tcmli(spec: FigureSpec, ctx: Context) -> list[PlannedStep]:
    from mmthesis.eval.reproduce.figures.runs import plan_runs

    return plan_runs([(spec.params.recipe, spec.params.overrides)], ctx)


@register_figure("tcmli-matches", plan=plan_tcmli, params=TcmliParams)
def tcmli_figure(spec: FigureSpec, ctx: Context) -> FigureOutput:
    """The trained T-CMLI run's student, its projection g and its teacher, on test pairs."""
    import torch
    from torch import nn

    from mmthesis.core.errors import ConfigError
    from mmthesis.data.transforms import eval_transform
    from mmthesis.eval.reproduce.figures.run_parts import (
        checkpoint_state,
        chosen_pairs,
        data_standin,
        run_teacher,
        sub_state,
        task_data,
        teacher_description,
        with_standins,
    )
    from mmthesis.eval.reproduce.figures.runs import trained_run
    from mmthesis.eval.reproduce.figures.tcmli import MatchPanel, draw_token_matches, token_patch_matches
    from mmthesis.students.artifact import load_trained
    from mmthesis.students.lightning_module import distillation_target

    p: TcmliParams = spec.params
    run = trained_run(p.recipe, p.overrides, ctx)
    trained = load_trained(run.folder)
    config = trained.config
    if config.loss.kd != "tcmli":
        raise ConfigError(f"recipe {p.recipe} does not train with T-CMLI (loss.kd={config.loss.kd})", "use s-smke-t-cmli")
    proj_state = sub_state(checkpoint_state(run.folder), "tcmli_proj.")
    projection = nn.Linear(proj_state["weight"].shape[1], proj_state["weight"].shape[0])
    projection.load_state_dict(proj_state)
    teacher = run_teacher(run.folder)
    dataset, split, thesis_dataset = task_data(p.task, ctx.scale)
    pairs, folder = chosen_pairs(dataset, split, ctx.scale, p.pairs, p.seed)
    images = torch.stack([eval_transform(config.model.img_size)(img) for _, img, _ in pairs])
    with torch.no_grad():
        patches = distillation_target(teacher(images), "tcmli", config.teacher.final_norm)
    tok = trained.tokenizer
    ids, mask = tok.encode_batch([c for _, _, c in pairs], config.data.max_text_length)
    matches = token_patch_matches(trained.model, projection, patches, ids, mask, p.k)
    panels = [
        MatchPanel(images[i], [tok.hf.id_to_token(int(t)) or "[UNK]" for t in ids[i]], matches[i], pairs[i][2])
        for i in range(len(pairs))
    ]
    grid = (config.model.img_size // config.model.patch_size,) * 2
    fig = draw_token_matches(panels, grid, p.max_tokens)
    what = teacher_description(config)
    standins = data_standin(thesis_dataset, folder, ctx.scale)
    if config.teacher.checkpoint != "default":
        standins.append(f"{what} stands in for the released BEiTv2")
    caption = (f"{p.caption} Run {run.label} at scale {ctx.scale} ({_steps(run)} steps); "
               f"teacher {what}; {folder} {split}, {grid[0]}x{grid[1]} patches; top-{p.k} patches per token.")
    caption = with_standins(caption, standins)
    values = {
        pair[0]: {"caption": pair[2], "tokens": [panel.tokens[z] for z in m.token_positions], "top": m.top.tolist(),
                  "similarity": m.similarity.tolist()}
        for pair, panel, m in zip(pairs, panels, matches, strict=True)
    }
    return FigureOutput(fig, caption, records=[run.record], standins=standins, values=values)


# ------------------------------------------------------------------------------ builder (Figure 37)
@dataclass
class TopClassesParams:
    caption: str
    recipe: str = "shre-t"  # whose supervised teacher, loaded as the recipe loads it at the scale
    dataset: str = "coco"
    split: str = "train"
    pairs: int = 4
    k: int = 5
    seed: int = 0


@register_figure("teacher-top-classes", params=TopClassesParams)
def top_classes_figure(spec: FigureSpec, ctx: Context) -> FigureOutput:
    import torch

    from mmthesis.core.errors import ConfigError
    from mmthesis.data.transforms import eval_transform
    from mmthesis.eval.reproduce.figures.class_probs import draw_top_classes, top_class_probabilities
    from mmthesis.eval.reproduce.figures.run_parts import (
        chosen_pairs,
        data_standin,
        teacher_description,
        with_standins,
    )
    from mmthesis.eval.zeroshot import imagenet_classnames
    from mmthesis.students.lightning_module import build_teacher
    from mmthesis.students.recipes import load_recipe

    p: TopClassesParams = spec.params
    config = load_recipe(p.recipe, ctx.scale, [])
    teacher = build_teacher(config)
    classes = int(teacher.config.get("num_classes", 0))
    if classes != 1000:
        raise ConfigError(f"the teacher of {p.recipe} at scale {ctx.scale} has {classes or 'no'} classes, not ImageNet's 1000",
                          "use a recipe whose teacher has ImageNet weights (shre-t, shre)")
    pairs, folder = chosen_pairs(p.dataset, p.split, ctx.scale, p.pairs, p.seed)
    images = torch.stack([eval_transform(config.model.img_size)(img) for _, img, _ in pairs])
    top = top_class_probabilities(teacher, images, p.k)
    names = imagenet_classnames()
    fig = draw_top_classes(images, [c for _, _, c in pairs], top, names)
    what = teacher_description(config)
    standins = data_standin(p.dataset, folder, ctx.scale)
    if config.teacher.name != "resnet50_a1":
        standins.append(f"{what} stands in for ResNet-50-A1")
    size = teacher.config.get("input_size") or config.model.img_size
    caption = (f"{p.caption} Teacher of recipe {p.recipe} at scale {ctx.scale}: {what}, on {config.model.img_size} px "
               f"images (run at {size} px) of {folder} {p.split}.")
    caption = with_standins(caption, standins)
    values = {
        image_id: {"caption": c, "classes": [names[int(i)] for i in idx], "probabilities": pr.tolist()}
        for (image_id, _, c), idx, pr in zip(pairs, top.indices, top.probabilities, strict=True)
    }
    return FigureOutput(fig, caption, standins=standins, values=values)


# ------------------------------------------------------------------------------ builder (Figures 39, 40, 43)
@dataclass
class RetrievalExamplesParams:
    caption: str
    recipe: str
    direction: str  # t2i = image retrieval (Fig. 39), i2t = caption / text retrieval (Figs. 40, 43)
    task: str = "retrieval-coco"
    queries: int = 4
    k: int = 5
    seed: int = 0
    overrides: list[str] = field(default_factory=list)  # key=value overrides of the recipe

    def __post_init__(self) -> None:
        if self.direction not in ("i2t", "t2i"):
            raise ValueError(f"direction must be i2t or t2i, got {self.direction!r}")


def plan_examples(spec: FigureSpec, ctx: Context) -> list[PlannedStep]:
    from mmthesis.eval.reproduce.figures.runs import plan_runs

    p: RetrievalExamplesParams = spec.params
    return [*plan_runs([(p.recipe, p.overrides)], ctx), PlannedStep("evaluate", f"{p.task} on {p.recipe} (per-sample rows)", False)]


@register_figure("retrieval-examples", plan=plan_examples, params=RetrievalExamplesParams)
def retrieval_examples_figure(spec: FigureSpec, ctx: Context) -> FigureOutput:
    """Train (or reuse) the run, evaluate the task with per-sample rows (kept beside the evaluation's
    result.json as per_sample.jsonl), and draw a seeded choice of queries."""
    import tempfile

    from mmthesis.core.io import atomic_write_text
    from mmthesis.core.results import run_dir
    from mmthesis.data.image_text import decode_split
    from mmthesis.eval.adapters import load_model
    from mmthesis.eval.data_access import resolve_dataset
    from mmthesis.eval.harness import evaluate
    from mmthesis.eval.reproduce.figures.retrieval_examples import (
        draw_image_retrieval,
        draw_text_retrieval,
        examples,
        read_rows,
    )
    from mmthesis.eval.reproduce.figures.run_parts import data_standin, task_data, with_standins
    from mmthesis.eval.reproduce.figures.runs import trained_run

    p: RetrievalExamplesParams = spec.params
    run = trained_run(p.recipe, p.overrides, ctx)
    if ctx.progress is not None:
        ctx.progress.step("evaluate", f"{p.task} on {run.label} (per-sample rows)")
    with tempfile.TemporaryDirectory() as tmp:
        pending = Path(tmp) / "per_sample.jsonl"
        result = evaluate([p.task], load_model(str(run.folder), ctx.scale), scale=ctx.scale, per_sample=pending,
                          root=ctx.runs_root, show_progress=False)
        text = pending.read_text()
    folder = run_dir(result.name, result.config_hash, ctx.runs_root)
    atomic_write_text(folder / "per_sample.jsonl", text)
    rows = read_rows(folder / "per_sample.jsonl", p.task)
    exs = examples(rows, p.direction, p.queries, p.k, p.seed)
    dataset, split, thesis_dataset = task_data(p.task, ctx.scale)
    prepared = resolve_dataset(dataset, ctx.scale).folder
    data = decode_split(prepared, split)
    images, captions = {}, {}
    for i, image_id in enumerate(data.image_ids):
        images.setdefault(image_id, data.images[i])
        for k, c in enumerate(data.captions[i]):
            captions.setdefault(f"{image_id}_{k}", c)
    draw = draw_image_retrieval if p.direction == "t2i" else draw_text_retrieval
    fig = draw(exs, captions, images)
    metrics = result.metrics[p.task]
    standins = data_standin(thesis_dataset, prepared, ctx.scale)
    recall = metrics.get(f"{p.direction}_r1")
    caption = (
        f"{p.caption} Run {run.label} at scale {ctx.scale}; task {p.task} on {prepared} {split} "
        f"({metrics.get('images')} images x {metrics.get('captions')} captions, {p.direction} R@1 "
        f"{recall:.1f}%); {len(exs)} queries (seed {p.seed}), top-{p.k}; green = correct, red = wrong."
    )
    caption = with_standins(caption, standins)
    values = {e.query: {"rank": e.rank, "retrieved": e.retrieved, "correct": e.correct} for e in exs}
    records = [run.record, str(folder / "result.json")]
    return FigureOutput(fig, caption, records=records, standins=standins, values=values)
