"""The Qt-free core: image loading, encoders, catalog, vector store, indexer, search.

Nothing in this package may import Qt; ``tests/test_layers.py`` enforces it.
"""
