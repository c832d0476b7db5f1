/* PicTrace page: search, the keypoint view, and the catalog. Uses api.js and match.js. */
"use strict";

const $ = (sel, root = document) => root.querySelector(sel);

/** Create an element: h("div", {class: "x", dataset: {id}}, child, "text"). */
function h(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key in node && typeof value !== "string") node[key] = value;
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined && child !== false) node.append(child);
  }
  return node;
}

const fmt3 = (x) => (typeof x === "number" && isFinite(x) ? x.toFixed(3) : "–");
const shortId = (id) => (id ? `${id.slice(0, 10)}…` : "");
const seconds = (ms) => `${(ms / 1000).toFixed(1)} s`;
const plural = (n, one, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;

const TRANSFORMS = {
  identity: "same orientation",
  rot90: "rotated 90°",
  rot180: "rotated 180°",
  rot270: "rotated 270°",
  mirror: "mirrored",
  transpose: "transposed",
};

/** "mirror+rot90" -> "mirrored, rotated 90°". */
function describeTransform(t) {
  if (!t) return "";
  return t.split("+").map((part) => TRANSFORMS[part] || part).join(", ");
}

function looksLikeUrl(text) {
  return /^https?:\/\/\S+$/i.test((text || "").trim());
}

/* ---- messages and toasts ------------------------------------------------ */

/** Show a banner: kind is "error", "warning" or "info". */
function showMessage(box, kind, title, text, details = []) {
  const item = h(
    "div",
    { class: `message ${kind}`, role: kind === "error" ? "alert" : "status" },
    h("strong", {}, title),
    text ? h("span", { class: "message-text" }, text) : null,
    details.length ? h("ul", { class: "message-details" }, details.map((d) => h("li", {}, d))) : null,
    h("button", { type: "button", class: "message-close", "aria-label": "Dismiss", onclick: () => item.remove() }, "×"),
  );
  box.append(item);
  return item;
}

function showError(box, err, what) {
  if (err && err.name === "AbortError") return;
  const details = ((err && err.body && err.body.failed) || []).map((f) => `${f.url || "image"}: ${f.message || f.error}`);
  const code = err && err.code ? ` (${err.code})` : "";
  showMessage(box, "error", `${what} failed${code}:`, (err && err.message) || String(err), details);
}

function toast(text) {
  const node = h("div", { class: "toast" }, text);
  $("#toasts").append(node);
  setTimeout(() => node.classList.add("leaving"), 3200);
  setTimeout(() => node.remove(), 3700);
}

/* ---- progress ------------------------------------------------------------- */

/** Drive one progress block ("search" or "catalog"): stage text, bar, elapsed time. */
function progress(prefix) {
  const block = $(`#${prefix}-progress`);
  const bar = $(`#${prefix}-bar`);
  const stage = $(`#${prefix}-stage`);
  const elapsed = $(`#${prefix}-elapsed`);
  const started = performance.now();
  const tick = () => (elapsed.textContent = seconds(performance.now() - started));
  const timer = setInterval(tick, 100);
  block.hidden = false;
  tick();
  const api = {
    stage(text) {
      stage.textContent = text;
      bar.dataset.mode = "busy";
      bar.removeAttribute("aria-valuenow");
      bar.firstElementChild.style.removeProperty("width");
    },
    upload(fraction) {
      bar.dataset.mode = "determinate";
      const pct = Math.round(fraction * 100);
      bar.setAttribute("aria-valuenow", String(pct));
      bar.firstElementChild.style.width = `${pct}%`;
      stage.textContent = fraction < 1 ? `Uploading… ${pct}%` : stage.textContent;
    },
    /** Stop the clock; hide the block unless a newer task took it over. */
    done(hide = true) {
      clearInterval(timer);
      if (hide) block.hidden = true;
      return performance.now() - started;
    },
  };
  return api;
}

/* ---- tabs ------------------------------------------------------------------ */

const tabs = [$("#tab-search"), $("#tab-catalog")];

function activeTab() {
  return $("#tab-catalog").getAttribute("aria-selected") === "true" ? "catalog" : "search";
}

function selectTab(name, focus = false) {
  for (const tab of tabs) {
    const on = tab.id === `tab-${name}`;
    tab.setAttribute("aria-selected", String(on));
    tab.tabIndex = on ? 0 : -1;
    $(`#${tab.getAttribute("aria-controls")}`).hidden = !on;
    if (on && focus) tab.focus();
  }
  if (location.hash !== `#${name}`) history.replaceState(null, "", `#${name}`);
  if (name === "catalog" && !catalog.loaded) loadCatalog(true);
}

tabs.forEach((tab, i) => {
  tab.addEventListener("click", () => selectTab(tab.id.slice(4)));
  tab.addEventListener("keydown", (e) => {
    const moves = { ArrowRight: 1, ArrowLeft: -1, Home: -i, End: tabs.length - 1 - i };
    if (!(e.key in moves)) return;
    e.preventDefault();
    const next = tabs[(i + moves[e.key] + tabs.length) % tabs.length];
    selectTab(next.id.slice(4), true);
  });
});

/* ---- health and settings ---------------------------------------------------- */

async function checkHealth() {
  const box = $("#health");
  try {
    const info = await Api.health();
    box.dataset.state = "ok";
    $(".health-text", box).textContent = `API ${info.version || ""}`.trim();
    box.title = `${apiBase()} · bucket ${info.bucket || "?"}`;
  } catch (err) {
    box.dataset.state = "down";
    $(".health-text", box).textContent = "API unreachable";
    box.title = `${apiBase()}: ${err.message}`;
  }
}

function openSettings() {
  $("#settings-base").textContent = apiBase();
  $("#settings-key").value = apiKey();
  $("#settings").showModal();
}

/** Apply the Settings choice: "save", "clear" or "cancel". */
function applySettings(choice) {
  if (choice === "save") setApiKey($("#settings-key").value.trim());
  if (choice === "clear") setApiKey("");
  if (choice === "save" || choice === "clear") {
    toast(choice === "save" ? "Settings saved" : "API key forgotten");
    if (activeTab() === "catalog") loadCatalog(true);
  }
}

$("#open-settings").addEventListener("click", openSettings);
// Applied on submit, before the dialog closes, so the key is in place at once.
$("#settings-form").addEventListener("submit", (e) => applySettings(e.submitter ? e.submitter.value : "cancel"));
// Enter in the key field saves (implicit submission would pick the first button, "Forget key").
$("#settings-key").addEventListener("keydown", (e) => {
  if (e.key !== "Enter") return;
  e.preventDefault();
  applySettings("save");
  $("#settings").close("save");
});

/** Open Settings when the API refused the key. */
function maybeAskForKey(err) {
  if (err && err.status === 403) openSettings();
}

/* ---- search ---------------------------------------------------------------- */

let searchAbort = null;
let queryPreviewUrl = null;

/**
 * Run a search and render its results or its error.  source is one of
 * {file}, {url}, {query: sha256} (a stored earlier query, from a link) or
 * {similar: id, name} (more like a catalog image).
 */
async function runSearch(source) {
  if (searchAbort) searchAbort.abort();
  const abort = new AbortController();
  searchAbort = abort;
  const messages = $("#search-messages");
  messages.replaceChildren();
  const options = searchOptions();
  showQueryPreview(source);
  const prog = progress("search");
  prog.stage(source.file ? "Sending image…" : source.url ? "Fetching the image and searching…" : "Searching…");
  $("#search-results").setAttribute("aria-busy", "true");
  try {
    let answer;
    if (source.similar) {
      answer = await Api.similar(source.similar, { ...options, signal: abort.signal });
    } else {
      const body = source.file
        ? await imageBody(source.file, { onUpload: (f) => prog.upload(f), signal: abort.signal })
        : jsonBody(source.url ? { url: source.url } : { query: source.query });
      answer = await Api.search(body, {
        ...options,
        signal: abort.signal,
        onUpload: (f) => (f < 1 ? prog.upload(f) : prog.stage("Comparing with the catalog…")),
      });
    }
    prog.stage("Comparing with the catalog…");
    renderResults(answer, prog.done(), source);
    linkTo(source, answer, options);
  } catch (err) {
    // A newer search owns the shared progress block and results area now.
    const superseded = searchAbort !== abort;
    prog.done(!superseded);
    if (superseded) return;
    $("#search-results").hidden = true;
    $("#results").replaceChildren();
    if (err.name !== "AbortError") {
      showError(messages, err, "Search");
      maybeAskForKey(err);
    }
  } finally {
    if (searchAbort === abort) {
      searchAbort = null;
      $("#search-results").removeAttribute("aria-busy");
    }
  }
}

/** The options of the next search, from the controls. */
function searchOptions() {
  return {
    k: $("#search-k").value,
    ranking: $("#search-ranking").value,
    mode: $("#search-mode").value,
    minScore: Number($("#search-min").value) || 0,
    filter: $("#search-filter").value.trim(),
  };
}

/* ---- links to a search ---------------------------------------------------------- */

const LINK_KEYS = ["q", "url", "similar", "k", "min_score", "ranking", "mode", "filter"];

/**
 * Put the search in the page's address, so that it can be bookmarked or
 * shared: ?q=<query sha256> (an uploaded image, kept as long as the API keeps
 * stored queries), ?url=<image URL> or ?similar=<image id>, with its options.
 * Other parameters (?api=) are kept.
 */
function linkTo(source, answer, options) {
  const params = new URLSearchParams(location.search);
  for (const key of LINK_KEYS) params.delete(key);
  if (source.similar) params.set("similar", source.similar);
  else if (source.url) params.set("url", source.url);
  else if (answer.query && answer.query.sha256) params.set("q", answer.query.sha256);
  params.set("k", String(options.k));
  if (options.minScore > 0) params.set("min_score", String(options.minScore));
  if (options.ranking !== "default") params.set("ranking", options.ranking);
  if (options.mode && options.mode !== "default") params.set("mode", options.mode);
  if (options.filter) params.set("filter", options.filter);
  history.replaceState(null, "", `${location.pathname}?${params}#search`);
}

/** The search a link asks for (null if none), after setting the controls it names. */
function linkedSearch() {
  const params = new URLSearchParams(location.search);
  const set = (id, value) => {
    const select = $(id);
    if (value !== null && [...select.options].some((o) => o.value === value)) select.value = value;
  };
  set("#search-k", params.get("k"));
  set("#search-ranking", params.get("ranking"));
  set("#search-mode", params.get("mode"));
  if (params.has("filter")) $("#search-filter").value = params.get("filter");
  if (params.has("min_score")) {
    const wanted = params.get("min_score");
    const select = $("#search-min");
    if (![...select.options].some((o) => o.value === wanted) && Number(wanted) >= 0 && Number(wanted) <= 1) {
      select.append(h("option", { value: wanted }, Number(wanted).toFixed(2)));
    }
    set("#search-min", wanted);
  } else if (params.has("q") || params.has("url") || params.has("similar")) {
    set("#search-min", "0"); // a link without a threshold asked for none
  }
  const sha = /^[0-9a-f]{64}$/;
  if (sha.test(params.get("similar") || "")) return { similar: params.get("similar") };
  if (looksLikeUrl(params.get("url"))) {
    $("#search-url").value = params.get("url");
    return { url: params.get("url") };
  }
  if (sha.test(params.get("q") || "")) return { query: params.get("q") };
  return null;
}

$("#search-cancel").addEventListener("click", () => searchAbort && searchAbort.abort());

function showQueryPreview(source) {
  if (queryPreviewUrl) URL.revokeObjectURL(queryPreviewUrl);
  queryPreviewUrl = source.file ? URL.createObjectURL(source.file) : null;
  const img = $("#query-image");
  // A stored query or catalog image shows once the answer names its URL.
  if (queryPreviewUrl || source.url) img.src = queryPreviewUrl || source.url;
  else img.removeAttribute("src");
  img.dataset.source = source.file ? "file" : "url";
  $("#query-meta").textContent = source.file
    ? `${source.file.name || "pasted image"} · ${formatBytes(source.file.size)}`
    : source.url || (source.similar ? `catalog image ${source.name || shortId(source.similar)}` : "an earlier query");
  $(".query-card h2").textContent = source.similar ? "More like this image" : "Your image";
  // Placeholders where the results will appear.
  const k = Math.min(Number($("#search-k").value) || 5, 10);
  $("#results").replaceChildren(...Array.from({ length: k }, () => h("li", { class: "placeholder", "aria-hidden": "true" })));
  $("#results-title").textContent = "Searching…";
  $("#search-summary").textContent = "";
  $("#search-results").hidden = false;
}

function renderResults(answer, totalMs, source = {}) {
  const q = answer.query || {};
  const img = $("#query-image");
  if (img.dataset.source !== "file" && (q.stored_url || q.image_url)) img.src = q.stored_url || q.image_url;
  if (answer.image && answer.image.stored_url) img.src = answer.image.stored_url;
  const meta = [
    h("span", {}, `${(q.format || "").toUpperCase()} · ${q.width}×${q.height} · ${formatBytes(q.bytes || 0)}`),
    h("code", { title: q.sha256 }, `sha256 ${shortId(q.sha256)}`),
  ];
  if (q.page_url) meta.push(h("a", { href: q.page_url, target: "_blank", rel: "noopener noreferrer" }, "source page"));
  $("#query-meta").replaceChildren(...meta);
  const c = answer.counts || {};
  $("#search-summary").textContent =
    `Compared with ${plural(c.scored_candidates || 0, "catalog image")} in ${plural(c.batches || 0, "batch", "batches")}` +
    ` · ${seconds(answer.elapsed_ms || 0)} on the server, ${seconds(totalMs)} in all.`;
  const messages = $("#search-messages");
  if (answer.partial) {
    const failed = answer.failed_batches || [];
    showMessage(
      messages,
      "warning",
      "Partial results:",
      `${c.failed_batches || failed.length} of ${plural(c.batches || 0, "batch", "batches")} could not be scored, so some catalog images were not compared.`,
      failed.map((f) => `${describeBatch(f.batch)}: ${f.error}`),
    );
  }
  const results = answer.results || [];
  const others = source.similar ? Math.max(0, (c.candidates || 0) - 1) : c.candidates || 0;
  $("#results-title").textContent = results.length ? `Top ${results.length} of ${others}` : "No similar image";
  if (!results.length && !answer.partial) {
    const threshold = answer.min_score ? ` scores ${fmt3(answer.min_score)} or more` : " resembles it";
    const why = others
      ? `nothing else in the catalog${threshold}. Lower the minimum score to see the closest images anyway.`
      : source.similar
        ? "it is the only image in the catalog."
        : "the catalog is empty. Add images in the Catalog tab.";
    showMessage(messages, "info", "No similar image:", why);
  }
  const list = $("#results");
  list.dataset.state = results.length ? "results" : "none";
  list.replaceChildren(...results.map((r) => resultCard({ ...r, mode: answer.mode || "default" }, q)));
}

function describeBatch(batch) {
  if (!batch) return "batch";
  if (batch.shard) return `shard ${batch.shard.split("/").pop()}`;
  if (batch.pending) return `${plural(batch.pending.length, "recently added image")}`;
  return JSON.stringify(batch);
}

function scoreClass(score) {
  return score >= 0.5 ? "high" : score >= 0.25 ? "mid" : "low";
}

/** One metric: label, a bar for the 0..1 part of the value, and the number. */
function metric(label, value, title) {
  const width = Math.max(0, Math.min(1, value || 0)) * 100;
  const fill = h("span", { class: "meter-fill" });
  fill.style.width = `${width}%`;
  return h(
    "div",
    { class: "metric", title },
    h("dt", {}, label),
    h("dd", {}, h("span", { class: "meter", "aria-hidden": "true" }, fill), h("span", { class: "num" }, fmt3(value))),
  );
}

// Below this score a result is rarely the same picture, so its "transform" claims nothing.
const WEAK_SCORE = 0.4;

/** The image's top ImageNet labels as chips, with their probabilities on hover. */
function labelChips(labels) {
  return (labels || []).slice(0, 2).map((l) =>
    h("span", { class: "chip label", title: `ImageNet label, probability ${fmt3(l.probability)}` }, l.label));
}

// A card shows this many meta fields; a "+n" chip holds the rest in its tooltip.
const META_SHOWN = 4;

/** A meta value as text: strings as they are, lists of strings joined, anything else as JSON. */
function metaText(value) {
  if (typeof value === "string") return value;
  if (Array.isArray(value) && value.every((v) => typeof v === "string")) return value.join(", ");
  return JSON.stringify(value);
}

/**
 * An image's meta as "key: value" chips (null when it has none).  Built as
 * text nodes, never markup, since meta is whatever its client stored; each
 * chip is cut short by CSS and its title holds the whole of it.
 */
function metaChips(meta) {
  // The fields a filter can select by (strings, lists of strings) first, in their stored order.
  const filterable = ([, v]) => typeof v === "string" || (Array.isArray(v) && v.every((x) => typeof x === "string"));
  const all = Object.entries(meta || {});
  const entries = [...all.filter(filterable), ...all.filter((e) => !filterable(e))];
  if (!entries.length) return null;
  const chip = ([key, value]) =>
    h("span", { class: "meta-chip", title: `${key}: ${metaText(value)}` }, h("span", { class: "meta-key" }, `${key}:`), ` ${metaText(value)}`);
  const rest = entries.slice(META_SHOWN);
  return h(
    "div",
    { class: "meta-chips", role: "list", "aria-label": "Metadata" },
    entries.slice(0, META_SHOWN).map((e) => h("span", { role: "listitem", class: "meta-item" }, chip(e))),
    rest.length
      ? h("span", { role: "listitem", class: "meta-item" }, h("span", { class: "meta-chip more", title: rest.map(([k, v]) => `${k}: ${metaText(v)}`).join("\n") }, `+${rest.length}`))
      : null,
  );
}

function transformChip(r) {
  if (r.score < WEAK_SCORE) return h("span", { class: "chip weak", title: "A low score: probably not the same picture" }, "weak match");
  return r.transform ? h("span", { class: "chip", title: `transform: ${r.transform}` }, describeTransform(r.transform)) : null;
}

function resultCard(r, query) {
  const name = r.name || shortId(r.id);
  const open = () => openMatch(r, query);
  const thumb = h("img", { alt: "", loading: "lazy", referrerPolicy: "no-referrer", src: r.thumb_url || r.stored_url || r.image_url });
  return h(
    "li",
    { class: "result", dataset: { id: r.id, rank: String(r.rank), score: String(r.score) } },
    h(
      "button",
      { type: "button", class: "result-open", onclick: open, "aria-label": `Show matched keypoints for result ${r.rank}, ${name}` },
      thumb,
      h("span", { class: "rank", "aria-hidden": "true" }, `#${r.rank}`),
      h("span", { class: "open-hint", "aria-hidden": "true" }, "Show keypoints"),
    ),
    h(
      "div",
      { class: "result-body" },
      h(
        "div",
        { class: "result-head" },
        h("span", { class: "result-name", title: r.id }, name),
        h("span", { class: `score ${scoreClass(r.score)}`, title: r.mode === "similar" ? "Looks-like score: how alike the two pictures' content is" : "Overall score: the mean of SSIM, ORB and histogram" }, fmt3(r.score)),
      ),
      h(
        "dl",
        { class: "breakdown" },
        metric("SSIM", r.scores && r.scores.ssim, "Structural similarity of 256×256 grey thumbnails"),
        metric("ORB", r.scores && r.scores.orb, "Share of the query's ORB keypoints with a good match"),
        metric("Hist", r.scores && r.scores.hist, "Correlation of the colour histograms"),
        metric("Alike", r.scores && r.scores.semantic, "Looks-like: cosine of the two pictures' EfficientNet-Lite0 embeddings (the same kind of thing, not a copy)"),
      ),
      h(
        "div",
        { class: "result-foot" },
        r.mode === "similar" ? null : transformChip(r),
        ...labelChips(r.labels),
        r.page_url ? h("a", { href: r.page_url, target: "_blank", rel: "noopener noreferrer" }, "source page") : null,
      ),
      metaChips(r.meta),
    ),
  );
}

/* ---- the keypoint view ------------------------------------------------------- */

const match = { left: null, right: null, pairs: [], token: 0 };

/** The keypoint view of a search result: its pairs with the stored query. */
function openMatch(result, query) {
  return openPair({
    title: `#${result.rank} · ${result.name || shortId(result.id)}`,
    rightLabel: `Right: ${result.name || "the catalog image"}`,
    info: result,
    what: "Loading the matches",
    fetch: async () => {
      const answer = await Api.matches(result.id, query.sha256);
      const pairs = answer.pairs || [];
      return {
        leftSrc: answer.query.stored_url,
        rightSrc: answer.image.stored_url || result.stored_url,
        pairs,
        count: pairs.length,
        mirrored: answer.mirrored,
      };
    },
  });
}

/** Compare two chosen files (POST /compare) and show their pairs in the keypoint view. */
function openComparison(fileA, fileB) {
  const urls = [URL.createObjectURL(fileA), URL.createObjectURL(fileB)];
  const form = new FormData();
  form.append("a", fileA, fileA.name || "a");
  form.append("b", fileB, fileB.name || "b");
  return openPair({
    title: `${fileA.name || "A"} · ${fileB.name || "B"}`,
    rightLabel: `Right: ${fileB.name || "the second image"}`,
    what: "Comparing",
    fetch: async () => {
      const answer = await Api.compare({ body: form, headers: {} });
      const kp = answer.keypoints || {};
      return { leftSrc: urls[0], rightSrc: urls[1], pairs: kp.pairs || [], count: kp.count || 0, mirrored: kp.mirrored, info: answer };
    },
    done: () => urls.forEach((u) => URL.revokeObjectURL(u)),
  });
}

/** The score, the signals and the transform of a pair, for the keypoint view's head. */
function pairInfo(info) {
  return [
    h("span", { class: `score ${scoreClass(info.score)}` }, `score ${fmt3(info.score)}`),
    h("span", {}, `SSIM ${fmt3(info.scores.ssim)} · ORB ${fmt3(info.scores.orb)} · Hist ${fmt3(info.scores.hist)}`),
    transformChip(info),
  ];
}

/**
 * Open the keypoint view for one pair of images.  fetch() resolves to
 * {leftSrc, rightSrc, pairs, count, mirrored, info?}; info (score, scores,
 * transform) may come with it rather than up front.
 */
async function openPair({ title, rightLabel, info, what, fetch, done = () => {} }) {
  const dialog = $("#match-dialog");
  const canvas = $("#match-canvas");
  const token = ++match.token;
  match.left = match.right = null;
  match.pairs = [];
  canvas.dataset.state = "loading";
  delete canvas.dataset.pairs;
  canvas.width = canvas.height = 0;
  $("#match-loading").hidden = false;
  $("#match-messages").replaceChildren();
  $("#match-title").textContent = title;
  $("#match-right-label").textContent = rightLabel;
  const status = h("span", { id: "match-count", role: "status" }, "Loading…");
  $("#match-info").replaceChildren(...(info ? pairInfo(info) : []), status);
  if (!dialog.open) dialog.showModal();
  try {
    const got = await fetch();
    if (token !== match.token) return;
    if (got.info) $("#match-info").replaceChildren(...pairInfo(got.info), status);
    const [left, right] = await Promise.all([loadImage(got.leftSrc, "first"), loadImage(got.rightSrc, "second")]);
    if (token !== match.token) return;
    Object.assign(match, { left, right, pairs: got.pairs });
    redrawMatch();
    canvas.dataset.pairs = String(match.pairs.length);
    canvas.dataset.state = "ready";
    const drawn = got.count > match.pairs.length ? ` (${match.pairs.length} drawn)` : "";
    status.textContent =
      `${plural(got.count, "matched keypoint")}${drawn}` + (got.mirrored ? " (the left image is a mirror image)" : "");
    canvas.setAttribute("aria-label", `The two images side by side with ${plural(match.pairs.length, "line")} between matched keypoints`);
  } catch (err) {
    if (token !== match.token) return;
    canvas.dataset.state = "error";
    status.textContent = "";
    showError($("#match-messages"), err, what);
  } finally {
    if (token === match.token) $("#match-loading").hidden = true;
    done();
  }
}

function redrawMatch() {
  if (!match.left || !$("#match-dialog").open) return;
  drawMatches($("#match-canvas"), match.left, match.right, match.pairs, {
    lines: $("#match-lines").checked,
    maxHeight: Math.max(220, window.innerHeight - 260),
  });
}

$("#match-lines").addEventListener("change", redrawMatch);
let stageWidth = 0;
new ResizeObserver(([entry]) => {
  // Redrawing changes the stage's height; only a new width needs a new layout.
  if (Math.round(entry.contentRect.width) === stageWidth) return;
  stageWidth = Math.round(entry.contentRect.width);
  redrawMatch();
}).observe($("#match-stage"));
for (const dialog of document.querySelectorAll("dialog")) {
  // A click on the backdrop closes the dialog; the backdrop's clicks target the dialog itself.
  dialog.addEventListener("click", (e) => {
    const box = dialog.getBoundingClientRect();
    const inside = e.clientX >= box.left && e.clientX <= box.right && e.clientY >= box.top && e.clientY <= box.bottom;
    if (e.target === dialog && !inside) dialog.close("cancel");
  });
  for (const button of dialog.querySelectorAll("[data-close]")) button.addEventListener("click", () => dialog.close("cancel"));
}
$("#match-dialog").addEventListener("close", () => match.token++);

/* ---- catalog -------------------------------------------------------------------- */

const catalog = { loaded: false, cursor: null, total: 0, loading: false, urls: new Map() };
const thumbQueue = [];
let thumbsInFlight = 0;
const THUMB_CONCURRENCY = 4;

const thumbObserver = new IntersectionObserver(
  (entries) => {
    for (const entry of entries) {
      if (!entry.isIntersecting) continue;
      thumbObserver.unobserve(entry.target);
      thumbQueue.push(entry.target);
    }
    pumpThumbs();
  },
  { rootMargin: "200px" },
);

/** Give queued catalog cards their image, a few GET /images/{id} at a time (only for cards whose record came without links). */
function pumpThumbs() {
  while (thumbsInFlight < THUMB_CONCURRENCY && thumbQueue.length) {
    const card = thumbQueue.shift();
    if (!card.isConnected) continue;
    thumbsInFlight++;
    thumbUrl(card.dataset.id)
      .then((urls) => setThumb(card, urls))
      .catch(() => card.classList.add("thumb-failed"))
      .finally(() => {
        thumbsInFlight--;
        pumpThumbs();
      });
  }
}

/** The links of a record: its thumbnail (the original for images catalogued before thumbnails) and the original. */
function recordUrls(rec) {
  const full = rec.stored_url || rec.image_url;
  return { thumb: rec.thumb_url || full, full };
}

/** Fresh presigned links for an image, reused until shortly before they expire. */
async function thumbUrl(id, fresh = false) {
  const cached = catalog.urls.get(id);
  if (!fresh && cached && cached.until > Date.now()) return cached.urls;
  const rec = await Api.getImage(id);
  const urls = recordUrls(rec);
  catalog.urls.set(id, { urls, until: Date.now() + Math.max(0, (rec.expires_in || 300) - 30) * 1000 });
  return urls;
}

function setThumb(card, urls, retried = false) {
  const img = $("img", card);
  const link = $("a.thumb", card);
  const failed = () => card.classList.add("thumb-failed");
  // An expired presigned URL (a page left open): fetch fresh ones, once.
  img.onerror = retried ? failed : () => thumbUrl(card.dataset.id, true).then((u) => setThumb(card, u, true), failed);
  img.src = urls.thumb;
  link.href = urls.full;
}

function catalogCard(rec) {
  const name = rec.name || shortId(rec.id);
  const added = rec.added_at ? new Date(rec.added_at * 1000) : null;
  const card = h(
    "li",
    { class: "cat-card", dataset: { id: rec.id } },
    h("a", { class: "thumb", target: "_blank", rel: "noopener noreferrer", "aria-label": `Open ${name} in a new tab` }, h("img", { alt: "", referrerPolicy: "no-referrer" })),
    h(
      "div",
      { class: "cat-body" },
      h("span", { class: "cat-name", title: rec.id }, name),
      h("span", { class: "cat-meta" }, `${(rec.format || "").toUpperCase()} · ${rec.width}×${rec.height} · ${formatBytes(rec.bytes || 0)}`),
      added ? h("time", { class: "cat-meta", datetime: added.toISOString() }, added.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" })) : null,
      metaChips(rec.meta),
    ),
    h(
      "button",
      { type: "button", class: "button small similar", "aria-label": `Find images similar to ${name}`, onclick: () => findSimilar(rec) },
      "Find similar",
    ),
    h(
      "button",
      { type: "button", class: "icon-button delete", "aria-label": `Delete ${name}`, title: "Delete", onclick: () => confirmDelete(rec, card) },
      trashIcon(),
    ),
  );
  // List and add answers carry the links; a card without them asks once it scrolls into view.
  if (rec.stored_url) setThumb(card, recordUrls(rec));
  else thumbObserver.observe(card);
  return card;
}

/** More like a catalog image: the search tab, with that image as the query. */
function findSimilar(rec) {
  selectTab("search");
  $("#search-url").value = "";
  runSearch({ similar: rec.id, name: rec.name });
}

function trashIcon() {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("aria-hidden", "true");
  const path = document.createElementNS(ns, "path");
  path.setAttribute("d", "M4 7h16M9 7V4h6v3M6 7l1 13h10l1-13M10 11v6M14 11v6");
  svg.append(path);
  return svg;
}

async function loadCatalog(reset) {
  if (catalog.loading) return;
  catalog.loading = true;
  const grid = $("#catalog-grid");
  const more = $("#catalog-more");
  grid.setAttribute("aria-busy", "true");
  if (reset) $("#catalog-messages").replaceChildren();
  try {
    const page = await Api.listImages(reset ? null : catalog.cursor);
    if (reset) grid.replaceChildren();
    const shown = new Set([...grid.children].map((c) => c.dataset.id));
    grid.append(...page.images.filter((r) => !shown.has(r.id)).map(catalogCard));
    catalog.loaded = true;
    catalog.cursor = page.next_cursor;
    catalog.total = page.total;
    more.hidden = !page.next_cursor;
    showTotal();
  } catch (err) {
    showError($("#catalog-messages"), err, "Loading the catalog");
    maybeAskForKey(err);
  } finally {
    catalog.loading = false;
    grid.removeAttribute("aria-busy");
  }
}

function showTotal() {
  const shown = $("#catalog-grid").children.length;
  $("#catalog-total").textContent = catalog.total
    ? `${plural(catalog.total, "image")}${shown < catalog.total ? ` · showing ${shown}` : ""}`
    : "The catalog is empty: add some images.";
}

$("#catalog-more").addEventListener("click", () => loadCatalog(false));
$("#catalog-refresh").addEventListener("click", () => loadCatalog(true));

function confirmDelete(rec, card) {
  const dialog = $("#confirm-dialog");
  const img = $("#confirm-image");
  const shown = $("img", card).getAttribute("src");
  img.hidden = !shown;
  if (shown) img.src = shown;
  $("#confirm-text").textContent = `“${rec.name || shortId(rec.id)}” is removed from the catalog and will no longer be found by searches.`;
  dialog.returnValue = "";
  dialog.onclose = async () => {
    dialog.onclose = null;
    if (dialog.returnValue !== "delete") return;
    card.classList.add("deleting");
    try {
      await Api.deleteImage(rec.id);
      card.remove();
      catalog.total = Math.max(0, catalog.total - 1);
      showTotal();
      toast(`Deleted ${rec.name || shortId(rec.id)}`);
    } catch (err) {
      card.classList.remove("deleting");
      showError($("#catalog-messages"), err, "Deleting");
      maybeAskForKey(err);
    }
  };
  dialog.showModal();
}

/* ---- duplicate groups ------------------------------------------------------------ */

const dupes = { cursor: null, minScore: 0.8 };

/** Show the last scan's groups at the chosen minimum score (a first page, or the next one). */
async function showDuplicates(reset) {
  const box = $("#dupes-messages");
  const list = $("#dupes-groups");
  if (reset) {
    box.replaceChildren();
    dupes.cursor = null;
    dupes.minScore = Number($("#dupes-min").value) || 0.8;
  }
  list.setAttribute("aria-busy", "true");
  try {
    let page = await Api.duplicates({ minScore: dupes.minScore, cursor: reset ? null : dupes.cursor });
    if (reset && !page.scan) page = await scanAndWait(); // never scanned: run one (or join the one running)
    if (reset) list.replaceChildren();
    const first = list.children.length + 1;
    list.append(...page.groups.map((g, i) => dupeGroup(g, first + i)));
    dupes.cursor = page.next_cursor;
    $("#dupes-more").hidden = !page.next_cursor;
    $("#dupes-summary").textContent = dupesSummary(page);
  } catch (err) {
    showError(box, err, "Finding duplicates");
    maybeAskForKey(err);
  } finally {
    list.removeAttribute("aria-busy");
  }
}

function dupesSummary(page) {
  const scan = page.scan;
  if (!scan) return "No scan yet.";
  const when = new Date(scan.finished_at * 1000).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
  const found = page.total_groups ? plural(page.total_groups, "group") : "No group";
  const partial = scan.complete ? "" : ` (the scan ran out of time after ${scan.searched} of them)`;
  return `${found} scoring ${fmt3(page.min_score)} or more · scan of ${plural(scan.images, "image")}, ${when}${partial}`;
}

/** Start a scan (or join the one running), wait for it, then answer its first page. */
async function scanAndWait() {
  $("#dupes-summary").textContent = "Scanning the whole catalog for near-duplicates…";
  const { job } = await Api.scanDuplicates();
  for (;;) {
    await new Promise((done) => setTimeout(done, 1000));
    const page = await Api.duplicates({ minScore: dupes.minScore });
    if (page.job.run === job.run && page.job.state === "done") return page;
    if (page.job.run === job.run && page.job.state === "failed") {
      throw new ApiError(500, { error: "scan_failed", message: page.job.message || "the duplicates scan failed" });
    }
  }
}

function dupeGroup(g, n) {
  return h(
    "li",
    { class: "dupe-group", dataset: { size: String(g.size) } },
    h("div", { class: "dupe-head" }, h("strong", {}, `Group ${n}: ${plural(g.size, "image")}`), h("span", { class: "score" }, `best pair ${fmt3(g.best_score)}`)),
    h(
      "ul",
      { class: "dupe-images" },
      g.images.map((img) => {
        const { thumb, full } = recordUrls(img);
        const name = img.name || shortId(img.id);
        return h(
          "li",
          { dataset: { id: img.id } },
          h("a", { class: "thumb", href: full, target: "_blank", rel: "noopener noreferrer", "aria-label": `Open ${name} in a new tab` }, h("img", { alt: "", src: thumb, loading: "lazy", referrerPolicy: "no-referrer" })),
          h("span", { class: "cat-name", title: img.id }, name),
        );
      }),
    ),
  );
}

$("#dupes-form").addEventListener("submit", (e) => {
  e.preventDefault();
  showDuplicates(true);
});
$("#dupes-more").addEventListener("click", () => showDuplicates(false));
$("#dupes-scan").addEventListener("click", async () => {
  const button = $("#dupes-scan");
  button.disabled = true;
  $("#dupes-messages").replaceChildren();
  dupes.minScore = Number($("#dupes-min").value) || 0.8;
  try {
    await scanAndWait();
    await showDuplicates(true);
  } catch (err) {
    showError($("#dupes-messages"), err, "Scanning for duplicates");
    maybeAskForKey(err);
  } finally {
    button.disabled = false;
  }
});

/** Add files or URLs to the catalog, then reload it and report what happened. */
async function addToCatalog({ files = [], urls = [] }) {
  const messages = $("#catalog-messages");
  messages.replaceChildren();
  const prog = progress("catalog");
  const added = [];
  const failed = [];
  const meta = $("#catalog-meta").value.trim(); // JSON text, sent as is: the API checks it
  try {
    for (const [i, file] of files.entries()) {
      const label = files.length > 1 ? ` (${i + 1} of ${files.length})` : "";
      prog.stage(`Adding ${file.name || "image"}${label}…`);
      try {
        const body = await imageBody(file, { onUpload: (f) => prog.upload(f) });
        prog.stage(`Indexing ${file.name || "image"}${label}…`);
        const answer = await Api.addImages(body, { onUpload: (f) => f < 1 && prog.upload(f), meta });
        added.push(...answer.images);
      } catch (err) {
        failed.push(`${file.name || "image"}: ${err.message}`);
        if (err.status === 403) throw err;
      }
    }
    if (urls.length) {
      prog.stage(`Fetching ${plural(urls.length, "URL")}…`);
      const body = jsonBody(urls.length === 1 ? { url: urls[0] } : { urls });
      try {
        const answer = await Api.addImages(body, { meta });
        added.push(...answer.images);
        failed.push(...(answer.failed || []).map((f) => `${f.url}: ${f.message || f.error}`));
      } catch (err) {
        if (err.status === 403) throw err;
        const listed = (err.body && err.body.failed) || [];
        if (listed.length) failed.push(...listed.map((f) => `${f.url}: ${f.message || f.error}`));
        else failed.push(`${urls.join(", ")}: ${err.message}`);
      }
    }
  } catch (err) {
    showError(messages, err, "Adding");
    maybeAskForKey(err);
  } finally {
    prog.done();
  }
  if (added.length) {
    await loadCatalog(true);
    // The list is ordered by id: a new image may sit on a later page, so show it first.
    const grid = $("#catalog-grid");
    for (const a of added) {
      let card = grid.querySelector(`.cat-card[data-id="${CSS.escape(a.id)}"]`);
      if (!card) grid.prepend((card = catalogCard(a)));
      card.classList.add("fresh");
    }
    showTotal();
  }
  const created = added.filter((a) => a.created).length;
  if (added.length) {
    const already = added.length - created;
    showMessage(messages, "info", `Added ${plural(created, "image")}.`, already ? `${already} already in the catalog.` : "");
  }
  if (failed.length) showMessage(messages, "error", `${plural(failed.length, "image")} could not be added:`, "", failed);
}

$("#catalog-url-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const field = $("#catalog-url");
  const urls = field.value.split(/\s+/).map((u) => u.trim()).filter(Boolean);
  const bad = urls.filter((u) => !looksLikeUrl(u));
  if (!urls.length || bad.length) {
    $("#catalog-messages").replaceChildren();
    showMessage($("#catalog-messages"), "error", "Not a URL:", bad.join(", ") || "enter an http(s) URL.");
    field.focus();
    return;
  }
  addToCatalog({ urls });
});

/* ---- input: file pickers, URL form, drag and drop, paste ---------------------------- */

for (const button of document.querySelectorAll("[data-pick]")) {
  button.addEventListener("click", () => $(`#${button.dataset.pick}`).click());
}

$("#search-file").addEventListener("change", (e) => {
  const file = e.target.files[0];
  e.target.value = "";
  if (file) runSearch({ file });
});

$("#catalog-file").addEventListener("change", (e) => {
  const files = [...e.target.files];
  e.target.value = "";
  if (files.length) addToCatalog({ files });
});

$("#compare-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const [a, b] = [$("#compare-a").files[0], $("#compare-b").files[0]];
  if (!a || !b) {
    $("#search-messages").replaceChildren();
    showMessage($("#search-messages"), "error", "Compare:", "choose both images first.");
    return;
  }
  openComparison(a, b);
});

$("#search-url-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const url = $("#search-url").value.trim();
  if (!looksLikeUrl(url)) {
    $("#search-messages").replaceChildren();
    showMessage($("#search-messages"), "error", "Not a URL:", "enter an http(s) address of an image or a web page.");
    $("#search-url").focus();
    return;
  }
  runSearch({ url });
});

/** Send dropped or pasted images/URLs to the active tab's action. */
function route({ files = [], urls = [] }) {
  const images = files.filter((f) => !f.type || f.type.startsWith("image/"));
  if (activeTab() === "catalog") {
    if (images.length || urls.length) addToCatalog({ files: images, urls: images.length ? [] : urls });
    return;
  }
  if (images.length) runSearch({ file: images[0] });
  else if (urls.length) {
    $("#search-url").value = urls[0];
    runSearch({ url: urls[0] });
  }
}

function droppedUrls(dt) {
  const list = (dt.getData("text/uri-list") || dt.getData("text/plain") || "").split(/\r?\n/);
  return list.map((u) => u.trim()).filter((u) => u && !u.startsWith("#") && looksLikeUrl(u));
}

let dragDepth = 0;
function isDrag(e) {
  const types = [...(e.dataTransfer ? e.dataTransfer.types : [])];
  return types.includes("Files") || types.includes("text/uri-list");
}
document.addEventListener("dragenter", (e) => {
  if (!isDrag(e)) return;
  dragDepth++;
  document.body.classList.add("dragging");
});
document.addEventListener("dragleave", () => {
  dragDepth = Math.max(0, dragDepth - 1);
  if (!dragDepth) document.body.classList.remove("dragging");
});
document.addEventListener("dragover", (e) => {
  if (!isDrag(e)) return;
  e.preventDefault();
  e.dataTransfer.dropEffect = "copy";
});
document.addEventListener("drop", (e) => {
  dragDepth = 0;
  document.body.classList.remove("dragging");
  if (!isDrag(e)) return;
  e.preventDefault();
  route({ files: [...e.dataTransfer.files], urls: droppedUrls(e.dataTransfer) });
});

document.addEventListener("paste", (e) => {
  if (document.querySelector("dialog[open]")) return;
  const data = e.clipboardData;
  if (!data) return;
  const files = [...data.files].filter((f) => f.type.startsWith("image/"));
  if (files.length) {
    e.preventDefault();
    route({ files });
    return;
  }
  // Text pasted into a field stays there; elsewhere a URL starts a search or an add.
  if (e.target.closest && e.target.closest("input, textarea, select")) return;
  const text = (data.getData("text/plain") || "").trim();
  if (looksLikeUrl(text)) {
    e.preventDefault();
    route({ urls: [text] });
  }
});

/* ---- start ------------------------------------------------------------------------------ */

// The last choices of these controls are kept in the browser.
const REMEMBERED = { "#search-k": "pictrace.k", "#search-min": "pictrace.minScore" };
for (const [selector, key] of Object.entries(REMEMBERED)) {
  const select = $(selector);
  try {
    const value = localStorage.getItem(key);
    if (value && [...select.options].some((o) => o.value === value)) select.value = value;
  } catch (_) {
    /* storage disabled */
  }
  select.addEventListener("change", (e) => {
    try {
      localStorage.setItem(key, e.target.value);
    } catch (_) {
      /* storage disabled */
    }
  });
}

const linked = linkedSearch();
selectTab(linked || location.hash !== "#catalog" ? "search" : "catalog");
checkHealth();
if (linked) runSearch(linked);
