"""One module per dataset; each registers a ``DatasetSpec`` in ``mmthesis.data.registry``."""
