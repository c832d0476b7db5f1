"""PicTrace accuracy and speed benchmark.

    python -m benchmarks.run            # everything (about 30 min on 2 cores, first run longer)
    python -m benchmarks.run --quick    # a small subset (a few minutes)

Writes benchmarks/results.json and docs/benchmarks.md. Downloads and computed
features are cached under benchmarks/.cache/ (keyed by the engine's source
hash, so a changed engine recomputes its features).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from statistics import median

import numpy as np

from benchmarks import engine, evaluate, metrics, report, seed_baseline, timing
from benchmarks.data import CACHE_DIR, Catalog, colourway_key, decode_bgr, is_query_source, load_catalog
from benchmarks.jobs import DISTRACTOR_CHUNK, FeatureJobs, query_bytes, store_for
from benchmarks.store import Batch
from benchmarks.transforms import FAMILIES

SEED_TIMING_BUDGET_S = 45
ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results.json"
DOC = ROOT / "docs" / "benchmarks.md"


@dataclass(frozen=True)
class Plan:
    """How much of everything a run does."""

    name: str
    sources: int | None  # query sources used (None: all)
    sizes: tuple[int, ...]  # padded catalog sizes
    seed_budget_s: dict  # catalog label -> seconds (None: every query)
    original_budget_s: float
    timing_queries: int
    original_pairs: int
    ingest_images: int
    memory_batch: int


FULL = Plan("full", None, (1000, 10000), {"base": None, "1k": 150, "10k": 210}, 330, 40, 12, 100, 5000)
QUICK = Plan("quick", 8, (1000,), {"base": 45, "1k": 30}, 60, 10, 5, 24, 1000)


def label(size: int | None) -> str:
    """'base' for the real images only, else '1k' / '10k'."""
    return "base" if size is None else f"{size // 1000}k"


def log(msg: str) -> None:
    """Progress line with wall-clock time."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def query_order(n_sources: int, seed: int) -> list[tuple[int, str]]:
    """(source index, family) pairs; each round has every family once, each on a different source.

    A prefix of this order (what a time budget leaves) stays balanced across
    families and spread over sources.
    """
    perm = np.random.default_rng([seed, 11]).permutation(n_sources)
    fams = list(FAMILIES)
    return [(int(perm[(r + j) % n_sources]), f) for r in range(n_sources) for j, f in enumerate(fams)]


class Benchmark:
    """One run: data, features, accuracy, speed, report."""

    def __init__(self, plan: Plan, seed: int):
        self.plan, self.seed = plan, seed
        self.results: dict = {"mode": plan.name, "seed": seed, "command": "python -m benchmarks.run" + (" --quick" if plan.name == "quick" else "")}

    # ---- data -----------------------------------------------------------
    def load(self) -> None:
        log("loading real images")
        self.catalog: Catalog = load_catalog()
        all_sources = self.catalog.query_sources()
        chosen = all_sources if self.plan.sources is None else self._spread(all_sources, self.plan.sources)
        self.sources = chosen
        self.all_sources = all_sources
        self.relevant = {
            s.name: {n for n, g in self.catalog.group_of.items() if g == self.catalog.group_of[s.name]} for s in chosen
        }
        self.order = query_order(len(chosen), self.seed)
        self.results["data"] = {
            "catalog_images": len(self.catalog.images),
            "per_source": self.catalog.per_source(),
            "skipped_files": dict(self.catalog.skipped),
            "duplicates_removed": self.catalog.duplicates_removed,
            "query_sources": len(chosen),
            "query_sources_available": len(all_sources),
            "not_query_sources": [
                {"name": im.name, "size": f"{im.width}x{im.height}", "gray_std": round(im.gray_std, 1)}
                for im in self.catalog.images if not is_query_source(im)
            ],
            "same_picture_groups": self.catalog.groups(),
            "families": list(FAMILIES),
            "queries": len(self.order),
        }
        log(f"  {len(self.catalog.images)} catalog images {self.catalog.per_source()}, "
            f"{len(chosen)} query sources x {len(FAMILIES)} families = {len(self.order)} queries")

    @staticmethod
    def _spread(items: list, n: int) -> list:
        """n items evenly spread over the list (so a quick run still mixes sources)."""
        idx = np.linspace(0, len(items) - 1, n).round().astype(int)
        return [items[i] for i in sorted(set(idx))]

    def features(self) -> None:
        self.store = store_for(CACHE_DIR)
        self.jobs = FeatureJobs(self.store, self.all_sources, self.seed, log=log)
        log("features (cached under benchmarks/.cache/features)")
        self.cat_batch = self.jobs.catalog(self.catalog.images)
        src_index = [self.all_sources.index(s) for s in self.sources]
        qb = self.jobs.queries(src_index)
        self.query_blobs = dict(zip(qb.names, qb.blobs))
        self.query_extract_s = qb.seconds
        need = max(self.plan.sizes + (self.plan.memory_batch,)) - len(self.catalog.images)
        self.distractors = self.jobs.distractors(max(0, need))
        self.jobs.close()

    def parts(self, size: int | None) -> list[tuple[str, int]]:
        """Cached batches (key, count) making up a catalog of ``size`` (None: real images only)."""
        out = [(self.jobs.catalog_key(self.catalog.images), len(self.cat_batch))]
        if size is not None:
            remaining = size - len(self.cat_batch)
            for start in range(0, remaining, DISTRACTOR_CHUNK):
                out.append((self.jobs.distractor_key(start), min(DISTRACTOR_CHUNK, remaining - start)))
        return out

    # ---- accuracy -------------------------------------------------------
    def _answers(self, raw: list) -> list[metrics.Answer]:
        out = []
        for qname, hits, secs, error in raw:
            family, source = qname.split("|", 1)
            names = [h[0] for h in hits]
            top = hits[0][1] if hits else float("nan")
            out.append(metrics.make_answer(family, source, names, top, self.relevant[source], secs, error))
        return out

    def _ordered_query_names(self) -> list[str]:
        return [f"{f}|{self.sources[i].name}" for i, f in self.order]

    def accuracy(self) -> None:
        self.answers: dict[str, dict[str, list[metrics.Answer]]] = {}
        names = self._ordered_query_names()
        blobs = [self.query_blobs[n] for n in names]
        for size in (None, *self.plan.sizes):
            lab = label(size)
            parts = self.parts(size)
            n = sum(c for _, c in parts)
            log(f"accuracy on the {lab} catalog ({n} images)")
            self.results.setdefault("catalog_sizes", {})[lab] = n
            pool = evaluate.engine_pool(self.store.root, parts)
            try:
                self.answers[lab] = {}
                for ranking in engine.RANKINGS:
                    budget = None if ranking == "default" else self.plan.seed_budget_s.get(lab)
                    t = time.perf_counter()
                    raw = evaluate.run_budgeted(pool, evaluate.answer_engine, evaluate.engine_tasks(names, blobs, ranking),
                                                budget, log=log, label=f"{lab}/{ranking}")
                    ans = self._answers(raw)
                    self.answers[lab][ranking] = ans
                    s = metrics.summary(ans)
                    log(f"  {ranking}: {s['n']} queries in {time.perf_counter() - t:.0f} s, "
                        f"recall@1 {s['recall@1']:.3f}, recall@5 {s['recall@5']:.3f}, mAP@5 {s['map@5']:.3f}")
            finally:
                pool.close()
                pool.join()
        self.original_accuracy()

    def original_accuracy(self) -> None:
        log(f"original per-pair pipeline on the base catalog (budget {self.plan.original_budget_s:.0f} s)")
        # The accuracy run computes SSIM with OpenCV; record how far that is from scikit-image.
        self.results["original_box_ssim_max_abs_diff"] = seed_baseline.ssim_disagreement(self._original_pairs(4))
        pool = evaluate.baseline_pool(self.catalog.images, self.sources, self.seed)
        try:
            t = time.perf_counter()
            raw = evaluate.run_budgeted(pool, evaluate.answer_baseline, self.order, self.plan.original_budget_s,
                                        log=log, label="original")
        finally:
            pool.close()
            pool.join()
        ans = self._answers(raw)
        self.answers["base"]["original"] = ans
        s = metrics.summary(ans)
        log(f"  original: {s['n']} queries in {time.perf_counter() - t:.0f} s, recall@1 {s['recall@1']:.3f}")

    # ---- speed ----------------------------------------------------------
    def speed(self) -> None:
        p = self.plan
        names = self._ordered_query_names()[: p.timing_queries]
        blobs = [self.query_blobs[n] for n in names]
        speed: dict = {}
        log("timing: original per-pair pipeline")
        pairs = self._original_pairs(p.original_pairs)
        loads = [timing.load_average()]
        per_pair = timing.original_per_pair(pairs)
        speed["original_per_pair"] = per_pair.stats()
        speed["query_feature_extraction"] = timing.stats(self.query_extract_s)
        qbytes = self._timing_query_bytes(p.timing_queries)
        for size in p.sizes:
            lab = label(size)
            log(f"timing on the {lab} catalog")
            parts = self.parts(size)
            batch = self._load_parts(parts)
            index, _ = engine.build_index(batch.blobs, batch.names)
            n = len(index)
            entry: dict = {"catalog": n}
            for ranking in engine.RANKINGS:
                budget = None if ranking == "default" else SEED_TIMING_BUDGET_S
                loads.append(timing.load_average())
                clock = timing.search_seconds(index, blobs, ranking, budget)
                entry[f"search_{ranking}"] = clock.stats()
                entry[f"per_candidate_{ranking}_s"] = median(clock.wall) / n
                entry[f"per_candidate_{ranking}_cpu_s"] = median(clock.cpu) / n
            entry["latency_end_to_end"] = timing.latency_seconds(index, qbytes).stats()
            loads.append(timing.load_average())
            speed[lab] = entry
            del index, batch
        largest = label(p.sizes[-1])
        per_cand = speed[largest]["per_candidate_default_s"]
        speed["per_candidate_speedup_vs_original"] = median(per_pair.wall) / per_cand
        speed["per_candidate_speedup_vs_original_cpu"] = median(per_pair.cpu) / speed[largest]["per_candidate_default_cpu_s"]
        speed["load_average_samples"] = loads
        speed["per_candidate_speedup_basis"] = largest
        self.results["speed"] = speed
        log(f"  per pair original {median(per_pair.wall) * 1e3:.0f} ms; per candidate ours {per_cand * 1e6:.1f} us "
            f"({speed['per_candidate_speedup_vs_original']:.0f}x)")

    def _load_parts(self, parts: list[tuple[str, int]]) -> Batch:
        out = Batch([], [], [])
        for key, take in parts:
            b = self.store.load(key)
            out.extend(Batch(b.names[:take], b.blobs[:take], b.seconds[:take]))
        return out

    def _original_pairs(self, n: int) -> list[tuple[bytes, bytes]]:
        """(query bytes, catalog image bytes) pairs spread over families and catalog images."""
        rng = np.random.default_rng([self.seed, 5])
        qs = self._timing_query_bytes(n)
        cats = [self.catalog.images[int(i)].data for i in rng.choice(len(self.catalog.images), size=n)]
        return list(zip(qs, cats))

    def _timing_query_bytes(self, n: int) -> list[bytes]:
        out, cache = [], {}
        for i, fam in self.order[:n]:
            if i not in cache:
                cache.clear()
                cache[i] = decode_bgr(self.sources[i].data)
            out.append(query_bytes(self.sources, i, fam, self.seed, cache[i]))
        return out

    def ingest(self) -> None:
        log(f"ingest: {self.plan.ingest_images} JPEGs of 2-5 MP on 2 processes")
        images = timing.ingest_images(self.all_sources, self.plan.ingest_images, self.seed)
        self.results["ingest"] = timing.ingest_rate(images)
        log(f"  {self.results['ingest']['images_per_s']:.1f} images/s")

    def memory(self) -> None:
        n = self.plan.memory_batch
        log(f"memory: scoring a {n}-image batch in a fresh process")
        parts = self.parts(n)
        batch = self._load_parts(parts)
        root = CACHE_DIR / "memory" / self.store.root.name / str(n)
        first_query = self.query_blobs[self._ordered_query_names()[0]]
        timing.write_memory_fixture(root, batch, first_query)
        mem = {}
        for mode, ranking in (("partition", "default"), ("partition", "seed"), ("localindex", "default")):
            mem[f"{mode}_{ranking}"] = timing.memory_probe(root, mode, ranking)
        self.results["memory"] = mem
        self.results["storage"] = timing.storage(self.cat_batch)
        d = self.distractors
        self.results["storage_distractors"] = timing.storage(Batch(d.names[:1000], d.blobs[:1000], d.seconds[:1000]))
        self.results["storage"]["partition_bytes_per_image"] = (root / "partition.bin").stat().st_size / len(batch)
        self.results["storage_distractors"]["extract_seconds_median"] = median(d.seconds) if d.seconds else None
        log(f"  partition scoring peak RSS {mem['partition_default']['peak_rss_mb']:.0f} MiB")

    # ---- wrap-up ----------------------------------------------------------
    def summarise(self) -> None:
        acc: dict = {}
        for lab, per_rank in self.answers.items():
            acc[lab] = {r: metrics.by_family(a) for r, a in per_rank.items()}
        self.results["accuracy"] = acc
        orig = self.answers["base"]["original"]
        keys = {(a.family, a.source) for a in orig}
        self.results["same_queries_as_original"] = {
            r: metrics.by_family(metrics.restrict(self.answers["base"][r], keys)) for r in engine.RANKINGS
        } | {"original": metrics.by_family(orig)}
        self.results["same_queries_as_seed"] = {}
        for lab, per_rank in self.answers.items():
            keys = {(a.family, a.source) for a in per_rank["seed"]}
            self.results["same_queries_as_seed"][lab] = {
                r: metrics.by_family(metrics.restrict(per_rank[r], keys)) for r in engine.RANKINGS
            }
        self.results["failures"] = self._failures()
        self.results["targets"] = report.targets(self.results)
        self.results["machine"] = timing.machine_info()

    def _failures(self) -> dict:
        """Queries whose top-1 is wrong, per catalog and ranking, with what came first instead."""
        out: dict = {}
        for lab, per_rank in self.answers.items():
            for ranking, answers in per_rank.items():
                rows = []
                for a in answers:
                    if a.rank == 1:
                        continue
                    top = a.hits[0] if a.hits else "(nothing)"
                    rows.append({
                        "family": a.family, "source": a.source, "top1": top, "top1_score": a.top_score,
                        "rank_of_original": a.rank, "error": a.error,
                        "top1_is_colourway_sibling": bool(a.hits) and colourway_key(top) == colourway_key(a.source),
                    })
                out[f"{lab}/{ranking}"] = rows
        return out

    def write(self, started: float) -> None:
        self.results["duration_s"] = round(time.time() - started, 1)
        self.results["finished"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
        RESULTS.write_text(json.dumps(self.results, indent=1, default=float) + "\n")
        DOC.parent.mkdir(parents=True, exist_ok=True)
        DOC.write_text(report.render(self.results))
        log(f"wrote {RESULTS.relative_to(ROOT)} and {DOC.relative_to(ROOT)}")


def snapshot_engine(cache: Path = CACHE_DIR) -> Path:
    """Freeze the engine under test: copy the pictrace package once and import it from the copy.

    The source tree may change while a long run is going; worker processes
    (spawned, so they import afresh) and the memory probe then still load the
    engine the features were computed with.
    """
    live = Path(engine.pictrace.__file__).resolve().parent
    dest = cache / "engine" / engine.fingerprint()
    if not (dest / "pictrace").exists():
        tmp = dest / "pictrace.partial"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(live, tmp, ignore=shutil.ignore_patterns("__pycache__"))
        tmp.rename(dest / "pictrace")
    sys.path.insert(0, str(dest))
    return dest


def engine_version() -> dict:
    """Engine fingerprint and the repository commit it was taken from."""
    def git(*args: str) -> str:
        proc = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
        return proc.stdout.strip() if proc.returncode == 0 else ""

    dirty = git("status", "--porcelain", "--", "pictrace")
    return {"fingerprint": engine.fingerprint(), "git_head": git("rev-parse", "--short", "HEAD"),
            "pictrace_uncommitted_changes": bool(dirty)}


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small subset, a few minutes")
    parser.add_argument("--seed", type=int, default=0, help="seed for queries and distractors")
    args = parser.parse_args(argv)
    started = time.time()
    version = engine_version()
    timing.ENGINE_PATH = snapshot_engine()
    bench = Benchmark(QUICK if args.quick else FULL, args.seed)
    bench.results["engine"] = version
    bench.load()
    bench.features()
    bench.accuracy()
    bench.speed()
    bench.ingest()
    bench.memory()
    bench.summarise()
    bench.write(started)
    print(report.console_summary(bench.results))


if __name__ == "__main__":
    main()
