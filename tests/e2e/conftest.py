"""Fixtures for end-to-end tests of the deployment artefacts (SAM, Docker).

Tools that are missing skip these tests on a developer machine but fail them
in CI (CI=true), where a skip would hide a broken pipeline.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Iterator

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).resolve().parent / "fixtures"

# What `sam build` needs from the repository; copying it keeps the build's
# scratch output out of the work tree.
PROJECT_PATHS = ("template.yaml", "samconfig.toml", "layers", "functions", "pictrace")

LAMBDA_IMAGE = "pictrace/lambda-python3.13:local"
# Set by scripts/lambda-image/build.sh on the image it imports.
IMAGE_LABEL = "org.pictrace.rootfs-key"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "e2e: end-to-end test driving the SAM CLI and/or Docker (slow)"
    )


def in_ci() -> bool:
    """Return True when running under CI (CI=true or CI=1)."""
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def require_tools(*names: str) -> None:
    """Skip (locally) or fail (in CI) unless every named executable is on PATH."""
    missing = [name for name in names if shutil.which(name) is None]
    if missing:
        message = f"required tools not installed: {', '.join(missing)}"
        if in_ci():
            pytest.fail(message + " (CI must provide them)")
        pytest.skip(message)


def run(cmd: list[str], *, env: dict[str, str], cwd: Path | None = None,
        timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """Run `cmd`, failing the test with its output if it exits non-zero."""
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        pytest.fail(
            f"{' '.join(cmd)} exited {proc.returncode}\n"
            f"--- stdout ---\n{proc.stdout[-4000:]}\n--- stderr ---\n{proc.stderr[-4000:]}"
        )
    return proc


@pytest.fixture(scope="session")
def run_cmd():
    """The `run` helper, for test modules (they cannot import this file)."""
    return run


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository's top directory."""
    return REPO_ROOT


@pytest.fixture(scope="session")
def sam_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Environment for SAM CLI runs that keeps them on this machine.

    Fake credentials stop botocore's credential chain before it asks the EC2
    metadata address; a fresh SAM app dir with telemetry off and a current
    version-check stamp stops SAM's own calls home.
    """
    require_tools("sam")
    app_dir = tmp_path_factory.mktemp("sam-app-dir")
    (app_dir / "metadata.json").write_text(
        json.dumps({"telemetryEnabled": False, "lastVersionCheck": time.time()})
    )
    env = dict(os.environ)
    env.update(
        {
            "__SAM_CLI_APP_DIR": str(app_dir),
            "SAM_CLI_TELEMETRY": "0",
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
        }
    )
    env.pop("AWS_PROFILE", None)
    env.pop("AWS_SESSION_TOKEN", None)
    return env


@pytest.fixture(scope="session")
def project_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the files `sam build` reads, outside the work tree."""
    dest = tmp_path_factory.mktemp("project")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".aws-sam", "build")
    for name in PROJECT_PATHS:
        source = REPO_ROOT / name
        if source.is_dir():
            shutil.copytree(source, dest / name, ignore=ignore)
        elif source.exists():
            shutil.copy2(source, dest / name)
    return dest


@pytest.fixture(scope="session")
def project_build(project_copy: Path, sam_env: dict[str, str]) -> Path:
    """Run `sam build` on the project once per session; return the build dir."""
    build_dir = project_copy / ".aws-sam" / "build"
    run(["sam", "build", "--build-dir", str(build_dir)], env=sam_env, cwd=project_copy)
    return build_dir


@pytest.fixture(scope="session")
def lambda_image(sam_env: dict[str, str]) -> Iterator[str]:
    """Build (or reuse) the stand-in Lambda image; yield its name.

    The builder starts dockerd itself when no daemon answers. `sam local`
    rebuilds an image with the layers on top of this one at every invoke;
    those inherit the base image's label, which is how teardown finds them.
    """
    require_tools("docker", "debootstrap")
    run(["bash", str(REPO_ROOT / "scripts" / "lambda-image" / "build.sh"), "--tag", LAMBDA_IMAGE],
        env=sam_env, timeout=1800)
    base_id = run(["docker", "image", "inspect", "-f", "{{.Id}}", LAMBDA_IMAGE], env=sam_env).stdout.strip()
    try:
        yield LAMBDA_IMAGE
    finally:
        listed = subprocess.run(
            ["docker", "images", "-q", "--no-trunc", "--filter", f"label={IMAGE_LABEL}"],
            capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False,
        ).stdout.split()
        derived = sorted(set(listed) - {base_id})
        if derived:
            # Images still used by a container are kept: no --force.
            subprocess.run(["docker", "rmi", *derived], capture_output=True,
                           stdin=subprocess.DEVNULL, check=False)


@pytest.fixture(scope="session")
def docker_network(lambda_image: str, sam_env: dict[str, str]) -> Iterator[str]:
    """An internal Docker network (no route off the host) for the test's containers.

    Depends on `lambda_image` because building it is what starts the daemon.
    """
    name = f"pictrace-e2e-{os.getpid()}-{int(time.time())}"
    run(["docker", "network", "create", "--internal", name], env=sam_env)
    try:
        yield name
    finally:
        subprocess.run(["docker", "network", "rm", name], capture_output=True,
                       stdin=subprocess.DEVNULL, check=False)
