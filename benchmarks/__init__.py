"""Accuracy and speed benchmark for PicTrace (run with ``python -m benchmarks.run``)."""
