"""PicTrace: similar-image search."""

__version__ = "0.1.0"
