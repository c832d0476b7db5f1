"""Help, usage errors and output helpers: no API needed."""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

import pictrace.cli as cli
from pictrace.cli import Progress, build_parser, results_table, table

REPO = Path(__file__).resolve().parents[2]


def commands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    subs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(subs.choices)


def test_the_commands_are_the_documented_ones():
    assert set(commands()) == {"serve", "add", "search", "list", "get", "delete"}


@pytest.mark.parametrize("name", sorted(commands()))
def test_every_command_has_help_with_an_example(run, name):
    result = run(name, "--help")
    assert result.code == 0
    assert "example:" in result.out
    example = result.out.split("example:", 1)[1]
    assert f"pictrace {name}" in example
    assert commands()[name].description  # a sentence, not only a usage line


def test_top_level_help_lists_commands_and_exit_codes(run):
    result = run("--help")
    assert result.code == 0
    for name in commands():
        assert name in result.out
    for code, meaning in ((0, "success"), (1, "failed"), (2, "usage error"), (3, "cannot be reached")):
        line = next(line for line in result.out.splitlines() if line.strip().startswith(f"{code} "))
        assert meaning in line
    # the module docstring documents the same codes
    doc = " ".join(cli.__doc__.split())
    for line in cli.EXIT_CODES.splitlines()[1:]:
        assert " ".join(line.split()) in doc


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["frobnicate"],
        ["search"],
        ["search", "x.jpg", "-k", "many"],
        ["search", "x.jpg", "--ranking", "best"],
        ["add"],
        ["add", "-j", "0", "x.jpg"],
        ["list", "--limit", "0"],
        ["delete"],
        ["serve", "--port", "eighty"],
    ],
)
def test_usage_errors_exit_2_with_one_line(run, args):
    result = run(*args)
    assert result.code == 2
    assert len(result.err_lines) == 1 and result.err.startswith("pictrace: error: ")
    assert result.out == ""


def test_a_missing_file_is_a_usage_error(run, tmp_path):
    for args in (["search", str(tmp_path / "nope.jpg")], ["add", str(tmp_path), str(tmp_path / "nope.jpg")]):
        result = run(*args)
        assert result.code == 2
        assert result.err_lines == [f"pictrace: error: no such file: {tmp_path / 'nope.jpg'}"]


def test_searching_a_directory_is_a_usage_error(run, tmp_path):
    result = run("search", str(tmp_path))
    assert result.code == 2 and result.err_lines == [f"pictrace: error: {tmp_path} is a directory"]


def test_python_dash_m_runs_the_command_line():
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    python = [sys.executable, "-m", "pictrace"]
    done = subprocess.run(python + ["search"], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 2
    assert done.stderr.startswith("pictrace: error: ")
    done = subprocess.run(python + ["--version"], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0 and done.stdout.startswith("pictrace ")


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_draws_on_a_terminal_and_clears_itself():
    screen = Terminal()
    bar = Progress(4, screen, width=8)
    for name in ("a.jpg", "b.jpg", "c.jpg", "d.jpg"):
        bar.step(name)
    bar.close()
    frames = screen.getvalue().split("\r")[1:]
    assert frames[0].startswith("[##------] 1/4 a.jpg")
    assert frames[3].startswith("[########] 4/4 d.jpg")
    assert frames[-1] == "\x1b[K"  # the last frame erases the line


def test_progress_is_silent_when_not_a_terminal():
    pipe = io.StringIO()
    bar = Progress(3, pipe)
    bar.step("a")
    bar.close()
    assert pipe.getvalue() == "" and bar.done == 1


def test_table_aligns_columns():
    text = table(("n", "name"), [[1, "a"], [100, "bb"]], right=frozenset({0}))
    assert text.splitlines() == ["  n  name", "  1  a", "100  bb"]


def test_results_table_falls_back_to_the_id_without_a_name():
    answer = {
        "results": [
            {"rank": 1, "id": "ab" * 32, "name": "", "image_url": "http://x/1", "score": 0.5,
             "scores": {"ssim": 0.25, "orb": 0.5, "hist": 0.75}, "transform": "mirror"},
        ]
    }
    header, row = results_table(answer).splitlines()
    assert header.split() == ["rank", "score", "ssim", "orb", "hist", "transform", "name/id", "url"]
    assert row.split() == ["1", "0.500", "0.250", "0.500", "0.750", "mirror", "ab" * 6, "http://x/1"]
