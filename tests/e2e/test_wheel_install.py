"""The wheel installed outside the repository runs ``pictrace serve``: add, search, restart.

The wheel is built from the work tree and installed without dependencies
into a fresh virtual environment that sees this interpreter's packages (a
``.pth`` line naming their folder: ``--system-site-packages`` would show
the base interpreter's, not those of the virtual environment the tests run
in), so no network is needed beyond what the build backend itself needs.
The folder is added as a plain path, so the editable install of the
repository that it holds is not loaded and the wheel's copy is imported.  Everything then runs from a folder outside the
repository, with no ``PYTHONPATH``, so a file the wheel lacks fails the test.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.cli.conftest import closed_port, write_jpeg
from tests.conftest import sample_bgr

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    """A virtual environment, outside the repository, with only the built wheel installed into it."""
    root = tmp_path_factory.mktemp("wheel")
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(root / "dist"), str(REPO)],
        capture_output=True, text=True, timeout=600, cwd=root,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = (root / "dist").glob("pictrace-*.whl")
    env_dir = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(env_dir)], check=True, timeout=300)
    (site,) = (env_dir / "lib").glob("python3*/site-packages")
    (site / "test-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    installed = subprocess.run(
        [str(env_dir / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps", str(wheel)],
        capture_output=True, text=True, timeout=300,
    )
    assert installed.returncode == 0, installed.stderr[-3000:]
    return env_dir


def outside_env(home: Path) -> dict[str, str]:
    """An environment with nothing pointing into the repository, and a home of its own."""
    prefixes, names = ("AWS_", "PICTRACE_", "POWERTOOLS_"), ("BUCKET_NAME", "SCORE_FUNCTION_NAME", "PYTHONPATH")
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes) and k not in names}
    env.update(HOME=str(home), XDG_DATA_HOME=str(home / "share"))
    return env


def test_the_installed_wheel_serves_adds_searches_and_keeps_its_catalog(venv, tmp_path):
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = outside_env(work)
    python, cli = str(venv / "bin" / "python"), str(venv / "bin" / "pictrace")
    where = subprocess.run([python, "-c", "import pictrace; print(pictrace.__file__)"],
                           capture_output=True, text=True, cwd=work, env=env, check=True).stdout.strip()
    assert where.startswith(str(venv)) and not where.startswith(str(REPO)), where

    photo = write_jpeg(work / "coffee.jpg", sample_bgr("coffee"))
    port = closed_port()
    api = f"http://127.0.0.1:{port}"

    def serve() -> subprocess.Popen:
        proc = subprocess.Popen([cli, "serve", "--no-demo", "--port", str(port), "--workers", "1"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=work, env=env)
        line = proc.stdout.readline().strip()
        assert line == f"web page: {api}/", proc.stderr.read() if not line else line
        return proc

    def stop(proc: subprocess.Popen) -> str:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        return err

    def pictrace(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([cli, *args, "--api", api], capture_output=True, text=True, cwd=work, env=env, timeout=120)

    proc = serve()
    try:
        added = pictrace("add", str(photo))
        assert added.returncode == 0, added.stderr
        found = pictrace("search", str(photo), "-k", "1", "--json")
        assert found.returncode == 0, found.stderr
        assert json.loads(found.stdout)["results"][0]["name"] == "coffee.jpg"
    finally:
        err = stop(proc)
    assert f"catalog kept in {work / 'share' / 'pictrace'}" in err

    proc = serve()  # the same default data folder: the catalog is still there
    try:
        listed = pictrace("list", "--json")
        assert listed.returncode == 0, listed.stderr
        assert [i["name"] for i in json.loads(listed.stdout)["images"]] == ["coffee.jpg"]
    finally:
        stop(proc)
