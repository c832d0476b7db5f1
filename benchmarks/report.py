"""Turning results.json into the targets verdicts and docs/benchmarks.md."""

from __future__ import annotations

SPEEDUP_TARGET = 1000
SEARCH_TARGET_S = 1.0
RECALL_TARGET = 0.95
INGEST_TARGET = 20.0
MEMORY_TARGET_MB = 1024
MAX_FAILURE_ROWS = 25


def _largest(results: dict) -> str:
    """Label of the largest padded catalog in the run."""
    return max((k for k in results["accuracy"] if k != "base"), key=lambda k: results["catalog_sizes"][k])


def targets(results: dict) -> list[dict]:
    """The product's targets with measured values and PASS/FAIL."""
    big = _largest(results)
    speed = results["speed"]
    out = []
    x = speed["per_candidate_speedup_vs_original"]
    out.append({
        "target": f"per-candidate scoring >= {SPEEDUP_TARGET}x cheaper than the original per pair",
        "measured": f"{x:,.0f}x wall (original {speed['original_per_pair']['median_s'] * 1e3:.0f} ms/pair; "
                    f"ours {speed[big]['per_candidate_default_s'] * 1e6:.1f} us/candidate at {big}); "
                    f"{speed['per_candidate_speedup_vs_original_cpu']:,.0f}x in CPU time",
        "pass": x >= SPEEDUP_TARGET,
    })
    lat = speed[big]["latency_end_to_end"]["median_s"]
    out.append({
        "target": f"{big} search median <= {SEARCH_TARGET_S:g} s (end to end from image bytes)",
        "measured": f"{lat:.3f} s (p95 {speed[big]['latency_end_to_end']['p95_s']:.3f} s; "
                    f"search only {speed[big]['search_default']['median_s']:.3f} s)",
        "pass": lat <= SEARCH_TARGET_S,
    })
    same = results["same_queries_as_original"]
    worse = [
        f"{fam} ({same['default'][fam]['recall@1']:.2f} < {v['recall@1']:.2f})"
        for fam, v in same["original"].items()
        if fam != "overall" and fam in same["default"] and same["default"][fam]["recall@1"] < v["recall@1"]
    ]
    out.append({
        "target": "recall@1 >= the original's on every family (base catalog, same queries)",
        "measured": "no family worse" if not worse else "worse on: " + ", ".join(worse),
        "pass": not worse,
    })
    overall = results["accuracy"][big]["default"]["overall"]["recall@1"]
    out.append({
        "target": f"recall@1 >= {RECALL_TARGET} overall ({big} catalog, default ranking)",
        "measured": f"{overall:.3f} over {results['accuracy'][big]['default']['overall']['n']} queries",
        "pass": overall >= RECALL_TARGET,
    })
    ing = results["ingest"]
    out.append({
        "target": f"ingest >= {INGEST_TARGET:g} images/s for 2-5 MP JPEGs on 2 processes",
        "measured": f"{ing['images_per_s']:.1f} images/s ({ing['images']} images, median {ing['megapixels_median']:.1f} MP)",
        "pass": ing["images_per_s"] >= INGEST_TARGET,
    })
    mem = results["memory"]["partition_default"]
    out.append({
        "target": f"peak memory scoring a {mem['images']}-image batch <= 1 GB",
        "measured": f"{mem['peak_rss_mb']:.0f} MiB peak RSS of the whole process "
                    f"(+{mem['scoring_rss_increase_mb']:.0f} MiB while scoring)",
        "pass": mem["peak_rss_mb"] <= MEMORY_TARGET_MB,
    })
    return out


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


def _get(acc: dict, *path: str):
    for p in path:
        if not isinstance(acc, dict) or p not in acc:
            return None
        acc = acc[p]
    return acc


def _families(results: dict) -> list[str]:
    return results["data"]["families"] + ["overall"]


def _recall_table(results: dict) -> list[str]:
    acc = results["accuracy"]
    labs = [k for k in acc]
    same = results["same_queries_as_original"]
    head = ["family", "original (base)", "ours, same queries"]
    for lab in labs:
        head += [f"default {lab}", f"seed {lab}"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for fam in _families(results):
        o = _get(same, "original", fam)
        d = _get(same, "default", fam)
        row = [fam, f"{_pct(_get(o, 'recall@1'))} ({_get(o, 'n') or 0})", _pct(_get(d, "recall@1"))]
        for lab in labs:
            row.append(_pct(_get(acc, lab, "default", fam, "recall@1")))
            s = _get(acc, lab, "seed", fam)
            row.append(f"{_pct(_get(s, 'recall@1'))} ({_get(s, 'n') or 0})")
        lines.append("| " + " | ".join(row) + " |")
    return lines


def _default_table(results: dict) -> list[str]:
    acc = results["accuracy"]
    labs = list(acc)
    head = ["family"] + [f"{m} {lab}" for lab in labs for m in ("R@1", "R@5", "mAP@5")]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for fam in _families(results):
        row = [fam]
        for lab in labs:
            s = _get(acc, lab, "default", fam) or {}
            row += [_pct(s.get("recall@1")), _pct(s.get("recall@5")), _pct(s.get("map@5"))]
        lines.append("| " + " | ".join(row) + " |")
    return lines


def ratios(results: dict) -> dict[str, dict[str, float | None]]:
    """Per catalog: recall@1 of default / seed on the queries seed answered, and seed / default search time."""
    out = {}
    for lab, per in results["same_queries_as_seed"].items():
        d, s = per["default"]["overall"], per["seed"]["overall"]
        entry = {"recall@1_default": d.get("recall@1"), "recall@1_seed": s.get("recall@1"), "seed_queries": s.get("n")}
        entry["recall@1_ratio"] = (d["recall@1"] / s["recall@1"]) if s.get("recall@1") else None
        sp = results["speed"].get(lab)
        if sp:
            entry["search_speedup"] = sp["search_seed"]["median_s"] / sp["search_default"]["median_s"]
        out[lab] = entry
    return out


def _weakest(results: dict, lab: str, n: int = 5) -> list[tuple[str, float]]:
    fams = results["accuracy"][lab]["default"]
    rows = [(f, v["recall@1"]) for f, v in fams.items() if f != "overall"]
    return sorted(rows, key=lambda r: r[1])[:n]


def _why_not_100k(results: dict) -> str:
    """Sentence estimating what a 100k catalog would cost, from this run's measurements."""
    sd = results.get("storage_distractors", {})
    secs, det = sd.get("extract_seconds_median"), sd.get("detail_bytes_median")
    if not secs or not det:
        return "100k was not run."
    hours = secs * 100_000 / 2 / 3600
    return (f"100k was not run: at this run's {secs * 1e3:.0f} ms per distractor, extracting 100k on 2 processes "
            f"would take ~{hours:.1f} h, and a LocalIndex holding them ~{det * 100_000 / 2**30:.0f} GiB of detail features.")


def render(results: dict) -> str:
    """The markdown page."""
    big = _largest(results)
    m = results["machine"]
    d = results["data"]
    sp = results["speed"]
    L: list[str] = []
    L += ["# Benchmarks", ""]
    L += ["Accuracy and speed of PicTrace's search against the original per-pair pipeline "
          "(`benchmarks/seed_baseline.py`). Regenerate this page and `benchmarks/results.json` with:", "",
          "```", "python -m benchmarks.run          # full: about 30 min on 2 cores (longer the first time)",
          "python -m benchmarks.run --quick  # subset: a few minutes", "```", ""]
    quick = results["mode"] == "quick"
    L += [f"Last run: **{results['mode']}** mode, finished {results['finished']}, took {results['duration_s'] / 60:.1f} min"
          + (" (quick mode: fewer queries, largest catalog 1k, memory batch 1k; targets are indicative only)." if quick else ".")]
    L += ["", f"Machine: {m['nproc']} cores, {m['cpu']}; Python {m['python']}, NumPy {m['numpy']}, "
          f"OpenCV {m['opencv']}, scikit-image {m['scikit-image']} (baseline only); "
          f"OPENBLAS_CORETYPE={m['openblas_coretype']}."]
    if "engine" in results:
        e = results["engine"]
        L += ["", f"Engine measured: repository commit {e['git_head']}"
              + (" with uncommitted changes in pictrace/" if e["pictrace_uncommitted_changes"] else "")
              + f" (engine source hash {e['fingerprint']})."]
    L += [""]

    L += ["## Targets", "", "| target | measured | result |", "|---|---|---|"]
    for t in results["targets"]:
        L.append(f"| {t['target']} | {t['measured']} | {'PASS' if t['pass'] else 'FAIL'} |")

    L += ["", "## Data", ""]
    per = ", ".join(f"{k}: {v}" for k, v in d["per_source"].items())
    skipped = ", ".join(f"{k}: {v}" for k, v in d["skipped_files"].items()) or "none"
    L += [f"- Real catalog images: **{d['catalog_images']}** ({per}); {d['duplicates_removed']} byte-identical "
          f"duplicate(s) removed. Skipped files: {skipped}. Images with alpha are flattened over black and stored as PNG.",
          f"- Query sources: {d['query_sources']} of {d['query_sources_available']} eligible images "
          f"(shorter side >= 256 px and not near-blank); {len(d['not_query_sources'])} catalog images are never queried: "
          + ", ".join(f"{x['name']} ({x['size']}, gray std {x['gray_std']})" for x in d["not_query_sources"]) + ".",
          f"- {len(d['families'])} edit families x sources = {d['queries']} queries (JPEG, quality 92 unless the family says otherwise).",
          "- The same picture at several resolutions/crops counts as one original: "
          + "; ".join("{" + ", ".join(g) + "}" for g in d["same_picture_groups"]) + ". `strict` figures in results.json count only the exact file.",
          "- Catalog sizes: " + ", ".join(f"{k} = {v}" for k, v in results["catalog_sizes"].items())
          + ". Padding is synthetic distractors (`benchmarks/distractors.py`): a <= 1/9-area tile of one photo, or a 2x2 mosaic "
          "of tiles from four photos, recoloured (hue rotation or channel permutation) and often mirrored. "
          + _why_not_100k(results),
          f"- Metrics: recall@1, recall@5, and mAP@5 = mean reciprocal rank of the original within the top 5 "
          f"(one relevant item, so AP = 1/rank; 0 if absent). All rankings return k = 5.", ""]

    L += ["## Accuracy", "", "Recall@1 per family. `original` is the per-pair pipeline on the base catalog for the "
          "queries its time budget allowed (count in brackets); `ours, same queries` is the default ranking on exactly "
          "those queries. `seed` is PicTrace's ranking=\"seed\" (the original formula on stored features), time-budgeted "
          "on the larger catalogs (count in brackets). For speed, the original's accuracy run computes SSIM with an "
          "OpenCV box-filter form of scikit-image's formula (largest difference on checked pairs: "
          f"{results.get('original_box_ssim_max_abs_diff', float('nan')):.1e}); its timing uses scikit-image.", ""]
    L += _recall_table(results)
    L += ["", "Default ranking, all metrics:", ""]
    L += _default_table(results)
    L += ["", "Ours (default) vs seed ranking, on the queries the seed ranking answered:", "",
          "| catalog | recall@1 default | recall@1 seed (queries) | ratio default/seed | seed/default search time |", "|---|---|---|---|---|"]
    for lab, r in ratios(results).items():
        ratio = "-" if r["recall@1_ratio"] is None else f"{r['recall@1_ratio']:.2f}"
        spd = f"{r['search_speedup']:.0f}x" if r.get("search_speedup") else "-"
        L.append(f"| {lab} | {_pct(r['recall@1_default'])} | {_pct(r['recall@1_seed'])} ({r['seed_queries']}) | {ratio} | {spd} |")

    L += ["", f"### Weakest families and failures ({big}, default ranking)", ""]
    L += ["Weakest: " + ", ".join(f"{f} {v:.3f}" for f, v in _weakest(results, big)) + ".", ""]
    fails = results["failures"].get(f"{big}/default", [])
    L += [f"{len(fails)} queries with a wrong top-1" + (f" (first {MAX_FAILURE_ROWS} shown; all in results.json)" if len(fails) > MAX_FAILURE_ROWS else "") + ":", ""]
    if fails:
        L += ["| family | source | top-1 instead | top-1 score | rank of original |", "|---|---|---|---|---|"]
        for f in fails[:MAX_FAILURE_ROWS]:
            note = " (colourway sibling)" if f["top1_is_colourway_sibling"] else ""
            rank = f["rank_of_original"] or "not in top 5"
            L.append(f"| {f['family']} | {f['source']} | {f['top1']}{note} | {f['top1_score']:.3f} | {rank} |")

    loads = sp.get("load_average_samples", [])
    L += ["", "## Speed", "", "Medians of single measurements, in one process; the original is timed per pair "
          "(decode both, resize, SSIM + ORB/FLANN + histogram). CPU time is the process's CPU seconds (all threads). "
          f"1-minute load average while timing: {', '.join(f'{x:.1f}' for x in loads)} on {m['nproc']} cores"
          + (" - other processes were competing, so wall times are pessimistic; CPU times are the steadier figure."
             if loads and max(loads) > 1.5 else "."), ""]
    op = sp["original_per_pair"]
    qf = sp["query_feature_extraction"]
    L += ["| measurement | median (wall) | p95 (wall) | median CPU | n |", "|---|---|---|---|---|",
          f"| original, one pair | {op['median_s'] * 1e3:.0f} ms | {op['p95_s'] * 1e3:.0f} ms | {op['cpu_median_s'] * 1e3:.0f} ms | {op['n']} |",
          f"| query feature extraction (ours, in the worker processes) | {qf['median_s'] * 1e3:.0f} ms | "
          f"{qf['p95_s'] * 1e3:.0f} ms | | {qf['n']} |"]
    for lab in results["catalog_sizes"]:
        e = sp.get(lab)
        if not e:
            continue
        for key, what in (("search_default", "search, default"), ("search_seed", "search, seed"),
                          ("latency_end_to_end", "end-to-end query (bytes in, top 5 out), default")):
            s = e[key]
            L.append(f"| {lab} ({e['catalog']} images): {what} | {s['median_s']:.3f} s | {s['p95_s']:.3f} s | "
                     f"{s['cpu_median_s']:.3f} s | {s['n']} |")
        L.append(f"| {lab}: per candidate, default / seed | {e['per_candidate_default_s'] * 1e6:.1f} us / "
                 f"{e['per_candidate_seed_s'] * 1e6:.0f} us | | {e['per_candidate_default_cpu_s'] * 1e6:.1f} us / "
                 f"{e['per_candidate_seed_cpu_s'] * 1e6:.0f} us | |")
    L += ["", f"Per-candidate cost of the default ranking at {sp['per_candidate_speedup_basis']} is "
          f"**{sp['per_candidate_speedup_vs_original']:,.0f}x** lower than the original's per-pair cost.", ""]

    ing = results["ingest"]
    L += ["## Ingest", "", f"{ing['images']} JPEGs of {ing['megapixels_range'][0]:.1f}-{ing['megapixels_range'][1]:.1f} MP "
          f"(median {ing['megapixels_median']:.1f} MP, {ing['jpeg_bytes_median'] / 1e6:.2f} MB), feature extraction + "
          f"serialisation on a Pool of {ing['processes']} warm processes: **{ing['images_per_s']:.1f} images/s** "
          f"({ing['single_process_median_s'] * 1e3:.0f} ms wall, {ing['single_process_cpu_median_s'] * 1e3:.0f} ms CPU "
          f"per image in one process; load average {ing['load_average_before']:.1f} when it started).", ""]

    L += ["## Memory", "", "Peak RSS of a fresh process (`python -m benchmarks.memprobe`). `partition` runs both phases "
          "over one partition file and reads detail files only for the shortlist, as the scoring functions do; "
          "`localindex` keeps every image's features in memory.", "",
          "| mode | ranking | images | peak RSS: imports | loading | overall | +while scoring | traced scoring peak | time |",
          "|---|---|---|---|---|---|---|---|---|"]
    for v in results["memory"].values():
        L.append(f"| {v['mode']} | {v['ranking']} | {v['images']} | {v['peak_rss_imports_mb']:.0f} MiB | "
                 f"{v['peak_rss_loading_mb']:.0f} MiB | {v['peak_rss_mb']:.0f} MiB | {v['scoring_rss_increase_mb']:.0f} MiB | "
                 f"{v['traced_scoring_peak_mb']:.0f} MiB | {v['seconds']:.2f} s |")

    st, sd = results["storage"], results["storage_distractors"]
    L += ["", "## Storage per image", "", "| images | index part (in memory) | detail part (in memory) | features file (compressed) | partition bytes per image |",
          "|---|---|---|---|---|",
          f"| real catalog ({st['images']}) | {st['index_bytes_median']:,.0f} B | {st['detail_bytes_median']:,.0f} B | "
          f"{st['features_file_bytes_median']:,.0f} B | {st['partition_bytes_per_image']:,.0f} B |",
          f"| distractors ({sd['images']}) | {sd['index_bytes_median']:,.0f} B | {sd['detail_bytes_median']:,.0f} B | "
          f"{sd['features_file_bytes_median']:,.0f} B | |", ""]
    return "\n".join(L) + "\n"


def console_summary(results: dict) -> str:
    """Short text summary for the terminal."""
    lines = ["", "TARGETS"]
    for t in results["targets"]:
        lines.append(f"  [{'PASS' if t['pass'] else 'FAIL'}] {t['target']}: {t['measured']}")
    lines.append("RATIOS ours(default)/seed")
    for lab, r in ratios(results).items():
        ratio = "-" if r["recall@1_ratio"] is None else f"{r['recall@1_ratio']:.2f}"
        spd = f"{r['search_speedup']:.0f}x faster" if r.get("search_speedup") else ""
        lines.append(f"  {lab}: recall@1 {_pct(r['recall@1_default'])} vs {_pct(r['recall@1_seed'])} (ratio {ratio}) {spd}")
    big = _largest(results)
    lines.append("WEAKEST FAMILIES (" + big + ", default): " + ", ".join(f"{f} {v:.3f}" for f, v in _weakest(results, big)))
    return "\n".join(lines)

