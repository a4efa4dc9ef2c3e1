"""mmthesis.data: raw -> prepared datasets, transforms, tokenizers and loaders.

Prepared datasets live under ``data_root()/<name>/``: webdataset-style tar
shards per split plus a ``manifest.json`` (counts, checksums, skipped items,
preparation config). See ``mmthesis.data.manifest``.
"""
