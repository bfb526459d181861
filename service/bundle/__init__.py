"""The bundle contract shared by the exporter (``training.export``) and the service.

``artifacts`` (manifest schema, file names, ids, seen items, checksums, the ``LATEST`` pointer),
``aggregation`` (rank aggregation of several top-N lists) and ``item_index`` (FAISS indexes as
bundles store them). This package imports numpy, pydantic and faiss only: never torch, FastAPI,
``training`` or the rest of ``service`` (a test enforces it).
"""
