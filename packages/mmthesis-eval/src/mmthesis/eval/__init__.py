"""mmthesis.eval: evaluation tasks, metrics and result writing for any model with encode_image/encode_text."""

from mmthesis.core._lazy import lazy_exports

_EXPORTS = {
    "HarnessConfig": "mmthesis.eval.harness",
    "evaluate": "mmthesis.eval.harness",
    "headline": "mmthesis.eval.harness",
    "LoadedModel": "mmthesis.eval.adapters",
    "load_model": "mmthesis.eval.adapters",
    "ImageTextModel": "mmthesis.eval.models",
    "CrossModalGenerator": "mmthesis.eval.generative",
    "TaskSpec": "mmthesis.eval.task_registry",
    "ResolvedTask": "mmthesis.eval.task_registry",
    "all_tasks": "mmthesis.eval.task_registry",
    "get_task": "mmthesis.eval.task_registry",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
