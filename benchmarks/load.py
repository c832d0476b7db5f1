"""Load test of the HTTP API: concurrent clients sending mixed searches and adds.

    python -m benchmarks.load                          # own local stack, 16 clients, 60 s
    python -m benchmarks.load --clients 8 --duration 20 --seed-images 100
    python -m benchmarks.load --baseline 30            # first 30 s of one client, for the speed-up
    python -m benchmarks.load --api http://127.0.0.1:8080 --api-key KEY

Without ``--api`` it starts an embedded local stack as ``pictrace serve``
runs it (a folder store in a temporary data folder, or moto's in-memory S3
with ``--ephemeral``; the API function in ``--workers`` processes; packing
every 30 s) on 127.0.0.1 and stops it at the end.  Only loopback targets are
accepted.

Throughout the timed phase a prober sends ``GET /health`` every 100 ms and
its latencies are reported apart (``health``): the health check must stay
quick however busy the API is.  ``--baseline SECONDS`` first runs one client
alone, and the summary gives the throughput of the full run over that
(``speedup``).

It seeds the catalog with ``--seed-images`` distinct images, then runs
``--clients`` threads for ``--duration`` seconds (or until ``--max-requests``
requests were sent), each picking a search (``--search-share``, 80% by
default) or an add at random.  Searches send an edited copy (crop, mirror,
colour shift) of a seeded image; adds send images never sent before.  Every
request has a timeout, so the run ends on its own.

Prints a summary and writes JSON (``--out``): requests, errors by status,
p50/p95/p99 latency and throughput per kind.  Requests still in flight at
the deadline are waited for and counted; ``elapsed_s`` includes them.  Figures from the local stack
measure this machine and the emulation (worker processes sharing its cores,
a local folder or moto as S3), not AWS.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import platform
import random
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "benchmarks" / "load-results.json"
HEALTH_EVERY = 0.1  # seconds between health probes
PHOTOS = ("astronaut", "camera", "cat", "coffee", "coins", "colorwheel", "grass", "gravel",
          "hubble_deep_field", "immunohistochemistry", "moon", "page", "retina", "rocket", "text", "brick")


# --- images ------------------------------------------------------------------------------


def _photos() -> list[np.ndarray]:
    """The scikit-image sample photographs (bundled, no download) as BGR uint8."""
    from skimage import data

    out = []
    for name in PHOTOS:
        img = getattr(data, name)()
        img = img.astype(np.uint8) * 255 if img.dtype == bool else img
        out.append(cv2.cvtColor(img, cv2.COLOR_GRAY2BGR) if img.ndim == 2 else cv2.cvtColor(img[..., :3], cv2.COLOR_RGB2BGR))
    return out


def _jpeg(img: np.ndarray) -> bytes:
    return cv2.imencode(".jpg", np.ascontiguousarray(img), [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes()


def distinct_images(count: int, rng: np.random.Generator, photos: list[np.ndarray]) -> list[np.ndarray]:
    """``count`` different windows of the photographs, 128..320 px a side, colour-shifted."""
    out = []
    for i in range(count):
        src = photos[i % len(photos)]
        w, h = (int(v) for v in rng.integers(128, 321, 2))
        cw, ch = min(src.shape[1], int(w * rng.uniform(1, 2))), min(src.shape[0], int(h * rng.uniform(1, 2)))
        x, y = int(rng.integers(0, src.shape[1] - cw + 1)), int(rng.integers(0, src.shape[0] - ch + 1))
        img = cv2.resize(src[y : y + ch, x : x + cw], (w, h), interpolation=cv2.INTER_AREA)
        out.append(np.clip(img.astype(np.int16) + rng.integers(-30, 31, 3), 0, 255).astype(np.uint8))
    return out


def edited(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A query made from a catalog image: a crop, maybe mirrored, maybe brightened."""
    h, w = img.shape[:2]
    dy, dx = int(h * rng.uniform(0, 0.15)), int(w * rng.uniform(0, 0.15))
    out = img[dy : h - int(h * rng.uniform(0, 0.15)), dx : w - int(w * rng.uniform(0, 0.15))]
    if rng.random() < 0.5:
        out = out[:, ::-1]
    return np.clip(out.astype(np.int16) + int(rng.integers(-25, 26)), 0, 255).astype(np.uint8)


# --- requests ----------------------------------------------------------------------------


@dataclass
class Sample:
    kind: str
    outcome: str  # the HTTP status, or "timeout" / "connection" for no answer
    seconds: float


@dataclass
class Recorder:
    samples: list[Sample] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, sample: Sample) -> None:
        with self.lock:
            self.samples.append(sample)


def post(url: str, data: bytes, api_key: str | None, timeout: float) -> str:
    """POST an image; the outcome as a string (status code, "timeout" or "connection")."""
    headers = {"Content-Type": "image/jpeg"}
    if api_key:
        headers["X-Api-Key"] = api_key
    req = urllib.request.Request(url, data=data, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            resp.read()
            return str(resp.status)
    except urllib.error.HTTPError as err:
        err.read()
        return str(err.code)
    except TimeoutError:
        return "timeout"
    except (urllib.error.URLError, ConnectionError) as err:
        return "timeout" if isinstance(getattr(err, "reason", None), TimeoutError) else "connection"


def get(url: str, api_key: str | None, timeout: float) -> str:
    """GET ``url``; the outcome as :func:`post` gives it."""
    req = urllib.request.Request(url, headers={"X-Api-Key": api_key} if api_key else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            resp.read()
            return str(resp.status)
    except urllib.error.HTTPError as err:
        err.read()
        return str(err.code)
    except TimeoutError:
        return "timeout"
    except (urllib.error.URLError, ConnectionError):
        return "connection"


def check_loopback(url: str) -> None:
    """Refuse any target that is not a loopback address: this tool must not load anything else."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return
    try:
        if ipaddress.ip_address(host).is_loopback:
            return
    except ValueError:
        pass
    raise SystemExit(f"--api must be a loopback URL (127.0.0.0/8, ::1 or localhost), not {url!r}")


# --- the run -----------------------------------------------------------------------------


def seed(api: str, images: list[bytes], clients: int, api_key: str | None, timeout: float) -> dict:
    started = time.perf_counter()
    outcomes: list[str] = []
    lock = threading.Lock()
    queue = list(images)

    def worker() -> None:
        while True:
            with lock:
                if not queue:
                    return
                data = queue.pop()
            outcome = post(api + "/images", data, api_key, timeout)
            with lock:
                outcomes.append(outcome)

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ok = sum(o in ("200", "201") for o in outcomes)
    if ok < len(images):
        raise SystemExit(f"seeding failed: {len(images) - ok} of {len(images)} adds refused ({sorted(set(outcomes))})")
    return {"images": len(images), "seconds": round(time.perf_counter() - started, 2)}


def run(
    api: str, queries: list[bytes], fresh, args: argparse.Namespace, clients: int, duration: float
) -> tuple[Recorder, Recorder, float]:
    """A timed phase: ``clients`` threads until the deadline or the request budget, and the health prober.

    ``fresh`` is an iterator of images never sent, shared between phases.
    Returns the requests, the health probes and the elapsed seconds.
    """
    recorder, health = Recorder(), Recorder()
    budget = threading.Semaphore(args.max_requests)
    lock = threading.Lock()
    started = time.perf_counter()
    deadline = started + duration
    done = threading.Event()

    def prober() -> None:
        while not done.wait(HEALTH_EVERY):
            t0 = time.perf_counter()
            outcome = get(api + "/health", args.api_key, args.timeout)
            health.add(Sample("health", outcome, time.perf_counter() - t0))

    def worker(index: int) -> None:
        rng = random.Random(args.seed * 1000 + index)
        while time.perf_counter() < deadline and budget.acquire(blocking=False):
            if rng.random() < args.search_share:
                kind, path, data = "search", f"/search?k={args.k}", rng.choice(queries)
            else:
                with lock:
                    data = next(fresh, None)
                if data is None:  # out of new images: the budget below makes this rare
                    continue
                kind, path = "add", "/images"
            t0 = time.perf_counter()
            outcome = post(api + path, data, args.api_key, args.timeout)
            recorder.add(Sample(kind, outcome, time.perf_counter() - t0))

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(clients)]
    probe = threading.Thread(target=prober, daemon=True)
    probe.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=duration + args.timeout + 30)
    elapsed = time.perf_counter() - started
    done.set()
    probe.join(timeout=args.timeout + 5)
    return recorder, health, elapsed


def health_summary(health: Recorder) -> dict:
    ok = [s.seconds * 1000 for s in health.samples if s.outcome == "200"]
    return {
        "probes": len(health.samples),
        "errors": len(health.samples) - len(ok),
        **{f"p{q}_ms": (round(float(np.percentile(ok, q)), 1) if ok else None) for q in (50, 95, 99)},
        "max_ms": round(max(ok), 1) if ok else None,
    }


def summarise(recorder: Recorder, elapsed: float) -> dict:
    samples = list(recorder.samples)
    errors: dict[str, int] = {}
    for s in samples:
        if not s.outcome.startswith("2"):
            errors[s.outcome] = errors.get(s.outcome, 0) + 1
    kinds = {}
    for kind in ("search", "add"):
        mine = [s for s in samples if s.kind == kind]
        ok = [s.seconds * 1000 for s in mine if s.outcome.startswith("2")]
        kinds[kind] = {
            "requests": len(mine),
            "ok": len(ok),
            "errors": len(mine) - len(ok),
            "throughput_per_s": round(len(ok) / elapsed, 2),
            **{f"p{q}_ms": (round(float(np.percentile(ok, q)), 1) if ok else None) for q in (50, 95, 99)},
            "mean_ms": round(float(np.mean(ok)), 1) if ok else None,
            "max_ms": round(max(ok), 1) if ok else None,
        }
    return {
        "requests": len(samples),
        "ok": sum(k["ok"] for k in kinds.values()),
        "errors_by_status": dict(sorted(errors.items())),
        "elapsed_s": round(elapsed, 2),
        "throughput_per_s": round(sum(k["ok"] for k in kinds.values()) / elapsed, 2),
        "by_kind": kinds,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.load", description=__doc__.split("\n\n")[0])
    p.add_argument("--api", help="target an API already running on loopback (default: start a local stack)")
    p.add_argument("--api-key", help="X-Api-Key to send")
    p.add_argument("--clients", type=int, default=16, help="concurrent clients (default 16)")
    p.add_argument("--baseline", type=float, default=0.0, metavar="SECONDS",
                   help="first run one client for this long, to report the speed-up (default: no baseline)")
    p.add_argument("--workers", type=int, default=4, help="API worker processes of the own stack (default 4)")
    p.add_argument("--ephemeral", action="store_true", help="own stack on moto's in-memory S3 instead of a data folder")
    p.add_argument("--duration", type=float, default=60.0, help="seconds of load (default 60)")
    p.add_argument("--max-requests", type=int, default=20_000, help="stop after this many requests (default 20000)")
    p.add_argument("--seed-images", type=int, default=200, help="catalog images added before the run (default 200)")
    p.add_argument("--search-share", type=float, default=0.8, help="share of searches (default 0.8)")
    p.add_argument("--k", type=int, default=5, help="results per search (default 5)")
    p.add_argument("--timeout", type=float, default=60.0, help="per-request timeout in seconds (default 60)")
    p.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"JSON output (default {DEFAULT_OUT.relative_to(ROOT)})")
    args = p.parse_args(argv)
    if args.clients < 1 or args.duration <= 0 or args.max_requests < 1 or args.seed_images < 1:
        p.error("--clients, --duration, --max-requests and --seed-images must be positive")
    if not 0 <= args.search_share <= 1:
        p.error("--search-share must be between 0 and 1")
    if args.api:
        check_loopback(args.api)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    rng = np.random.default_rng(args.seed)
    photos = _photos()
    # Enough new images for every add the request budget could ask for, capped
    # by what this many clients can plausibly send in the time.
    adds = min(args.max_requests, int((args.clients * args.duration + args.baseline) * 2 * (1 - args.search_share)) + 10)
    catalog = distinct_images(args.seed_images, rng, photos)
    seeded = [_jpeg(img) for img in catalog]
    queries = [_jpeg(edited(catalog[i % len(catalog)], rng)) for i in range(min(200, 2 * len(catalog)))]
    additions = [_jpeg(img) for img in distinct_images(adds, np.random.default_rng(args.seed + 7919), photos)]

    stack, data = None, None
    if args.api:
        api = args.api.rstrip("/")
    else:
        import tempfile

        from pictrace.local.stack import LocalStack

        data = None if args.ephemeral else tempfile.TemporaryDirectory(prefix="pictrace-load-")
        stack = LocalStack(
            port=0, poll_interval=3600, pack_interval=30.0, api_key=args.api_key, workers=args.workers,
            data_dir=None if data is None else data.name,
        ).start()
        api = stack.api_url
    fresh = iter(additions)
    baseline = None
    try:
        print(f"seeding {len(seeded)} images into {api} ...", flush=True)
        seeding = seed(api, seeded, args.clients, args.api_key, args.timeout)
        if args.baseline:
            print(f"baseline: 1 client for {args.baseline:g} s ...", flush=True)
            rec, probes, took = run(api, queries, fresh, args, 1, args.baseline)
            baseline = {**summarise(rec, took), "health": health_summary(probes)}
        print(f"running {args.clients} clients for {args.duration:g} s ({args.search_share:.0%} searches) ...", flush=True)
        started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        recorder, health, elapsed = run(api, queries, fresh, args, args.clients, args.duration)
    finally:
        if stack is not None:
            stack.stop()
        if data is not None:
            data.cleanup()

    result = {
        "config": {
            "api": api if stack is None else ("local stack, moto S3" if data is None else "local stack, folder store"),
            "workers": args.workers if stack is not None else None,
            "clients": args.clients,
            "duration_s": args.duration,
            "max_requests": args.max_requests,
            "search_share": args.search_share,
            "k": args.k,
            "timeout_s": args.timeout,
            "seed": args.seed,
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
            "started": started,
        },
        "seed": seeding,
        **summarise(recorder, elapsed),
        "health": health_summary(health),
    }
    if baseline is not None:
        result["baseline"] = baseline
        result["speedup"] = round(result["throughput_per_s"] / baseline["throughput_per_s"], 2) if baseline["throughput_per_s"] else None
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print_summary(result, args.out)
    return 0


def print_summary(result: dict, out: Path) -> None:
    print(f"\n{result['requests']} requests in {result['elapsed_s']} s, {result['ok']} ok, "
          f"{result['throughput_per_s']} ok/s; errors by status: {result['errors_by_status'] or 'none'}")
    print(f"{'kind':8} {'requests':>8} {'ok':>6} {'errors':>6} {'ok/s':>7} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}")
    for kind, k in result["by_kind"].items():
        cells = [k[f"p{q}_ms"] for q in (50, 95, 99)]
        shown = " ".join(f"{c:>8}" if c is not None else f"{'-':>8}" for c in cells)
        print(f"{kind:8} {k['requests']:>8} {k['ok']:>6} {k['errors']:>6} {k['throughput_per_s']:>7} {shown}")
    h = result["health"]
    print(f"GET /health every {HEALTH_EVERY:g} s: {h['probes']} probes, {h['errors']} errors, "
          f"p50 {h['p50_ms']} ms, p95 {h['p95_ms']} ms, max {h['max_ms']} ms")
    if "baseline" in result:
        print(f"one client alone: {result['baseline']['throughput_per_s']} ok/s; speed-up {result['speedup']}x")
    print(f"written to {out}")


if __name__ == "__main__":
    sys.exit(main())
