"""Ground-truth attributes of shapes samples, and the readers that recover them from generated text and images.

Every shapes image shows a *main* shape (its caption's subject) and, in 60% of the images, a second one. The
attributes scored by the coherence and latent-arithmetic tasks are those of the main shape: ``shape``,
``colour``, ``count`` (1 or 2 shapes in the image) and ``position`` (left/right/top/bottom/centre).

Why scenes and "readings": in a two-shape image nothing in the pixels says which shape is the main one ("a red
cross left of a blue circle" and "a blue circle right of a red cross" draw the same picture), and the generator's
caption "a X below a Y" is written both for main X below Y and for main Y above X. So every reader returns a
``Scene`` (the shapes with their positions where known), and a scene matches a target by its best *reading*:
each of its shapes taken in turn as the main one, the reading agreeing with the target on the most attributes
wins (ties: the first). The chance levels the tasks report are computed with the same rule, so the comparison is
fair.

- Text: ``read_caption`` parses exactly the generator's grammar. The table of every caption the generator can
  write is built from the generator's own phrasing functions (no second copy of the grammar), plus the object
  phrase ``a <colour> <shape>`` used as an arithmetic operand. Text that is not such a caption (e.g. a decoder's
  near miss) is read leniently: the ``<colour> <shape>`` pairs it names, positions unknown (``exact`` False).
- Images: ``AttributeClassifier``, a small CNN trained deterministically on the shapes train split, predicts for
  each of the five position slots its colour (or empty) and shape; cached under ``$MMTHESIS_HOME/cache/attributes``
  with its test accuracy.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mmthesis.core.errors import DataMissingError
from mmthesis.core.io import atomic_path, atomic_write_text, sha256_json
from mmthesis.core.paths import mmthesis_home
from mmthesis.data.datasets.shapes import (
    COLOURS,
    PAIR_POSITIONS,
    POSITIONS,
    RELATIONS,
    SHAPES,
    pair_captions,
    single_captions,
)

ATTRIBUTES = ("shape", "colour", "count", "position")
COLOUR_NAMES = tuple(COLOURS)
ATTRIBUTE_VALUES: dict[str, tuple[Any, ...]] = {
    "shape": SHAPES,
    "colour": COLOUR_NAMES,
    "count": (1, 2),
    "position": POSITIONS,
}
SLOTS = POSITIONS  # the classifier's position slots
RELATION_OF = {main: rel for rel, (main, _) in PAIR_POSITIONS.items()}  # main's position in a pair -> relation
OPPOSITE = {a: b for a, b in PAIR_POSITIONS.values()}


def with_article(phrase: str) -> str:
    """``"a red circle"`` / ``"an orange cross"``, as the generator writes it."""
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


@dataclass(frozen=True)
class ShapeObject:
    colour: str | None
    shape: str | None
    position: str | None = None

    @property
    def name(self) -> str:
        return f"{self.colour} {self.shape}"


@dataclass(frozen=True)
class Target:
    """The attributes a main shape should have; None = not scored (a query or caption that does not say)."""

    shape: str | None = None
    colour: str | None = None
    count: int | None = None
    position: str | None = None

    def specified(self) -> tuple[str, ...]:
        return tuple(a for a in ATTRIBUTES if getattr(self, a) is not None)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Scene:
    """The shapes of an image or caption, the main one first where known; positions None where unknown."""

    objects: tuple[ShapeObject, ...]

    @property
    def count(self) -> int:
        return len(self.objects)

    def readings(self) -> list[Target]:
        """Each shape taken as the main one."""
        return [Target(o.shape, o.colour, self.count, o.position) for o in self.objects]

    def main(self) -> Target:
        if not self.objects:
            return Target()
        return self.readings()[0]

    def captions(self) -> list[str]:
        """The generator's captions of this scene (positions must be known)."""
        if self.count == 1 and self.objects[0].position is not None:
            return single_captions(self.objects[0].name, self.objects[0].position)
        if self.count == 2 and self.objects[0].position in RELATION_OF:
            a, b = self.objects
            if OPPOSITE[a.position] != b.position:
                raise ValueError(f"shapes of a pair sit in opposite slots, got {a.position} and {b.position}")
            return pair_captions(a.name, b.name, RELATION_OF[a.position])
        raise ValueError(f"scene {self} has no caption in the generator's grammar")


def scene_of_meta(meta: dict[str, Any]) -> Scene:
    """The exact scene of a prepared shapes sample, from its stored metadata (``objects``, ``position``/``relation``)."""
    try:
        objects = [name.split(" ") for name in meta["objects"]]
        if len(objects) == 1:
            positions = [meta["position"]]
        else:
            positions = list(PAIR_POSITIONS[meta["relation"]])
    except (KeyError, TypeError) as e:
        raise DataMissingError(
            f"shapes sample {meta.get('id', '?')!r} has no scene metadata ({e})", "re-run `mmthesis data prepare shapes`"
        ) from e
    return Scene(tuple(ShapeObject(c, s, p) for (c, s), p in zip(objects, positions, strict=True)))


def match(scene: Scene, target: Target) -> dict[str, bool]:
    """Per specified attribute, whether the scene's best reading has it, and ``all`` (every specified one)."""
    wanted = target.specified()
    readings = scene.readings()
    if not readings:
        return {a: False for a in wanted} | {"all": False}

    def agree(r: Target) -> int:
        return sum(getattr(r, a) == getattr(target, a) for a in wanted)

    best = max(readings, key=agree)  # max keeps the first of equals
    out = {a: getattr(best, a) == getattr(target, a) for a in wanted}
    return out | {"all": all(out.values())}


# ------------------------------------------------------------------------------ text reader
def normalise_text(text: str) -> str:
    """Lower-case words joined by single spaces: decoders' spacing and punctuation ("shapes : a") do not matter."""
    return " ".join(re.findall(r"[a-z]+", text.lower()))


def _merge(a: Scene, b: Scene) -> Scene:
    """One caption written for two scenes: keep what both agree on (shapes by name; positions that differ -> None)."""
    pos_b = {o.name: o.position for o in b.objects}
    if sorted(pos_b) != sorted(o.name for o in a.objects):
        raise AssertionError(f"caption written for different shapes: {a} / {b}")  # the grammar never does this
    return Scene(tuple(ShapeObject(o.colour, o.shape, o.position if o.position == pos_b[o.name] else None)
                       for o in a.objects))


@lru_cache(maxsize=1)
def caption_table() -> dict[str, Scene]:
    """Every caption the generator can write (normalised) -> the scene it describes, plus ``a <colour> <shape>``."""
    table: dict[str, Scene] = {}

    def add(text: str, scene: Scene) -> None:
        key = normalise_text(text)
        table[key] = _merge(table[key], scene) if key in table else scene

    names = [(c, s) for c in COLOUR_NAMES for s in SHAPES]
    for c, s in names:
        add(with_article(f"{c} {s}"), Scene((ShapeObject(c, s),)))
        for pos in POSITIONS:
            for text in single_captions(f"{c} {s}", pos):
                add(text, Scene((ShapeObject(c, s, pos),)))
    for ca, sa in names:
        for cb, sb in names:
            if (ca, sa) == (cb, sb):
                continue
            for rel in RELATIONS:
                pa, pb = PAIR_POSITIONS[rel]
                scene = Scene((ShapeObject(ca, sa, pa), ShapeObject(cb, sb, pb)))
                for k, text in enumerate(pair_captions(f"{ca} {sa}", f"{cb} {sb}", rel)):
                    # phrasing 1 names the second shape first: mention order, so the main one is still known
                    add(text, Scene(scene.objects[::-1]) if k == 1 else scene)
    return table


_OBJECT = re.compile(rf"\b({'|'.join(COLOUR_NAMES)}) ({'|'.join(SHAPES)})\b")


def read_caption(text: str) -> tuple[Scene, bool]:
    """(scene, exact): the generator's grammar read exactly; other text leniently (named shapes, no positions)."""
    key = normalise_text(text)
    scene = caption_table().get(key)
    if scene is not None:
        return scene, True
    found: list[ShapeObject] = []
    for c, s in _OBJECT.findall(key):
        if all(o.name != f"{c} {s}" for o in found):
            found.append(ShapeObject(c, s))
    return Scene(tuple(found[:2])), False


def caption_target(scene: Scene, caption: str) -> Target:
    """What ``caption`` of an image with ``scene`` says about its main shape: the scene's main, position only if the
    caption gives one."""
    read, exact = read_caption(caption)
    main = scene.main()
    if not exact:
        raise ValueError(f"caption {caption!r} is not in the generator's grammar")
    has_position = all(o.position is not None for o in read.objects)
    return dataclasses.replace(main, position=main.position if has_position else None)


# ------------------------------------------------------------------------------ data
@dataclass
class ShapesSplit:
    """A prepared shapes split: ids, exact scenes, captions (per image) and uint8 images."""

    ids: list[str]
    scenes: list[Scene]
    captions: list[list[str]]
    images: np.ndarray  # (N, H, W, 3) uint8


def load_shapes_split(folder: str, split: str) -> ShapesSplit:
    from mmthesis.data.image_text import decode_sample_image
    from mmthesis.data.manifest import iter_split

    ids, scenes, captions, images = [], [], [], []
    for sample in iter_split(folder, split):
        meta = sample.get("json", {})
        ids.append(str(meta.get("id", sample["__key__"])))
        scenes.append(scene_of_meta(meta))
        captions.append([str(c) for c in meta.get("captions", [])])
        images.append(decode_sample_image(sample, folder))
    if not ids:
        raise DataMissingError(f"shapes split {split!r} is empty", "re-run `mmthesis data prepare shapes`")
    return ShapesSplit(ids, scenes, captions, np.stack(images))


def text_reader_accuracy(split: ShapesSplit) -> dict[str, float]:
    """The text reader on every caption of a split: exact-parse rate and, per attribute, the share of captions that
    state it whose reading agrees with the image's ground truth (percent)."""
    hits = {a: 0 for a in ATTRIBUTES}
    stated = {a: 0 for a in ATTRIBUTES}
    exact = total = 0
    for scene, caps in zip(split.scenes, split.captions, strict=True):
        for caption in caps:
            read, ok = read_caption(caption)
            exact += ok
            total += 1
            target = caption_target(scene, caption) if ok else scene.main()
            for a, hit in match(read, target).items():
                if a != "all":
                    stated[a] += 1
                    hits[a] += hit
    out = {"text_reader_exact": 100.0 * exact / max(total, 1), "text_reader_captions": float(total)}
    return out | {f"text_reader_{a}": 100.0 * hits[a] / stated[a] for a in ATTRIBUTES if stated[a]}


# ------------------------------------------------------------------------------ image classifier
@dataclass(frozen=True)
class ClassifierConfig:
    """Everything that determines the trained classifier (part of its cache key)."""

    input_size: int = 32
    width: int = 16
    epochs: int = 8
    batch_size: int = 64
    lr: float = 2e-3  # Adam, cosine decay to 0
    seed: int = 0
    blur_probability: float = 0.5  # blurred copies: decoders' images are smoother than the generator's
    version: int = 1  # bump when the training code changes


class AttributeNet(nn.Module):
    """A small CNN: per position slot, colour (0 = empty, 1..6) and shape logits."""

    def __init__(self, config: ClassifierConfig) -> None:
        super().__init__()
        w = config.width
        self.input_size = config.input_size
        self.features = nn.Sequential(
            nn.Conv2d(3, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(w, 2 * w, 3, padding=1), nn.BatchNorm2d(2 * w), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(2 * w, 2 * w, 3, padding=1), nn.BatchNorm2d(2 * w), nn.ReLU(), nn.MaxPool2d(2),
        )  # fmt: skip
        cells = (config.input_size // 8) ** 2
        self.head = nn.Sequential(
            nn.Flatten(), nn.Linear(2 * w * cells, 128), nn.ReLU(),
            nn.Linear(128, len(SLOTS) * (1 + len(COLOUR_NAMES) + len(SHAPES))),
        )  # fmt: skip

    def forward(self, images01: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``images01`` (B, 3, H, W) in [0, 1] at any size -> colour (B, S, 7) and shape (B, S, 4) logits."""
        x = prepare_images(images01, self.input_size)
        out = self.head(self.features(x)).view(len(x), len(SLOTS), -1)
        return out[..., : 1 + len(COLOUR_NAMES)], out[..., 1 + len(COLOUR_NAMES) :]


def prepare_images(images01: torch.Tensor, size: int) -> torch.Tensor:
    if images01.ndim != 4 or images01.shape[1] != 3:
        raise ValueError(f"images must be (B, 3, H, W) in [0, 1], got shape {tuple(images01.shape)}")
    x = images01.float()
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return (x - 0.5) / 0.25


def slot_targets(scenes: Iterable[Scene]) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, S) colour class (0 empty) and (N, S) shape class (-100 where empty) per slot."""
    scenes = list(scenes)
    colour = torch.zeros(len(scenes), len(SLOTS), dtype=torch.long)
    shape = torch.full((len(scenes), len(SLOTS)), -100, dtype=torch.long)
    for i, scene in enumerate(scenes):
        for o in scene.objects:
            j = SLOTS.index(o.position)
            colour[i, j] = 1 + COLOUR_NAMES.index(o.colour)
            shape[i, j] = SHAPES.index(o.shape)
    return colour, shape


def scenes_from_logits(colour_logits: torch.Tensor, shape_logits: torch.Tensor) -> list[Scene]:
    """Occupied slots (colour not 'empty') in slot order, each with its colour and shape."""
    colour, shape = colour_logits.argmax(-1), shape_logits.argmax(-1)
    return [
        Scene(tuple(
            ShapeObject(COLOUR_NAMES[int(colour[i, j]) - 1], SHAPES[int(shape[i, j])], SLOTS[j])
            for j in range(len(SLOTS)) if int(colour[i, j]) > 0
        ))  # fmt: skip
        for i in range(len(colour))
    ]


def uint8_to_tensor(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0


class AttributeClassifier:
    """The trained image attribute classifier and its test accuracy."""

    def __init__(self, net: AttributeNet, metrics: dict[str, float]) -> None:
        self.net = net.eval()
        self.metrics = metrics

    @torch.no_grad()
    def scenes(self, images01: torch.Tensor, batch_size: int = 256) -> list[Scene]:
        out: list[Scene] = []
        for start in range(0, len(images01), batch_size):
            out += scenes_from_logits(*self.net(images01[start : start + batch_size]))
        return out


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    from torchvision.transforms.v2 import functional as TF

    return TF.gaussian_blur(x, kernel_size=[5, 5], sigma=[sigma, sigma])


def train_classifier(train: ShapesSplit, config: ClassifierConfig) -> AttributeNet:
    """Adam on the summed per-slot cross-entropies; deterministic (seeded init, order and blur; one thread)."""
    from mmthesis.eval.threads import single_thread_if_small

    with torch.random.fork_rng(devices=[]), single_thread_if_small(0.0, 1.0):
        torch.manual_seed(config.seed)
        net = AttributeNet(config)
        x = prepare_images(uint8_to_tensor(train.images), config.input_size) * 0.25 + 0.5  # resized once
        colour, shape = slot_targets(train.scenes)
        opt = torch.optim.Adam(net.parameters(), lr=config.lr)
        steps = config.epochs * -(-len(x) // config.batch_size)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
        g = torch.Generator().manual_seed(config.seed)
        net.train()
        for _ in range(config.epochs):
            for idx in torch.randperm(len(x), generator=g).split(config.batch_size):
                batch = x[idx]
                if float(torch.rand((), generator=g)) < config.blur_probability:
                    batch = _blur(batch, 0.5 + float(torch.rand((), generator=g)))
                c_logits, s_logits = net(batch)
                loss = F.cross_entropy(c_logits.flatten(0, 1), colour[idx].flatten()) + F.cross_entropy(
                    s_logits.flatten(0, 1), shape[idx].flatten(), ignore_index=-100
                )
                opt.zero_grad()
                loss.backward()
                opt.step()
                schedule.step()
    return net.eval()


def classifier_accuracy(classifier: AttributeClassifier, test: ShapesSplit) -> dict[str, float]:
    """Percent of test images whose predicted scene matches the true main shape per attribute, ``all`` of them,
    and ``slots`` (every slot's colour and shape right)."""
    predicted = classifier.scenes(uint8_to_tensor(test.images))
    hits = {a: 0 for a in (*ATTRIBUTES, "all")}
    exact = 0
    for pred, true in zip(predicted, test.scenes, strict=True):
        for a, hit in match(pred, true.main()).items():
            hits[a] += hit
        exact += set(pred.objects) == set(true.objects)
    n = len(test.ids)
    return {f"image_classifier_{a}": 100.0 * h / n for a, h in hits.items()} | {
        "image_classifier_slots": 100.0 * exact / n,
        "image_classifier_test_images": float(n),
    }


def load_or_train_classifier(
    folder: str, fingerprint: str, config: ClassifierConfig | None = None, train_split: str = "train",
    test_split: str = "test",
) -> AttributeClassifier:
    """The classifier of a prepared shapes dataset (``fingerprint`` = its manifest hash), trained once and cached."""
    from safetensors.torch import load_file, save_file

    config = config or ClassifierConfig()
    key = sha256_json({"dataset": fingerprint, "train": train_split, "test": test_split,
                       "config": dataclasses.asdict(config)})[:24]  # fmt: skip
    cache = mmthesis_home() / "cache" / "attributes"
    weights, info = cache / f"shapes-classifier-{key}.safetensors", cache / f"shapes-classifier-{key}.json"
    net = AttributeNet(config)
    if weights.is_file() and info.is_file():
        net.load_state_dict(load_file(weights))
        return AttributeClassifier(net, json.loads(info.read_text())["metrics"])
    net = train_classifier(load_shapes_split(folder, train_split), config)
    classifier = AttributeClassifier(net, {})
    classifier.metrics = classifier_accuracy(classifier, load_shapes_split(folder, test_split))
    cache.mkdir(parents=True, exist_ok=True)
    with atomic_path(weights) as tmp:
        save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp))
    atomic_write_text(info, json.dumps({"config": dataclasses.asdict(config), "dataset": fingerprint,
                                        "metrics": classifier.metrics}, indent=2, sort_keys=True))  # fmt: skip
    return classifier
