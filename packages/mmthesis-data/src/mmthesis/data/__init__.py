"""mmthesis.data: raw -> prepared datasets, transforms, tokenizers and loaders.

Prepared datasets live under ``data_root()/<name>/``: webdataset-style tar
shards per split plus a ``manifest.json`` (counts, checksums, skipped items,
preparation config). See ``mmthesis.data.manifest``.
"""

from mmthesis.core._lazy import lazy_exports

_EXPORTS = {
    "DatasetSpec": "mmthesis.data.registry",
    "get_dataset": "mmthesis.data.registry",
    "dataset_names": "mmthesis.data.registry",
    "prepared_name": "mmthesis.data.registry",
    "prepare_command": "mmthesis.data.registry",
    "Manifest": "mmthesis.data.manifest",
    "read_manifest": "mmthesis.data.manifest",
    "dataset_dir": "mmthesis.data.manifest",
    "iter_split": "mmthesis.data.manifest",
    "verify": "mmthesis.data.manifest",
    "Tokenizer": "mmthesis.data.tokenizers",
    "bert_wordpiece": "mmthesis.data.tokenizers",
    "train_wordpiece": "mmthesis.data.tokenizers",
    "load_dataset_tokenizer": "mmthesis.data.tokenizers",
    "Batch": "mmthesis.data.batch",
    "train_transform": "mmthesis.data.transforms",
    "eval_transform": "mmthesis.data.transforms",
    "ImageTextPairs": "mmthesis.data.image_text",
    "RetrievalSplit": "mmthesis.data.image_text",
    "load_retrieval_split": "mmthesis.data.image_text",
    "count_training_examples": "mmthesis.data.counts",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
