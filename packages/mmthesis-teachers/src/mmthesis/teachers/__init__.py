"""mmthesis.teachers: teacher architectures, checkpoint converters and KD targets.

    from mmthesis.teachers import build_model, load_teacher, crop, list_teachers, TeacherOutput

Every model returns a ``TeacherOutput`` and exposes ``embed_dim``,
``num_blocks`` and ``modality``. Loading a foreign checkpoint never runs
arbitrary pickles (see ``safe_unpickle``).
"""

from mmthesis.teachers.base import TeacherModule
from mmthesis.teachers.crop import crop, flattened_blocks
from mmthesis.teachers.data2vec2 import init_bert_params
from mmthesis.teachers.formats import detect_format
from mmthesis.teachers.loading import Inspection, convert_checkpoint, inspect_checkpoint, load_pooler, load_teacher
from mmthesis.teachers.output import TeacherOutput
from mmthesis.teachers.registry import TEACHERS, build_model, get_spec, list_teachers, param_count
from mmthesis.teachers.targets import cls_target, data2vec_target, image_kd_layers, text_kd_layers

__all__ = [
    "TEACHERS",
    "Inspection",
    "TeacherModule",
    "TeacherOutput",
    "build_model",
    "cls_target",
    "convert_checkpoint",
    "crop",
    "data2vec_target",
    "detect_format",
    "flattened_blocks",
    "init_bert_params",
    "get_spec",
    "image_kd_layers",
    "inspect_checkpoint",
    "list_teachers",
    "load_pooler",
    "load_teacher",
    "param_count",
    "text_kd_layers",
]
