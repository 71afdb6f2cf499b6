"""Raw files -> parquet splits + manifest (``recrl prepare <dataset>``); ``encoding`` is shared."""
