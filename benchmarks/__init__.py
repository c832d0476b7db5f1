"""Accuracy and speed benchmark for PicTrace (run with ``python -m benchmarks.run``)."""

# Before numpy: pictrace sets the BLAS thread count it measures best with.
import pictrace  # noqa: F401
