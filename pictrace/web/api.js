/* PicTrace API client: where the API is, the optional key, and requests.
 *
 * The page is served by the API itself at its root ("/" locally,
 * "/Prod/" behind an API Gateway stage), so the API base is the page's own
 * directory and every call uses a relative path.  "?api=<url>" points the
 * page at another deployment.
 */
"use strict";

const KEY_STORAGE = "pictrace.apiKey";
// A Lambda request payload is at most 6 MB and API Gateway base64-encodes
// binary bodies (4/3 larger), so bigger files go through a presigned upload.
const DIRECT_UPLOAD_MAX = 4 * 1024 * 1024;

/** The API base URL, always ending in "/". */
function apiBase() {
  const override = new URLSearchParams(location.search).get("api");
  if (override) {
    try {
      const url = new URL(override, location.href);
      if (url.protocol === "http:" || url.protocol === "https:") {
        return url.href.endsWith("/") ? url.href : url.href + "/";
      }
    } catch (_) {
      /* fall through to the page's own location */
    }
  }
  let path = location.pathname;
  if (!path.endsWith("/")) {
    const last = path.slice(path.lastIndexOf("/") + 1);
    // "/Prod" is the stage root without its slash; "/x/index.html" is a file.
    path = last.includes(".") ? path.slice(0, path.lastIndexOf("/") + 1) : path + "/";
  }
  return location.origin + path;
}

function apiKey() {
  try {
    return localStorage.getItem(KEY_STORAGE) || "";
  } catch (_) {
    return "";
  }
}

function setApiKey(value) {
  try {
    if (value) localStorage.setItem(KEY_STORAGE, value);
    else localStorage.removeItem(KEY_STORAGE);
  } catch (_) {
    /* storage disabled: the key only lasts for this page */
  }
}

/** An API failure carrying the HTTP status and the API's JSON error body. */
class ApiError extends Error {
  constructor(status, body, fallback) {
    let message = (body && (body.message || body.Message)) || fallback || `request failed (HTTP ${status})`;
    // API Gateway's own 403 only says "Forbidden": say what to do about it.
    if (status === 403 && !(body && body.error)) message += " (this API needs a valid API key: set it in Settings)";
    super(message);
    this.status = status;
    this.code = (body && body.error) || (status === 403 ? "forbidden" : status ? `http_${status}` : "network");
    this.body = body || {};
  }
}

/**
 * Send one request; resolves to the parsed JSON body, rejects with ApiError.
 * opts: {method, body, headers, onUpload(fraction), signal (AbortSignal), absolute}
 */
function request(path, opts = {}) {
  const url = opts.absolute ? path : new URL(path, apiBase()).href;
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open(opts.method || "GET", url);
    xhr.responseType = "text";
    const key = apiKey();
    if (key && !opts.absolute) xhr.setRequestHeader("X-Api-Key", key);
    for (const [name, value] of Object.entries(opts.headers || {})) xhr.setRequestHeader(name, value);
    if (opts.onUpload) {
      xhr.upload.onprogress = (e) => e.lengthComputable && opts.onUpload(e.loaded / e.total);
    }
    if (opts.signal) {
      if (opts.signal.aborted) return reject(new DOMException("cancelled", "AbortError"));
      opts.signal.addEventListener("abort", () => xhr.abort(), { once: true });
    }
    xhr.onabort = () => reject(new DOMException("cancelled", "AbortError"));
    xhr.onerror = () =>
      reject(new ApiError(0, null, `cannot reach ${opts.absolute ? "storage" : "the PicTrace API"} (network error or CORS)`));
    xhr.onload = () => {
      let body = null;
      try {
        body = xhr.responseText ? JSON.parse(xhr.responseText) : {};
      } catch (_) {
        body = null;
      }
      if (xhr.status >= 200 && xhr.status < 300) resolve(body || {});
      else reject(new ApiError(xhr.status, body));
    };
    xhr.send(opts.body === undefined ? null : opts.body);
  });
}

function jsonBody(obj) {
  return { body: JSON.stringify(obj), headers: { "Content-Type": "application/json" } };
}

/**
 * The request body for one image file: multipart (keeps the file name) when
 * small enough, else a presigned upload followed by {"s3_key": ...}.
 */
async function imageBody(file, { onUpload, signal } = {}) {
  if (file.size <= DIRECT_UPLOAD_MAX) {
    const form = new FormData();
    form.append("file", file, file.name || "pasted-image");
    return { body: form, headers: {} };
  }
  const type = file.type && file.type.startsWith("image/") ? file.type : "image/jpeg";
  const slot = await request("uploads", { method: "POST", ...jsonBody({ content_type: type }), signal });
  if (slot.max_bytes && file.size > slot.max_bytes) {
    throw new ApiError(413, { error: "payload_too_large", message: `the file is ${formatBytes(file.size)}; the limit is ${formatBytes(slot.max_bytes)}` });
  }
  await request(slot.url, { ...uploadBody(slot, file), onUpload, signal, absolute: true });
  return jsonBody({ s3_key: slot.s3_key });
}

/**
 * What storage wants for a presigned upload: a POST form (the signed fields,
 * then the file, which S3 refuses past the policy's size) or a PUT of the bytes.
 */
function uploadBody(slot, file) {
  if (slot.method === "POST") {
    const form = new FormData();
    for (const [name, value] of Object.entries(slot.fields || {})) form.append(name, value);
    form.append("file", file);
    return { method: "POST", body: form, headers: {} };
  }
  return { method: slot.method || "PUT", body: file, headers: slot.headers || {} };
}

function formatBytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(n < 10240 ? 1 : 0)} KB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}

/** "k=5&ranking=default&min_score=0.4": the search options as a query string (min_score and filter only when set). */
function searchParams({ k, ranking, minScore, filter, mode }) {
  const params = new URLSearchParams({ k: String(k), ranking });
  if (mode && mode !== "default") params.set("mode", mode);
  if (Number(minScore) > 0) params.set("min_score", String(minScore));
  if (filter) params.set("filter", filter); // JSON text; the API says what is wrong with it
  return params.toString();
}

const Api = {
  health: () => request("health"),
  search: (body, { k, ranking, minScore, filter, mode, onUpload, signal }) =>
    request(`search?${searchParams({ k, ranking, minScore, filter, mode })}`, { method: "POST", ...body, onUpload, signal }),
  similar: (id, { k, ranking, minScore, filter, mode, signal }) =>
    request(`images/${encodeURIComponent(id)}/similar?${searchParams({ k, ranking, minScore, filter, mode })}`, { signal }),
  compare: (body, { signal } = {}) => request("compare", { method: "POST", ...body, signal }),
  addImages: (body, { onUpload, signal, meta } = {}) =>
    request(meta ? `images?meta=${encodeURIComponent(meta)}` : "images", { method: "POST", ...body, onUpload, signal }),
  listImages: (cursor, limit = 24) =>
    request(`images?limit=${limit}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`),
  getImage: (id) => request(`images/${encodeURIComponent(id)}`),
  deleteImage: (id) => request(`images/${encodeURIComponent(id)}`, { method: "DELETE" }),
  matches: (id, querySha) => request(`images/${encodeURIComponent(id)}/matches?query=${encodeURIComponent(querySha)}`),
  duplicates: ({ minScore, cursor, limit = 10 }) =>
    request(`duplicates?${new URLSearchParams({ min_score: String(minScore), limit: String(limit), ...(cursor ? { cursor } : {}) })}`),
  scanDuplicates: () => request("duplicates", { method: "POST" }),
};
