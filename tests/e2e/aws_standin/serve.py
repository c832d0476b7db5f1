"""Entry script of the AWS stand-in container for the `sam local invoke` test.

Runs in the stand-in Lambda image (CPython 3.13), on the test's internal
Docker network, and serves two AWS APIs to the function containers there:

* S3 on port 5000: moto's server (installed for cp313 into a mounted folder);
* Lambda Invoke on port 9001: pictrace's local endpoint, which answers
  "ScoreFunction" with the scoring handler mounted read-only at /var/task.

The Invoke endpoint serves only the fan-out calls that ApiFunction and
SearchTriggerFunction make from inside their own containers. The test still
runs ScoreFunction itself through `sam local invoke` in a Lambda container of
its own; this process stands in for the Lambda service behind boto3's
``invoke``, the one part of AWS that `sam local invoke` does not emulate.

Prints one "ready" line once both ports accept connections, then serves until
SIGTERM (what `docker stop` sends).
"""

from __future__ import annotations

import importlib.util
import signal
import sys
import threading
from types import ModuleType

S3_PORT = 5000
LAMBDA_PORT = 9001
SCORE_HANDLER = "/var/task/app.py"


def load_handler(path: str) -> ModuleType:
    """Import a Lambda handler file as a module, as the runtime would."""
    spec = importlib.util.spec_from_file_location("score_app", path)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> int:
    from moto.server import ThreadedMotoServer

    from pictrace.local.lambda_endpoint import LambdaEndpoint

    s3 = ThreadedMotoServer(ip_address="0.0.0.0", port=S3_PORT, verbose=False)
    s3.start()
    score = load_handler(SCORE_HANDLER)
    invoke = LambdaEndpoint({"ScoreFunction": score.lambda_handler}, host="0.0.0.0", port=LAMBDA_PORT)
    invoke.start()

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print(f"aws-standin ready: s3 :{S3_PORT}, lambda :{LAMBDA_PORT}", flush=True)
    stop.wait()
    invoke.stop()
    s3.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
