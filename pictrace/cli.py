"""The ``pictrace`` command line: a thin layer over :mod:`pictrace.client`.

Commands: ``serve`` (the local stack, with a demo catalog), ``add``,
``search``, ``similar``, ``compare``, ``list``, ``get``, ``meta``,
``delete``, ``duplicates``, ``export`` and ``import``.  They
talk to the API at ``--api`` (before or after the command; else
``PICTRACE_API_URL``, else http://127.0.0.1:8080), sending
``PICTRACE_API_KEY`` as ``X-Api-Key`` when it is set.  Output cut short by
its reader (``pictrace list --json | head``) ends the command quietly.

Every failure is one line on stderr, ``pictrace: error: <message>``, and an
exit code:

    0  success
    1  some items failed, or the API answered with an error
    2  usage error (bad option, missing file)
    3  the API cannot be reached

and 130 when interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import textwrap
import time
from pathlib import Path
from typing import Callable, Sequence, TextIO, TypeVar

from pictrace import __version__
from pictrace.client import (
    DEFAULT_URL,
    ApiError,
    Client,
    ClientError,
    Outcome,
    Unreachable,
    add_all,
    expand,
    image_ref,
    source,
)

T = TypeVar("T")
OK, FAILED, USAGE, UNREACHABLE = 0, 1, 2, 3
EXIT_CODES = f"""exit codes:
  {OK}  success
  {FAILED}  some items failed, or the API answered with an error
  {USAGE}  usage error (bad option, missing file)
  {UNREACHABLE}  the API cannot be reached"""


class CliError(Exception):
    """A failure to report as one line, with the exit code it deserves."""

    def __init__(self, message: str, code: int = FAILED) -> None:
        super().__init__(message)
        self.code = code


def error(message: str) -> None:
    print(f"pictrace: error: {message}", file=sys.stderr)


def note(message: str) -> None:
    print(message, file=sys.stderr)


# --- output ----------------------------------------------------------------------


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], right: frozenset[int] = frozenset()) -> str:
    """Rows as aligned columns; columns whose index is in ``right`` are right-aligned."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = []
    for row in cells:
        parts = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))]
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)


def results_table(answer: dict) -> str:
    """The ``results`` of a search answer as a table, best first.

    Links are left out (presigned URLs are hundreds of characters long);
    ``--json`` has them.
    """
    rows = [
        [
            r["rank"],
            f"{r['score']:.3f}",
            *(_score(r["scores"].get(s)) for s in ("ssim", "orb", "hist", "semantic")),
            r.get("transform", ""),
            r.get("name") or "-",
            short_id(r["id"]),
            r["labels"][0]["label"] if r.get("labels") else "-",
        ]
        for r in answer.get("results", [])
    ]
    headers = ("rank", "score", "ssim", "orb", "hist", "semantic", "transform", "name", "id", "label")
    return table(headers, rows, right=frozenset(range(6)))


def _score(value: float | None) -> str:
    """A score to 3 places; "-" for none (an image without a looks-like embedding)."""
    return "-" if value is None else f"{value:.3f}"


def short_id(image_id: str) -> str:
    """The first 12 hex digits of an id: enough to tell images apart, short enough to read."""
    return image_id[:12]


def no_match(answer: dict) -> str:
    """Why a search answered with no results, in one line."""
    if not answer.get("counts", {}).get("candidates"):
        return "no similar image: the catalog is empty"
    threshold = answer.get("min_score") or 0
    return f"no similar image (none scores at least {threshold:g})" if threshold else "no similar image"


def comparison_text(answer: dict) -> str:
    """A ``POST /compare`` answer as a few aligned lines."""
    s, kp = answer["scores"], answer["keypoints"]
    mirrored = " (a's mirror image)" if kp.get("mirrored") else ""
    lines = [
        ("score", f"{answer['score']:.3f}"),
        ("ssim", f"{s['ssim']:.3f}"),
        ("orb", f"{s['orb']:.3f}"),
        ("hist", f"{s['hist']:.3f}"),
        ("transform", answer["transform"]),
        ("keypoints", f"{kp['count']} matched{mirrored}"),
    ]
    return "\n".join(f"{k.ljust(9)}  {v}" for k, v in lines)


def records_table(records: Sequence[dict]) -> str:
    rows = [
        [r["id"], r["format"], f"{r['width']}x{r['height']}", r["bytes"], _when(r.get("added_at")), r.get("name", "")]
        for r in records
    ]
    return table(("id", "format", "size", "bytes", "added", "name"), rows, right=frozenset({3}))


def _when(epoch: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch)) if epoch else ""


def dump(answer: object) -> None:
    print(json.dumps(answer, indent=2))


class Progress:
    """A one-line progress bar on a terminal; silent when ``stream`` is not one."""

    def __init__(self, total: int, stream: TextIO, width: int = 30) -> None:
        self.total, self.stream, self.width, self.done = total, stream, width, 0
        self.enabled = total > 1 and stream.isatty()

    def step(self, label: str = "") -> None:
        self.done += 1
        if self.enabled:
            filled = self.width * self.done // self.total
            bar = "#" * filled + "-" * (self.width - filled)
            self.stream.write(f"\r[{bar}] {self.done}/{self.total} {label[-40:]}\x1b[K")
            self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\r\x1b[K")
            self.stream.flush()


def add_summary(outcomes: Sequence[Outcome]) -> tuple[str, int]:
    """What ``add`` prints and how many items failed.

    One line per image, ``added <id>  <name>`` or ``duplicate <id>  <name>``
    with the full id (for ``similar``, ``get`` or ``delete``), then the
    counts, then one line per failure.
    """
    lines = [
        f"{kind} {r['id']}  {r.get('name') or r.get('image_url') or ''}".rstrip()
        for o in outcomes
        for kind, records in (("added", o.added), ("duplicate", o.duplicates))
        for r in records
    ]
    added = sum(len(o.added) for o in outcomes)
    duplicates = sum(len(o.duplicates) for o in outcomes)
    failures = [(what or o.source.label, why) for o in outcomes for what, why in o.failed]
    lines.append(f"added {added}, duplicates {duplicates}, failed {len(failures)}")
    lines += [f"  failed {what}: {why}" for what, why in failures]
    return "\n".join(lines), len(failures)


def add_json(outcomes: Sequence[Outcome]) -> dict:
    """What ``add --json`` prints: the records added and already there, and the failures."""
    return {
        "ids": [r["id"] for o in outcomes for r in o.added],
        "added": [r for o in outcomes for r in o.added],
        "duplicates": [r for o in outcomes for r in o.duplicates],
        "failed": [{"source": what or o.source.label, "reason": why} for o in outcomes for what, why in o.failed],
    }


# --- commands ------------------------------------------------------------------


def client(args: argparse.Namespace) -> Client:
    return Client.from_env(args.api)


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        from pictrace.local import demo, serve
    except ImportError as exc:
        missing = exc.name or "a module"
        raise CliError(f"`pictrace serve` needs the local extras ({missing} is missing): pip install 'pictrace[local]'")
    try:
        data = None if args.ephemeral else str(args.data or serve.default_data_dir())
        options = {"api_key": args.api_key, "allow_private_urls": args.allow_private_urls, "data_dir": data, "workers": args.workers}
        with serve.running(args.host, args.port, **options) as stack:
            note(f"catalog kept in {data}" if data else "catalog kept in memory (--ephemeral)")
            if args.demo:
                answer = demo.run(Client(stack.api_url, api_key=args.api_key), log=note, fresh=stack.fresh)
                if answer is not None:
                    print(results_table(answer), flush=True)
            if args.once:
                print(f"web page: {stack.api_url}/", flush=True)
                return OK
            serve.catch_stop_signals()
            try:
                print(f"web page: {stack.api_url}/", flush=True)
                note("serving; press Ctrl-C to stop")
                serve.wait()
            except KeyboardInterrupt:
                pass  # a stop signal before the wait began
            note("stopped")
    except serve.CannotServe as exc:
        raise CliError(str(exc)) from None
    return OK


def cmd_reindex(args: argparse.Namespace) -> int:
    """Rebuild a catalog's search index in the current format, in a data folder or an S3 bucket."""
    try:
        from pictrace.catalog.catalog import Catalog
        from pictrace.catalog.reindex import reindex
        from pictrace.config import Config
    except ImportError as exc:
        raise CliError(f"`pictrace reindex` needs the engine extras ({exc.name} is missing): pip install 'pictrace[engine]'")
    config = Config.from_env()
    if args.bucket:
        import boto3

        from pictrace.adapters.s3 import S3Store

        store = S3Store(boto3.client("s3"), args.bucket)
    else:
        from pictrace.adapters.folder_store import FolderStore
        from pictrace.local import serve

        folder = Path(args.data or serve.default_data_dir()) / "store"
        if not folder.is_dir():
            raise CliError(f"{folder} holds no catalog (give --data DIR or --bucket NAME)")
        store = FolderStore(str(folder), "")
    report = reindex(Catalog(store, config))
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(
            f"reindexed {report.images} images into {report.partitions_written} partitions; "
            f"removed {report.old_shards_removed} old index files; made {report.thumbnails_made} thumbnails; "
            f"{len(report.damaged)} damaged objects left out"
        )
        for key in report.damaged:
            print(f"  damaged: {key}")
    return OK


def cmd_add(args: argparse.Namespace) -> int:
    sources = _given(lambda: expand(args.items))
    progress = Progress(len(sources), sys.stderr)
    outcomes = add_all(
        client(args), sources, jobs=args.jobs, on_done=lambda o: progress.step(o.source.label), meta=args.meta
    )
    progress.close()
    summary, failed = add_summary(outcomes)
    if args.json:
        dump(add_json(outcomes))
    else:
        print(summary)
    return FAILED if failed else OK


def cmd_search(args: argparse.Namespace) -> int:
    query = _given(lambda: source(args.image))
    answer = client(args).search(query, k=args.k, ranking=args.ranking, mode=args.mode, min_score=args.min_score, filter=args.filter)
    return show_results(answer, args.json)


def cmd_similar(args: argparse.Namespace) -> int:
    answer = client(args).similar(args.id, k=args.k, ranking=args.ranking, min_score=args.min_score, filter=args.filter)
    return show_results(answer, args.json)


def show_results(answer: dict, as_json: bool) -> int:
    """Print a search answer: its JSON, or the table (or why there is none) and a summary on stderr."""
    if as_json:
        dump(answer)
        return OK
    print(results_table(answer) if answer["results"] else no_match(answer))
    counts = answer["counts"]
    batches = counts["batches"]
    note(
        f"{counts['scored_candidates']} of {counts['candidates']} images scored in {batches} "
        f"batch{'' if batches == 1 else 'es'}, {answer['elapsed_ms']:.0f} ms"
    )
    if answer.get("partial"):
        note(f"pictrace: warning: {counts['failed_batches']} scoring batches failed; the results are partial")
    return OK


def cmd_compare(args: argparse.Namespace) -> int:
    a, b = _given(lambda: (image_ref(args.a), image_ref(args.b)))
    answer = client(args).compare(a, b, ranking=args.ranking)
    if args.json:
        dump(answer)
    else:
        print(comparison_text(answer))
    return OK


def cmd_list(args: argparse.Namespace) -> int:
    api = client(args)
    if args.all:
        records = list(api.all_images(filter=args.filter))
        answer = {"images": records, "count": len(records), "total": len(records), "next_cursor": None}
    else:
        answer = api.images(args.limit, filter=args.filter)
    if args.json:
        dump(answer)
        return OK
    print(records_table(answer["images"]))
    if answer.get("next_cursor"):
        note(f"{answer['count']} of {answer['total']} images; --all lists every one")
    return OK


def cmd_get(args: argparse.Namespace) -> int:
    record = client(args).get(args.id)
    if args.json:
        dump(record)
        return OK
    shown = {
        k: _when(v) if k == "added_at" else json.dumps(v, ensure_ascii=False) if isinstance(v, (dict, list)) else v
        for k, v in record.items()
        if v not in ("", None, {})
    }
    width = max(map(len, shown))
    for key, value in shown.items():
        print(f"{key.ljust(width)}  {value}")
    return OK


def cmd_meta(args: argparse.Namespace) -> int:
    """Print an image's meta, or replace it (``--set``) and print the new one."""
    api = client(args)
    record = api.get(args.id) if args.set is None else api.set_meta(args.id, args.set)
    if args.json:
        dump(record)
    else:
        # JSON, so the output can be edited and given back to --set as it is.
        print(json.dumps(record.get("meta", {}), indent=2, ensure_ascii=False))
    if args.set is not None:
        note(f"replaced the meta of {short_id(record['id'])}")
    return OK


def groups_text(groups: Sequence[dict], first: int = 1) -> str:
    """Duplicate groups as blocks: a heading per group, then one line per image."""
    blocks = []
    for n, g in enumerate(groups, first):
        lines = [f"group {n}: {g['size']} images, best pair {g['best_score']:.3f}"]
        lines += [f"  {short_id(i['id'])}  {i.get('name') or '-'}" for i in g["images"]]
        blocks.append("\n".join(lines))
    return "\n".join(blocks)


def cmd_duplicates(args: argparse.Namespace) -> int:
    api = client(args)
    answer = api.duplicates(min_score=args.min_score, limit=args.limit)
    if args.scan or answer["scan"] is None:
        job = api.scan_duplicates()
        note(f"scanning the catalog for duplicates (run {job['run'][:12]})...")
        job = api.wait_for_scan(job["run"], timeout=args.wait)
        if job["state"] == "failed":
            raise CliError(f"the duplicates scan failed: {job.get('message') or job.get('error')}")
        answer = api.duplicates(min_score=args.min_score, limit=args.limit)
    groups = list(answer["groups"])
    cursor = answer.get("next_cursor")
    while args.all and cursor:
        page = api.duplicates(min_score=args.min_score, limit=args.limit, cursor=cursor)
        groups += page["groups"]
        cursor = page.get("next_cursor")
    if args.json:
        dump({**answer, "groups": groups, "count": len(groups), "next_cursor": cursor})
        return OK
    scan = answer["scan"]
    print(groups_text(groups) if groups else f"no duplicates (no group scores at least {answer['min_score']:g})")
    note(f"{len(groups)} of {answer['total_groups']} groups; scan of {scan['images']} images, {_when(scan['finished_at'])}")
    if cursor:
        note("--all lists every group")
    if not scan["complete"]:
        note(f"pictrace: warning: the scan ran out of time after {scan['searched']} of {scan['images']} images")
    return OK


def cmd_export(args: argparse.Namespace) -> int:
    from pictrace.transfer import export_catalog

    return _transfer(args, export_catalog, "exported", "already in the folder")


def cmd_import(args: argparse.Namespace) -> int:
    from pictrace.transfer import import_catalog

    return _transfer(args, import_catalog, "imported", "already in the catalog")


def _transfer(args: argparse.Namespace, run: Callable, verb: str, kept: str) -> int:
    """Run an export or import; one summary line, then one line per failure."""
    from pictrace.transfer import TransferError

    try:
        report = run(client(args), args.dir, jobs=args.jobs)
    except TransferError as exc:
        raise CliError(str(exc)) from None
    except OSError as exc:
        raise CliError(f"{exc.filename or args.dir}: {exc.strerror or exc}") from None
    if args.json:
        dump(report.to_dict())
    else:
        print(f"{verb} {len(report.done)}, {kept} {len(report.kept)}, failed {len(report.failed)}")
        for image_id, reason in report.failed:
            print(f"  failed {image_id}: {reason}")
    return FAILED if report.failed else OK


def cmd_delete(args: argparse.Namespace) -> int:
    api, failed = client(args), 0
    for image_id in args.ids:
        try:
            print(f"deleted {api.delete(image_id)['deleted']}")
        except ApiError as exc:
            error(f"{image_id}: {exc}")
            failed += 1
    return FAILED if failed else OK


def _given(make: Callable[[], T]) -> T:
    """``make()``, with a missing or unreadable file named on the command line as a usage error."""
    try:
        return make()
    except (FileNotFoundError, IsADirectoryError) as exc:
        raise CliError(str(exc), USAGE) from None
    except OSError as exc:
        raise CliError(f"{exc.filename or ''}: {exc.strerror or exc}", USAGE) from None


# --- the parser ------------------------------------------------------------------


class Parser(argparse.ArgumentParser):
    """argparse, with usage errors as one line that points at the help."""

    def error(self, message: str):  # type: ignore[override]
        error(f"{message} (see `{self.prog} --help`)")
        raise SystemExit(USAGE)


def _command(subs, name: str, run: Callable, summary: str, example: str) -> argparse.ArgumentParser:
    sub = subs.add_parser(
        name,
        help=summary,
        description=summary,
        epilog="example:\n" + textwrap.indent(example.strip(), "  "),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub.set_defaults(run=run)
    global_options(sub, argparse.SUPPRESS)
    return sub


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def score(text: str) -> float:
    """A score threshold: a plain number from 0 to 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number from 0 to 1, got {text!r}") from None
    if not 0.0 <= value <= 1.0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be a number from 0 to 1, got {text}")
    return value


def json_object(text: str) -> dict:
    """A JSON object given on the command line (``--meta``, ``--filter``)."""
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        raise argparse.ArgumentTypeError(f"must be a JSON object, got {text[:60]!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"must be a JSON object such as '{{\"tenant\": \"acme\"}}', got {text[:60]!r}")
    return value


FILTER_HELP = (
    "only images whose meta matches: a JSON object of field -> value or [values] "
    "(string equality, fields ANDed, a list is any of)"
)


def global_options(parser: argparse.ArgumentParser, default: object) -> None:
    """Options every command takes, before or after its name.

    The copy on each command defaults to SUPPRESS, so leaving it out there
    keeps what was given before the command.
    """
    parser.add_argument(
        "--api",
        metavar="URL",
        default=default,
        help=f"the API's base URL (default: $PICTRACE_API_URL or {DEFAULT_URL}); "
        "$PICTRACE_API_KEY is sent as X-Api-Key",
    )


def search_options(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("-k", type=positive, help="how many results (the API's default is 5)")
    sub.add_argument(
        "--min-score", type=score, metavar="S", help="leave out results scoring below S, from 0 to 1 (default: none)"
    )
    sub.add_argument("--ranking", choices=("default", "seed"), help="ranking to use (default: default)")
    sub.add_argument("--filter", type=json_object, metavar="JSON", help=FILTER_HELP)
    sub.add_argument("--json", action="store_true", help="print the API's JSON answer (with the images' URLs)")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="pictrace",
        description="Similar-image search: run the local stack, fill the catalog, search it.",
        epilog=EXIT_CODES + "\n\nexample:\n  pictrace serve          # then, in another terminal:\n  pictrace search photo.jpg",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"pictrace {__version__}")
    global_options(parser, None)
    subs = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=Parser)

    serve = _command(
        subs, "serve", cmd_serve,
        "Run the local stack (S3, Lambda, API Gateway) in the foreground, with a demo catalog.",
        "pictrace serve --port 8080\npictrace serve --once        # seed, show the demo search, exit",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    serve.add_argument("--port", type=int, default=8080, help="API port (default: %(default)s)")
    serve.add_argument(
        "--demo", action=argparse.BooleanOptionalAction, default=True,
        help="seed sample photos into an empty catalog and run a demo search (default: on)",
    )
    serve.add_argument(
        "--allow-private-urls", action="store_true", help="let URL adds and searches fetch private and loopback addresses"
    )
    serve.add_argument("--api-key", metavar="KEY", help="require this X-Api-Key on every request")
    serve.add_argument("--once", action="store_true", help="start, seed, run the demo search, print it and exit")
    where = serve.add_mutually_exclusive_group()
    where.add_argument(
        "--data", metavar="DIR", help="keep the catalog in DIR (default: $XDG_DATA_HOME/pictrace, else ~/.local/share/pictrace)"
    )
    where.add_argument("--ephemeral", action="store_true", help="keep the catalog in memory: it is gone when serve stops")
    serve.add_argument(
        "--workers", type=positive, default=4, help="API requests served at once, each in its own process (default: %(default)s)"
    )

    reindex = _command(
        subs, "reindex", cmd_reindex,
        "Rebuild the search index of a catalog in the current format (after an upgrade); "
        "run it while nothing else writes to the catalog.",
        "pictrace reindex                      # the local data folder\npictrace reindex --bucket my-pictrace-bucket",
    )
    where = reindex.add_mutually_exclusive_group()
    where.add_argument("--data", metavar="DIR", help="the local data folder (default: the one `pictrace serve` uses)")
    where.add_argument("--bucket", metavar="NAME", help="the deployed stack's S3 bucket (AWS credentials from the environment)")
    reindex.add_argument("--json", action="store_true", help="print the report as JSON")

    add = _command(
        subs, "add", cmd_add,
        "Add images to the catalog: files, directories (recursively) and URLs of images or web pages.",
        "pictrace add photos/ extra.png https://example.com/gallery.html\n"
        "pictrace add logos/ --meta '{\"tenant\": \"acme\", \"kind\": [\"logo\"]}'",
    )
    add.add_argument("items", nargs="+", metavar="PATH|DIR|URL")
    add.add_argument("-j", "--jobs", type=positive, default=4, help="concurrent uploads (default: %(default)s)")
    add.add_argument(
        "--meta", type=json_object, metavar="JSON",
        help="the images' meta, a JSON object (its strings and lists of strings are what --filter matches)",
    )
    add.add_argument("--json", action="store_true", help="print the added records, duplicates and failures as JSON")

    search = _command(
        subs, "search", cmd_search,
        "Find the catalog images most similar to an image file, '-' (stdin) or a URL.",
        "pictrace search photo.jpg -k 10 --min-score 0.5\npictrace search photo.jpg --mode similar\n"
        "pictrace search https://example.com/photo.jpg --json\n"
        "pictrace search photo.jpg --filter '{\"tenant\": \"acme\"}'",
    )
    search.add_argument("image", metavar="PATH|URL")
    search_options(search)
    search.add_argument(
        "--mode", choices=("default", "similar"),
        help="default: copies of the image (edits, crops, turns); similar: the same kind of thing (looks-like)",
    )

    similar = _command(
        subs, "similar", cmd_similar,
        "Find the catalog images most like one already in it (the image itself is left out).",
        "pictrace similar 3f5a...e9 -k 10 --min-score 0.4",
    )
    similar.add_argument("id", metavar="ID")
    search_options(similar)

    compare = _command(
        subs, "compare", cmd_compare,
        "Compare two images (files, URLs or catalog ids): the three signals, the score, "
        "the transform from B to A and the matched keypoints.",
        "pictrace compare copy.jpg original.jpg\npictrace compare https://example.com/a.jpg 3f5a...e9 --json",
    )
    compare.add_argument("a", metavar="A")
    compare.add_argument("b", metavar="B")
    compare.add_argument("--ranking", choices=("default", "seed"), help="ranking to score with (default: default)")
    compare.add_argument("--json", action="store_true", help="print the API's JSON answer (with every shown pair)")

    lister = _command(
        subs, "list", cmd_list, "List catalog images, in id order.",
        "pictrace list --limit 20\npictrace list --all --json\npictrace list --all --filter '{\"tenant\": \"acme\"}'",
    )
    lister.add_argument("--limit", type=positive, default=50, help="how many (default: %(default)s)")
    lister.add_argument("--all", action="store_true", help="every image, page after page")
    lister.add_argument("--filter", type=json_object, metavar="JSON", help=FILTER_HELP)
    lister.add_argument("--json", action="store_true", help="print the API's JSON answer")

    get = _command(
        subs, "get", cmd_get, "Show one catalog image's record and a link to it.", "pictrace get 3f5a...e9 --json"
    )
    get.add_argument("id")
    get.add_argument("--json", action="store_true", help="print the API's JSON answer")

    meta = _command(
        subs, "meta", cmd_meta,
        "Show one catalog image's meta (a JSON object), or replace the whole of it with --set.",
        "pictrace meta 3f5a...e9\npictrace meta 3f5a...e9 --set '{\"tenant\": \"acme\", \"tags\": [\"logo\"]}'\n"
        "pictrace meta 3f5a...e9 --set '{}'      # no meta at all",
    )
    meta.add_argument("id", metavar="ID")
    meta.add_argument(
        "--set", type=json_object, metavar="JSON",
        help="the new meta, a JSON object that replaces the old one (its strings and lists of strings are what --filter matches)",
    )
    meta.add_argument("--json", action="store_true", help="print the API's JSON answer (the whole record)")

    delete = _command(subs, "delete", cmd_delete, "Delete catalog images by id.", "pictrace delete 3f5a...e9 77b0...1c")
    delete.add_argument("ids", nargs="+", metavar="ID")

    export = _command(
        subs, "export", cmd_export,
        "Copy the whole catalog (originals and their records: names, source URLs, meta) into a folder, "
        "through the API; running it again into the same folder resumes it.",
        "pictrace export backup/\npictrace --api https://abc.execute-api.eu-west-1.amazonaws.com/v1 export backup/",
    )
    export.add_argument("dir", metavar="DIR", help="an empty folder (created if needed) or an earlier export")
    export.add_argument("-j", "--jobs", type=positive, default=4, help="concurrent downloads (default: %(default)s)")
    export.add_argument("--json", action="store_true", help="print the ids exported, kept and failed as JSON")

    importer = _command(
        subs, "import", cmd_import,
        "Add every image of an export folder to the catalog, through the API; the folder is checked "
        "first, images already there are kept, and running it again adds only what is missing.",
        "pictrace import backup/\npictrace --api http://127.0.0.1:8080 import backup/ --json",
    )
    importer.add_argument("dir", metavar="DIR", help="a folder written by pictrace export")
    importer.add_argument("-j", "--jobs", type=positive, default=4, help="concurrent adds (default: %(default)s)")
    importer.add_argument("--json", action="store_true", help="print the ids imported, kept and failed as JSON")

    dupes = _command(
        subs, "duplicates", cmd_duplicates,
        "Show groups of near-duplicate images across the catalog, from the last scan "
        "(a job over the whole index; the first time, and with --scan, one is run and waited for).",
        "pictrace duplicates --min-score 0.8\npictrace duplicates --scan --all --json",
    )
    dupes.add_argument(
        "--min-score", type=score, metavar="S", help="images scoring at least S together, from 0.5 to 1 (default: 0.8)"
    )
    dupes.add_argument("--limit", type=positive, default=20, help="groups per page (default: %(default)s, at most 100)")
    dupes.add_argument("--all", action="store_true", help="every group, page after page")
    dupes.add_argument("--scan", action="store_true", help="scan the catalog again first and wait for it")
    dupes.add_argument("--wait", type=positive, default=900, metavar="SECONDS", help="how long to wait for a scan (default: %(default)s)")
    dupes.add_argument("--json", action="store_true", help="print the API's JSON answer (with every pair's score and the links)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit code (never raises for expected failures)."""
    try:
        code = _dispatch(argv)
        sys.stdout.flush()  # a closed pipe shows here, not at exit
        return code
    except BrokenPipeError:
        # The reader has what it wanted (``| head``); say nothing more, write nothing more.
        _silence_stdout()
        return OK


def _dispatch(argv: Sequence[str] | None) -> int:
    """Parse and run, with every expected failure turned into its exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        return args.run(args)
    except SystemExit as exc:  # --help, --version and usage errors
        return exc.code if isinstance(exc.code, int) else (OK if exc.code is None else USAGE)
    except CliError as exc:
        error(str(exc))
        return exc.code
    except Unreachable as exc:
        error(f"cannot reach the PicTrace API at {exc.url} (is `pictrace serve` running?)")
        return UNREACHABLE
    except ApiError as exc:
        hint = " (set PICTRACE_API_KEY)" if exc.status == 403 else ""
        error(f"{exc}{hint}")
        return FAILED
    except ClientError as exc:
        error(str(exc))
        return FAILED
    except KeyboardInterrupt:
        error("interrupted")
        return 130


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's last flush does not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, io.UnsupportedOperation):
        pass  # stdout is not a file (a test's capture): nothing will flush it
