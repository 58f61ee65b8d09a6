"""The embedded blob store: a folder."""

from chronoq.adapters.fs.blob import FsBlobStore

__all__ = ["FsBlobStore"]
