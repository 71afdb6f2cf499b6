"""Pretrained-language-model item encoder (optional extra ``text``: Hugging Face ``transformers``).

Item text (captions, categories, property tokens) is turned into one vector per item by a BERT-style model
loaded only from local files, and that vector becomes the item's representation in the MTL bases, RMTL and the
RL agents' item kernel. Modules: ``config`` (the shared options), ``backend`` (the only importer of
``transformers``), ``items`` (item text tables), ``vocab`` (WordPiece vocabularies and tiny random models),
``cache`` (frozen embeddings on disk), ``encoder`` (the nn.Modules), ``attach`` (wiring into the networks).
"""
