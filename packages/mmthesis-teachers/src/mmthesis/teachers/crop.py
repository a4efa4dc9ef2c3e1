"""``crop``: build a student's initialisation from a teacher exactly as the thesis did.

The thesis's students (REFERENCE.md 3.1-3.3) are the pretrained encoder cut
to its first blocks, everything in front of the blocks copied unchanged:

* Data2Vec2 image: patch projection, CLS ("extra") token, fixed sin-cos
  positions, the pre-block LayerNorm and blocks ``0..k-1`` of the flattened
  numbering (2 prenet blocks first). No final norm exists (post-LN model).
  Two readings of "first 6 blocks" (section 10 item 1): ``reading="thesis"``
  (default) counts all blocks, so 6 = 2 prenet + 4 shared (43.1M params, the
  thesis's count); ``reading="code"`` counts shared blocks after the whole
  prenet, as the original code's ``model.blocks[:6]`` did: 2 + 6 = 8 blocks.
* BERT: embeddings (word, position, token type, LayerNorm) + layers ``0..k-1``.
* BEiTv2 / DINO: patch embedding, CLS, positions / shared relative bias,
  blocks ``0..k-1`` and the final norm.

The result is a new module of the same class with copied tensors (changing it
leaves the teacher alone), trainable, in train mode.
"""

from __future__ import annotations

from typing import Literal

from mmthesis.core.errors import MMThesisError
from mmthesis.teachers.base import TeacherModule

Reading = Literal["thesis", "code"]


def flattened_blocks(model: TeacherModule, first_k_blocks: int, reading: Reading = "thesis") -> int:
    """How many flattened blocks a crop keeps under ``reading``."""
    if reading == "thesis":
        return first_k_blocks
    if reading == "code":
        return getattr(model, "prenet_depth", 0) + first_k_blocks
    raise MMThesisError(f"unknown crop reading {reading!r}", "use 'thesis' or 'code'")


def crop(model: TeacherModule, first_k_blocks: int, reading: Reading = "thesis") -> TeacherModule:
    new = model.cropped(flattened_blocks(model, first_k_blocks, reading))
    new.teacher_name = model.teacher_name
    new.requires_grad_(True)
    return new.train(True)
