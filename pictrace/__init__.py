"""PicTrace: similar-image search."""

import os

# A search already spreads its candidates over a thread pool of its own.
# OpenBLAS would add threads of its own to every large vector product, and on
# a busy machine waking them costs milliseconds per product (a 32,768-bin
# histogram norm took 6-12 ms instead of 5 us), so one BLAS thread per caller
# unless the environment says otherwise.  Only takes effect if numpy is not
# imported yet.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

__version__ = "0.1.0"
