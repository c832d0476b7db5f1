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
from pictrace.cli import Progress, build_parser, no_match, results_table, table

REPO = Path(__file__).resolve().parents[2]


def commands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    subs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(subs.choices)


def test_the_commands_are_the_documented_ones():
    assert set(commands()) == {"serve", "add", "search", "similar", "compare", "list", "get", "meta", "delete", "reindex", "duplicates", "export", "import"}


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
        ["search", "x.jpg", "-k", "0"],
        ["search", "x.jpg", "--min-score", "1.5"],
        ["search", "x.jpg", "--min-score", "nan"],
        ["similar"],
        ["similar", "ab" * 32, "-k", "-1"],
        ["compare", "x.jpg"],
        ["search", "x.jpg", "--api"],
        ["add"],
        ["add", "-j", "0", "x.jpg"],
        ["list", "--limit", "0"],
        ["delete"],
        ["meta"],
        ["meta", "ab" * 32, "--set", "tenant=acme"],
        ["meta", "ab" * 32, "--set", "[1]"],
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


def test_results_table_shows_a_short_id_and_the_name_but_no_url():
    url = "http://127.0.0.1:1/bucket/catalog/" + "ab" * 32 + "?X-Amz-Signature=" + "f" * 300
    answer = {
        "results": [
            {"rank": 1, "id": "ab" * 32, "name": "", "image_url": url, "stored_url": url, "score": 0.5,
             "scores": {"ssim": 0.25, "orb": 0.5, "hist": 0.75}, "transform": "mirror"},
            {"rank": 2, "id": "cd" * 32, "name": "my cat.jpg", "image_url": url, "score": 0.25,
             "scores": {"ssim": 0.25, "orb": 0.25, "hist": 0.25}, "transform": "mirror+rot90"},
        ]
    }
    text = results_table(answer)
    header, first, second = text.splitlines()
    assert header.split() == ["rank", "score", "ssim", "orb", "hist", "semantic", "transform", "name", "id", "label"]
    # An answer without looks-like scores or labels (an image stored before them) shows "-".
    assert first.split() == ["1", "0.500", "0.250", "0.500", "0.750", "-", "mirror", "-", "ab" * 6, "-"]
    assert second.split()[7:] == ["my", "cat.jpg", "cd" * 6, "-"]
    assert "http" not in text and max(map(len, text.splitlines())) < 100


def test_no_match_says_why():
    assert no_match({"counts": {"candidates": 0}, "min_score": 0.5}) == "no similar image: the catalog is empty"
    assert no_match({"counts": {"candidates": 9}, "min_score": 0.5}) == "no similar image (none scores at least 0.5)"
    assert no_match({"counts": {"candidates": 9}, "min_score": 0}) == "no similar image"


def test_the_api_option_works_before_and_after_the_command():
    parser = build_parser()
    assert parser.parse_args(["--api", "http://a", "list"]).api == "http://a"
    assert parser.parse_args(["list", "--api", "http://b"]).api == "http://b"
    assert parser.parse_args(["search", "q.jpg", "--api", "http://c", "-k", "3"]).api == "http://c"
    assert parser.parse_args(["list"]).api is None


def test_a_closed_pipe_ends_the_command_quietly(tmp_path):
    # The reader end is closed before the command starts, so its first write fails.
    read, write = os.pipe()
    os.close(read)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-m", "pictrace", "search", "--help"], stdout=write, stderr=subprocess.PIPE, env=env, timeout=60
    )
    os.close(write)
    assert done.stderr == b""
    assert done.returncode == 0
