"""One module per spec kind; each registers itself with ``specs.register_kind``."""
