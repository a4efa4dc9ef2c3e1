"""mmthesis.students: student models, losses, memory bank, LightningModules and training.

    from mmthesis.students import load_trained, load_recipe
    run = load_trained(folder)          # TrainedRun: config, tokenizer, model (every run kind), folder

Importing this package (or ``mmthesis.students.artifact``) does not import Lightning:
the training names (``train_recipe``, the modules, the callbacks) load it on first use.
"""

from __future__ import annotations

from mmthesis.core._lazy import lazy_exports
from mmthesis.students.artifact import (
    CONFIG,
    LOSSES,
    TOKENIZER,
    WEIGHTS,
    TrainedRun,
    load_trained,
    read_config,
    read_losses,
    read_tokenizer,
    read_weights,
    run_name,
    write_artifact,
)
from mmthesis.students.config import (
    DataConfig,
    EncoderConfig,
    InitConfig,
    LossConfig,
    ModelConfig,
    OptimConfig,
    TeacherConfig,
    TrainConfig,
    VLRecipeConfig,
)
from mmthesis.students.recipes import load_recipe, recipe_header, recipe_names
from mmthesis.students.schedules import cosine_with_warmup

# Lightning-dependent names, imported from their module on first access
_LAZY = {
    "train_recipe": "mmthesis.students.train",
    "precompute_recipe_targets": "mmthesis.students.train",
    "TrainingModule": "mmthesis.students.lightning_module",
    "VLDistillationModule": "mmthesis.students.lightning_module",
    "UnimodalDistillationModule": "mmthesis.students.unimodal_module",
}

__all__ = [
    "CONFIG",
    "LOSSES",
    "TOKENIZER",
    "WEIGHTS",
    "DataConfig",
    "EncoderConfig",
    "InitConfig",
    "LossConfig",
    "ModelConfig",
    "OptimConfig",
    "TeacherConfig",
    "TrainConfig",
    "TrainedRun",
    "VLRecipeConfig",
    "cosine_with_warmup",
    "load_recipe",
    "load_trained",
    "read_config",
    "read_losses",
    "read_tokenizer",
    "read_weights",
    "recipe_header",
    "recipe_names",
    "run_name",
    "write_artifact",
    *_LAZY,
]


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
