"""The built layers load and compute inside a Lambda Python 3.13 container.

`sam local invoke` runs the test-only function in tests/e2e/fixtures/ in the
offline stand-in image (scripts/lambda-image/build.sh), with the project's
real layers mounted at /opt as Lambda would. The container joins an internal
Docker network; the SAM CLI reaches it only through a port it publishes on
127.0.0.1.
"""

from __future__ import annotations

import importlib.util
import json
import random
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import cv2
import numpy as np
import pytest

pytestmark = pytest.mark.e2e

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def load_probe() -> ModuleType:
    """Import the fixture handler on the host, to recompute its answers here."""
    spec = importlib.util.spec_from_file_location("lambda_probe", FIXTURES / "probe" / "app.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, module)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def probe_build(tmp_path_factory: pytest.TempPathFactory, sam_env: dict[str, str], run_cmd) -> Path:
    """`sam build` of the fixture stack; returns the built template."""
    build_dir = tmp_path_factory.mktemp("probe-build")
    run_cmd(["sam", "build", "-t", str(FIXTURES / "template.yaml"), "--build-dir", str(build_dir)],
            env=sam_env, cwd=FIXTURES)
    return build_dir / "template.yaml"


@pytest.fixture(scope="session")
def probe_event() -> dict[str, int]:
    """A fresh random event per run, so no reply can be baked in anywhere."""
    rng = random.Random()
    return {"seed": rng.randrange(2**31), "size": rng.choice([48, 64, 97, 128])}


@pytest.fixture(scope="session")
def probe_reply(probe_build: Path, probe_event: dict[str, int], lambda_image: str,
                docker_network: str, sam_env: dict[str, str],
                tmp_path_factory: pytest.TempPathFactory, run_cmd) -> dict[str, Any]:
    """Invoke the probe once in the Lambda container; return its decoded reply.

    One invocation serves every test here: each costs ~15 s, mostly SAM
    rebuilding the image that carries the 200 MB layer.
    """
    event_file = tmp_path_factory.mktemp("events") / "event.json"
    event_file.write_text(json.dumps(probe_event))
    proc = run_cmd(
        [
            "sam", "local", "invoke", "ProbeFunction",
            "-t", str(probe_build),
            "-e", str(event_file),
            "--invoke-image", lambda_image,
            "--skip-pull-image",
            "--docker-network", docker_network,
            "--container-host", "127.0.0.1",
            "--container-host-interface", "127.0.0.1",
        ],
        env=sam_env,
        cwd=probe_build.parent,
    )
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert lines, f"no reply on stdout; stderr:\n{proc.stderr[-3000:]}"
    reply = json.loads(lines[-1])
    assert "errorMessage" not in reply, reply
    return reply


def test_function_runs_on_python_3_13_with_layers_from_opt(probe_reply: dict[str, Any]) -> None:
    assert probe_reply["python"].startswith("3.13.")
    assert probe_reply["cv2_file"].startswith("/opt/python/cv2/")
    assert probe_reply["numpy_file"].startswith("/opt/python/numpy/")
    assert probe_reply["pictrace_file"] == "/opt/python/pictrace/__init__.py"
    # The layer leaves boto3 out; the runtime must supply it.
    assert probe_reply["boto3_importable"] is True


def test_layer_versions_match_the_tested_host_versions(probe_reply: dict[str, Any]) -> None:
    assert probe_reply["cv2_version"] == cv2.__version__
    assert probe_reply["numpy_version"] == np.__version__


def test_opencv_results_in_lambda_equal_results_on_host(
    probe_reply: dict[str, Any], probe_event: dict[str, int]
) -> None:
    probe = load_probe()
    expected = probe.image_stats(probe.probe_image(probe_event["seed"], probe_event["size"]))
    assert expected["edge_pixels"] > 0
    assert {k: probe_reply[k] for k in expected} == expected, probe_event
