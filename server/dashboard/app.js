/* The Jazari dashboard: a hash-routed page over the /v1 REST API (docs/rest-api.md), with the
 * user's own API token. Plain JavaScript, no framework, nothing fetched from elsewhere; the DOM
 * is built with textContent only, so nothing the API returns is ever parsed as HTML (and the
 * Content-Security-Policy forbids inline script anyway). docs/dashboard.md says how to add a
 * page. */
"use strict";

const TOKEN_KEY = "jazari.token";
const LOG_POLL_MS = 1000;     /* a running job's log and record are read again this often */
const LOG_KEEP_CHARS = 400000; /* the log view keeps this much of the tail in the page */
const LIST_PAGES_MAX = 20;    /* GET /v1/jobs pages of up to 1000 jobs read for one view */

/* ---- small DOM helpers ------------------------------------------------------------------- */

/* h("a", {href: "#/x", class: "y"}, "text", child...): an element; strings become text nodes. */
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

const SVG_NS = "http://www.w3.org/2000/svg";
function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

function setAttrs(el, attrs) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
}

function append(el, children) {
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

function announce(text) {
  const live = document.getElementById("announce");
  live.textContent = "";
  setTimeout(() => { live.textContent = text; }, 50);
}

/* ---- formatting -------------------------------------------------------------------------- */

function fmtTime(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  if (isNaN(d)) return iso;
  return d.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "medium" });
}

/* "in 12 min", "3 h ago": next to absolute times, so that a glance says how long. */
function fmtRelative(iso) {
  if (!iso) return "";
  const sec = Math.round((new Date(iso) - Date.now()) / 1000);
  const a = Math.abs(sec);
  const txt = a < 60 ? a + " s" : a < 3600 ? Math.round(a / 60) + " min"
    : a < 86400 ? (a / 3600).toFixed(1) + " h" : (a / 86400).toFixed(1) + " days";
  return sec >= 0 ? "in " + txt : txt + " ago";
}

function fmtBytes(n) {
  if (!n) return "memory unknown";
  const gib = n / 1073741824;
  return gib >= 1 ? gib.toFixed(gib >= 10 ? 0 : 1) + " GiB" : (n / 1048576).toFixed(0) + " MiB";
}

function fmtNum(x, digits) {
  if (typeof x !== "number" || !isFinite(x)) return "—";
  return Math.abs(x) >= 1000 ? x.toFixed(0) : Number(x.toPrecision(digits || 4)).toString();
}

function timeCell(iso) {
  if (!iso) return "—";
  return h("time", { datetime: iso }, fmtTime(iso), " (", fmtRelative(iso), ")");
}

function stateBadge(state) {
  return h("span", { class: "state state-" + state }, state);
}

/* ---- the API ----------------------------------------------------------------------------- */

class ApiError extends Error {
  constructor(status, code, message, field) {
    super(message);
    this.status = status;
    this.code = code;
    this.field = field;
  }
}

function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

/* One API call with the session's token. Resolves to the parsed JSON, or (raw) to the
 * Response; rejects with an ApiError carrying the API's {code, message, field}. */
async function api(path, opts = {}) {
  const headers = { Accept: "application/json" };
  const t = opts.token || token();
  if (t) headers.Authorization = "Bearer " + t;
  let res;
  try {
    res = await fetch(path, { method: opts.method || "GET", headers, cache: "no-store",
                              credentials: "omit", redirect: "error" });
  } catch (e) {
    throw new ApiError(0, "network", "cannot reach jazarid (" + e.message + ")", null);
  }
  if (!res.ok) {
    let body = null;
    try { body = await res.json(); } catch (e) { /* not JSON: reported below */ }
    const err = body && body.error;
    if (err) throw new ApiError(res.status, err.code, err.message, err.field);
    throw new ApiError(res.status, "http_" + res.status, res.statusText || "request failed", null);
  }
  return opts.raw ? res : res.json();
}

/* Every job of the given states the user may see, following next_after. */
async function listJobs(states) {
  let jobs = [];
  let after = null;
  for (let page = 0; page < LIST_PAGES_MAX; page++) {
    const q = "/v1/jobs?state=" + encodeURIComponent(states) + "&limit=1000" +
      (after !== null ? "&after=" + after : "");
    const r = await api(q);
    jobs = jobs.concat(r.jobs);
    if (r.next_after === null || r.next_after === undefined) return { jobs, partial: false };
    after = r.next_after;
  }
  return { jobs, partial: true };
}

function errorBox(err) {
  const box = h("div", { class: "error", role: "alert" });
  if (err instanceof ApiError) {
    append(box, [h("strong", {}, err.status ? "Error " + err.status + " " + err.code : err.code),
                 ": ", err.message]);
    if (err.field) append(box, [" (field: ", h("code", {}, err.field), ")"]);
    if (err.status === 401 && state.me)
      append(box, [" ", h("button", { type: "button", class: "secondary", onclick: logout },
                          "Log in again")]);
  } else {
    append(box, [h("strong", {}, "Error"), ": ", String(err && err.message || err)]);
  }
  return box;
}

/* ---- session ----------------------------------------------------------------------------- */

const state = {
  me: null,        /* GET /v1/whoami of the session's token */
  generation: 0,   /* bumped on every navigation: timers of a page left behind stop */
};

function logout() {
  sessionStorage.removeItem(TOKEN_KEY);
  state.me = null;
  showSession();
  if (location.hash === "#/login") route("nav");
  else location.hash = "#/login";
}

function showSession() {
  const nav = document.getElementById("nav");
  const who = document.getElementById("who");
  nav.hidden = who.hidden = !state.me;
  if (state.me)
    document.getElementById("who-name").textContent =
      state.me.name + " (" + state.me.tenant + (state.me.role === "admin" ? ", admin" : "") + ")";
}

/* ---- pages ------------------------------------------------------------------------------- */

function pageHeading(main, text) {
  const h1 = h("h1", { tabindex: "-1" }, text);
  main.replaceChildren(h1);
  document.title = text + " — Jazari";
  return h1;
}

function refreshButton(label) {
  return h("button", { type: "button", class: "secondary", id: "refresh", onclick: () => route("refresh") },
           "Refresh " + label);
}

async function pageLogin(main) {
  pageHeading(main, "Log in");
  const input = h("input", { type: "password", id: "token", name: "token", autocomplete: "off",
                             spellcheck: "false", required: true,
                             "aria-describedby": "token-hint" });
  const out = h("div", { id: "login-result" });
  const form = h("form", { class: "login", id: "login-form", novalidate: true },
    h("label", { for: "token" }, "API token"),
    input,
    h("p", { class: "hint", id: "token-hint" },
      "Paste a token (", h("code", {}, "jz_…"), ") from ", h("code", {}, "jazari admin token add"),
      ", ", h("code", {}, "jazari token rotate"), " or your administrator. It is kept in this " +
      "tab's session storage only, and sent with every request as ",
      h("code", {}, "Authorization: Bearer"), "."),
    h("button", { type: "submit" }, "Log in"),
    out);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    out.replaceChildren();
    const t = input.value.trim();
    if (!t) {
      out.append(errorBox(new ApiError(0, "missing", "paste an API token first", "token")));
      input.focus();
      return;
    }
    try {
      state.me = await api("/v1/whoami", { token: t });
    } catch (err) {
      out.append(errorBox(err));
      input.focus();
      return;
    }
    sessionStorage.setItem(TOKEN_KEY, t);
    showSession();
    /* Where the user was going (a job's link, say), else the cluster. */
    if (location.hash && location.hash !== "#/login") route("nav");
    else location.hash = "#/cluster";
  });
  main.append(form);
  input.focus();
}

/* GPUs grouped by NUMA node (what GET /v1/nodes gives; no PCI switch or NVLink data there). */
function numaGroups(gpus) {
  const groups = new Map();
  for (const g of gpus) {
    const key = typeof g.numa === "number" && g.numa >= 0 ? g.numa : -1;
    if (!groups.has(key)) groups.set(key, []);
    groups.get(key).push(g);
  }
  return [...groups.entries()].sort((a, b) => a[0] - b[0]);
}

/* holder: the job holding g when the user may see it (from GET /v1/jobs). GET /v1/nodes names
 * each GPU's job (g.job) to every user; a job the user may not open is shown without a link.
 * unknownBusy: busy GPUs the API does not place (none while it fills g.job): while there are
 * any, a GPU with no job may be free or another user's. */
function gpuTile(node, g, holder, unknownBusy) {
  const label = "GPU " + g.index + " of " + node.name;
  const cls = holder ? "gpu gpu-held" : g.job ? "gpu gpu-other" : unknownBusy ? "gpu gpu-other"
    : "gpu gpu-free";
  const li = h("li", { class: cls, "data-gpu": g.index },
    h("span", { class: "idx" }, "GPU " + g.index),
    h("span", { class: "model" }, " " + (g.model || "")),
    h("span", { class: "mem" }, fmtBytes(g.memory_bytes)),
    h("span", { class: "bus" }, g.pci_bus_id || ""));
  if (holder)
    li.append(h("a", { class: "holder", href: "#/jobs/" + holder.id,
                       "aria-label": label + ": held by job " + holder.id +
                         (holder.name ? " " + holder.name : "") },
                "job " + holder.id + (holder.name ? " · " + holder.name : "")));
  else if (g.job)
    li.append(h("span", { class: "holder" }, "job " + g.job + " · another user's"));
  else
    li.append(h("span", { class: "holder muted" }, unknownBusy ? "free or another user's" : "free"));
  return li;
}

async function pageCluster(main) {
  pageHeading(main, "Cluster");
  const [nodes, running] = await Promise.all([api("/v1/nodes"), listJobs("RUNNING")]);
  /* Which of the caller's (or, for admins, anyone's) running jobs holds which GPU. */
  const holders = new Map();
  for (const j of running.jobs)
    for (const g of j.gpus || [])
      holders.set((g.node || j.node) + "/" + g.index, j);
  main.append(h("div", { class: "actions" }, refreshButton("cluster"),
    h("span", { class: "muted" }, nodes.nodes.length + " node(s)")));
  main.append(h("p", { class: "legend", "aria-hidden": "true" },
    h("span", { class: "l-held" }, "held by your job (linked)"),
    h("span", { class: "l-other" }, "held by another user's job"),
    h("span", { class: "l-free" }, "free"),
    h("span", { class: "l-numa" }, "one NUMA node")));
  if (!nodes.nodes.length) main.append(h("p", {}, "No nodes have joined yet."));
  for (const n of nodes.nodes) {
    const id = "node-" + n.name.replace(/[^A-Za-z0-9_-]/g, "_");
    const sec = h("section", { class: "node", "aria-labelledby": id + "-h", "data-node": n.name });
    sec.append(h("h2", { id: id + "-h" }, n.name + " — " + n.state));
    const held = (n.gpus || []).filter((g) => holders.has(n.name + "/" + g.index) || g.job).length;
    const busy = (n.gpus_total || 0) - (n.gpus_free || 0);
    sec.append(h("p", { class: "facts" },
      [n.site ? "site " + n.site : null, n.gpu_model, (n.gpus_free ?? "?") + " of " +
        (n.gpus_total ?? "?") + " GPUs free", (n.cores_free ?? "?") + " of " + (n.cores ?? "?") +
        " cores free", n.running_jobs + " running job(s)", n.source,
       n.last_heartbeat ? "last heartbeat " + fmtTime(n.last_heartbeat) : null,
       n.drain_reason ? "drained: " + n.drain_reason : null].filter(Boolean).join(" · ")));
    if (busy > held)
      sec.append(h("p", { class: "muted" }, (busy - held) + " GPU(s) are held by jobs the " +
                      "service does not place on a GPU here."));
    if (!(n.gpus || []).length) {
      sec.append(h("p", {}, "No GPUs on this node."));
    } else {
      const row = h("div", { class: "numa-row", role: "group",
                             "aria-label": "GPU topology of " + n.name });
      for (const [numa, gpus] of numaGroups(n.gpus)) {
        const title = numa >= 0 ? "NUMA node " + numa : "NUMA node unknown";
        const list = h("ul", { class: "gpus", "aria-label": title + " GPUs" });
        for (const g of gpus.sort((a, b) => a.index - b.index))
          list.append(gpuTile(n, g, holders.get(n.name + "/" + g.index), Math.max(0, busy - held)));
        row.append(h("div", { class: "numa", "data-numa": numa }, h("h3", {}, title), list));
      }
      sec.append(row);
    }
    main.append(sec);
  }
  if (running.partial) main.append(h("p", { class: "muted" }, "Only the first jobs are shown."));
}

function jobLink(j) {
  return h("a", { href: "#/jobs/" + j.id, class: "job-link" }, String(j.id));
}

function gpusAsked(j) {
  const r = j.resources || {};
  if (r.nodes > 1 && r.gpus_per_node) return r.nodes + " nodes × " + r.gpus_per_node;
  return r.gpus ? String(r.gpus) : "0";
}

async function pageQueue(main) {
  pageHeading(main, "Queue");
  const { jobs, partial } = await listJobs("PENDING,RUNNING");
  main.append(h("div", { class: "actions" }, refreshButton("queue"),
    h("span", { class: "muted" }, jobs.filter((j) => j.state === "PENDING").length +
      " pending, " + jobs.filter((j) => j.state === "RUNNING").length + " running")));
  if (!jobs.length) {
    main.append(h("p", {}, "No pending or running jobs."));
    return;
  }
  const cols = ["Job", "Name", "User", "Tenant", "Plugin", "State", "GPUs", "Reason",
                "Estimated start", "Submitted"];
  const table = h("table", { id: "queue-table" },
    h("caption", {}, "Pending and running jobs" + (state.me.role === "admin" ? " (all users)"
                                                                              : " (yours)")),
    h("thead", {}, h("tr", {}, cols.map((c) => h("th", { scope: "col" }, c)))));
  const body = h("tbody");
  for (const j of jobs) {
    const reason = j.state === "PENDING"
      ? [j.reason || "waiting", j.reason_code ? h("span", { class: "muted" }, " [" + j.reason_code + "]") : null]
      : "running on " + (j.nodes || [j.node]).filter(Boolean).join(", ");
    body.append(h("tr", { "data-job": j.id, "data-state": j.state },
      h("th", { scope: "row" }, jobLink(j)),
      h("td", {}, j.name || "—"), h("td", {}, j.user), h("td", {}, j.tenant || "—"),
      h("td", {}, j.plugin), h("td", {}, stateBadge(j.state)),
      h("td", { class: "num" }, gpusAsked(j)),
      h("td", { class: "reason" }, reason),
      h("td", { class: "estimated" }, j.state === "PENDING"
        ? (j.estimated_start ? timeCell(j.estimated_start) : "unknown") : "started " + fmtTime(j.start_time)),
      h("td", {}, timeCell(j.submit_time))));
  }
  table.append(body);
  main.append(table);
  if (partial) main.append(h("p", { class: "muted" }, "Only the first jobs are shown."));
}

/* Short runs cost tiny amounts: they keep two significant digits rather than show as 0. */
function gpuHours(x) {
  if (typeof x !== "number" || !isFinite(x)) return "—";
  if (x !== 0 && Math.abs(x) < 0.01) return x.toPrecision(2);
  return x.toFixed(Math.abs(x) < 10 ? 3 : 1);
}

async function pageTenants(main) {
  pageHeading(main, "Tenants");
  const usage = await api("/v1/usage");
  main.append(h("div", { class: "actions" }, refreshButton("tenants")));
  main.append(h("p", { class: "muted" }, "GPU-hours: GPUs × wall time, charged when each run " +
    "ends. A metered tenant's jobs wait (reason credits) once its balance is used up."));
  const cols = ["Tenant", "Metered", "Granted GPU·h", "Used GPU·h", "Balance GPU·h", "Jobs",
                "Used by plugin (GPU·h)"];
  const table = h("table", { id: "tenants-table" },
    h("caption", {}, "Usage and credit by tenant"),
    h("thead", {}, h("tr", {}, cols.map((c, i) => h("th", { scope: "col", class: i >= 2 && i <= 5 ? "num" : null }, c)))));
  const body = h("tbody");
  for (const t of usage.tenants) {
    const byPlugin = Object.entries(t.used_gpu_hours_by_plugin || {})
      .map(([p, v]) => p + " " + gpuHours(v)).join(", ") || "—";
    let balance = gpuHours(t.balance_gpu_hours);
    if (t.metered && t.granted_gpu_hours > 0) {
      const left = Math.max(0, t.balance_gpu_hours);
      balance = [h("meter", { min: 0, max: t.granted_gpu_hours, value: left,
                              "aria-label": "balance of " + t.tenant }), " ", balance,
                 t.balance_gpu_hours <= 0 ? " (used up)" : ""];
    }
    body.append(h("tr", { "data-tenant": t.tenant },
      h("th", { scope: "row" }, t.tenant),
      h("td", {}, t.metered ? "yes" : "no (no credit limit)"),
      h("td", { class: "num granted" }, gpuHours(t.granted_gpu_hours)),
      h("td", { class: "num used" }, gpuHours(t.used_gpu_hours)),
      h("td", { class: "num balance" }, balance),
      h("td", { class: "num jobs" }, t.jobs ?? "—"),
      h("td", {}, byPlugin)));
  }
  table.append(body);
  main.append(table);
}

/* ---- the job page ------------------------------------------------------------------------ */

function recordList(j) {
  const rows = [
    ["State", [stateBadge(j.state), j.reason ? " — " + j.reason : "",
               j.reason_code ? " [" + j.reason_code + "]" : ""]],
    ["Name", j.name || "—"], ["User", j.user], ["Tenant", j.tenant || "—"],
    ["Plugin", j.plugin + (j.plugin_version ? " " + j.plugin_version : "")],
    ["Submitted", timeCell(j.submit_time)],
    ["Estimated start", j.state === "PENDING" ? (j.estimated_start ? timeCell(j.estimated_start) : "unknown") : null],
    ["Started", j.start_time ? timeCell(j.start_time) : null],
    ["Ended", j.end_time ? timeCell(j.end_time) : null],
    ["Node(s)", (j.nodes && j.nodes.length ? j.nodes : j.node ? [j.node] : []).join(", ") || null],
    ["GPUs", (j.gpus || []).length ? (j.gpus || []).map((g) => "GPU " + g.index + " (" +
      g.model + ", " + g.pci_bus_id + (g.node ? ", " + g.node : "") + ")").join("; ") : null],
    ["Placement", j.placement || null],
    ["CPUs", j.cpus || null], ["Backend", j.backend || null],
    ["Progress", j.progress ? [h("progress", { max: 1, value: j.progress.fraction || 0,
                                               "aria-label": "progress" }),
                               " " + Math.round((j.progress.fraction || 0) * 100) + "%",
                               j.progress.message ? " — " + j.progress.message : ""] : null],
    ["Latest metrics", j.metrics && Object.keys(j.metrics).length
      ? Object.entries(j.metrics).map(([k, v]) => k + " " + fmtNum(v)).join(", ") : null],
    ["Exit", j.exit_code !== null && j.exit_code !== undefined ? "code " + j.exit_code
      : j.signal ? "signal " + j.signal : null],
    ["Cancelled by", j.cancelled_by || null],
    ["Artifacts", (j.artifacts || []).length ? j.artifacts.join(", ") : null],
    ["Resources", JSON.stringify(j.resources || {})],
    ["Parameters", JSON.stringify(j.params || {})],
  ];
  const dl = h("dl", { class: "record", id: "job-record" });
  for (const [k, v] of rows) {
    if (v === null || v === undefined) continue;
    dl.append(h("dt", {}, k), h("dd", {}, v));
  }
  return dl;
}

/* Per-epoch metrics. The train plugin logs one line per epoch
 * ("train: epoch 2/10: train_loss 0.41 train_accuracy 0.85 test_accuracy 0.83, ...");
 * metric events, where the API records them, are used instead (see docs/dashboard.md). */
const EPOCH_LINE = /epoch (\d+)\/(\d+):\s*(.*)$/;
const NAME_VALUE = /([A-Za-z_][A-Za-z0-9_]*)\s+(-?(?:\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|nan|inf))/g;

function seriesFromLog(text) {
  const series = new Map(); /* name -> Map(epoch -> value) */
  for (const line of text.split("\n")) {
    const m = EPOCH_LINE.exec(line);
    if (!m) continue;
    const epoch = Number(m[1]);
    for (const [, name, val] of m[3].matchAll(NAME_VALUE)) {
      const v = Number(val);
      if (!isFinite(v)) continue;
      if (!series.has(name)) series.set(name, new Map());
      series.get(name).set(epoch, v);
    }
  }
  return series;
}

function seriesFromEvents(events) {
  const series = new Map();
  for (const e of events) {
    if (e.type !== "metric" || !e.detail) continue;
    let d;
    try { d = JSON.parse(e.detail); } catch (err) { continue; }
    if (!d || typeof d.name !== "string" || typeof d.value !== "number" ||
        typeof d.step !== "number") continue;
    if (!series.has(d.name)) series.set(d.name, new Map());
    series.get(d.name).set(d.step, d.value);
  }
  return series;
}

/* "Nice" axis ticks covering [lo, hi]. Values come from jobs (any user's log lines), so the
 * count is bounded whatever they are: where a step no longer moves a float (1e17 + 5), the
 * ends alone are the ticks. */
function ticks(lo, hi, want) {
  if (!(isFinite(lo) && isFinite(hi))) return [0, 1];
  if (hi <= lo) { hi = lo + 1; }
  const raw = (hi - lo) / want;
  const mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 5, 10].map((f) => f * mag).find((st) => st >= raw) || raw;
  const start = Math.floor(lo / step) * step;
  if (!(step > 0) || start + step === start || hi + step === hi) return [lo, hi];
  const out = [];
  for (let i = 0; i <= 4 * want + 2; i++) {
    const v = start + i * step;
    if (v > hi + step * 1e-9) break;
    out.push(Number(v.toPrecision(12)));
  }
  return out.length ? out : [lo, hi];
}

const MARKS = ["circle", "square", "triangle", "diamond"];

function marker(kind, x, y, cls, label) {
  const t = s("title", {}, label);
  if (kind === "square")
    return s("rect", { class: cls, x: x - 3.5, y: y - 3.5, width: 7, height: 7 }, t);
  if (kind === "triangle")
    return s("polygon", { class: cls, points: [x, y - 4.5, x - 4, y + 3, x + 4, y + 3].join(" ") }, t);
  if (kind === "diamond")
    return s("polygon", { class: cls, points: [x, y - 4.5, x + 4.5, y, x, y + 4.5, x - 4.5, y].join(" ") }, t);
  return s("circle", { class: cls, cx: x, cy: y, r: 3.5 }, t);
}

/* One line chart (SVG drawn here) of the named series over epochs, with a legend that names
 * each line by its dash and marker as well as its colour, and the numbers in a table. */
function lineChart(id, title, names, series) {
  const W = 480, H = 260, L = 52, R = 12, T = 12, B = 34;
  const used = names.filter((n) => series.has(n) && series.get(n).size);
  const fig = h("figure", { class: "chart", id, "data-series": used.join(",") });
  const cap = h("figcaption", { id: id + "-cap" }, title);
  fig.append(cap);
  const pts = used.map((n) => [...series.get(n).entries()].sort((a, b) => a[0] - b[0]));
  const xs = pts.flat().map((p) => p[0]), ys = pts.flat().map((p) => p[1]);
  let xlo = Math.min(...xs), xhi = Math.max(...xs);
  if (xlo === xhi) { xlo -= 1; xhi += 1; }
  let ylo = Math.min(...ys), yhi = Math.max(...ys);
  if (ylo >= 0 && yhi <= 1 && /accuracy/.test(title.toLowerCase())) { ylo = 0; yhi = 1; }
  if (ylo === yhi) { ylo -= Math.abs(ylo) * 0.1 || 1; yhi += Math.abs(yhi) * 0.1 || 1; }
  const yt = ticks(ylo, yhi, 5);
  ylo = Math.min(ylo, yt[0]); yhi = Math.max(yhi, yt[yt.length - 1]);
  const X = (v) => L + (v - xlo) / (xhi - xlo) * (W - L - R);
  const Y = (v) => H - B - (v - ylo) / (yhi - ylo) * (H - T - B);
  const desc = used.map((n, i) => {
    const p = pts[i];
    return n + " from " + fmtNum(p[0][1]) + " at epoch " + p[0][0] + " to " +
      fmtNum(p[p.length - 1][1]) + " at epoch " + p[p.length - 1][0];
  }).join("; ");
  const svg = s("svg", { class: "plot", viewBox: "0 0 " + W + " " + H, role: "img",
                         "aria-labelledby": id + "-cap " + id + "-desc" },
    s("desc", { id: id + "-desc" }, desc + "."));
  for (const v of yt) {
    svg.append(s("line", { class: "grid", x1: L, x2: W - R, y1: Y(v), y2: Y(v) }),
               s("text", { x: L - 6, y: Y(v) + 4, "text-anchor": "end" }, fmtNum(v, 3)));
  }
  const xt = ticks(xlo, xhi, Math.min(8, Math.max(1, xhi - xlo))).filter((v) => Number.isInteger(v) && v >= xlo && v <= xhi);
  for (const v of xt)
    svg.append(s("line", { class: "axis", x1: X(v), x2: X(v), y1: H - B, y2: H - B + 4 }),
               s("text", { x: X(v), y: H - B + 16, "text-anchor": "middle" }, String(v)));
  svg.append(s("line", { class: "axis", x1: L, x2: W - R, y1: H - B, y2: H - B }),
             s("line", { class: "axis", x1: L, x2: L, y1: T, y2: H - B }),
             s("text", { x: (L + W - R) / 2, y: H - 4, "text-anchor": "middle" }, "epoch"));
  used.forEach((n, i) => {
    const p = pts[i];
    svg.append(s("polyline", { class: "series s" + i, "data-name": n,
                               points: p.map(([x, y]) => X(x).toFixed(1) + "," + Y(y).toFixed(1)).join(" ") }));
    for (const [x, y] of p)
      svg.append(marker(MARKS[i % MARKS.length], X(x), Y(y), "pt s" + i,
                        n + ", epoch " + x + ": " + fmtNum(y)));
  });
  fig.append(svg);
  const legend = h("ul", { class: "chart-legend" });
  used.forEach((n, i) => {
    legend.append(h("li", {}, s("svg", { width: 34, height: 12, "aria-hidden": "true", class: "plot" },
      s("line", { class: "series s" + i, x1: 1, x2: 33, y1: 6, y2: 6 }),
      marker(MARKS[i % MARKS.length], 17, 6, "pt s" + i, n)), " " + n));
  });
  fig.append(legend);
  const epochs = [...new Set(xs)].sort((a, b) => a - b);
  const table = h("table", { class: "chart-data" },
    h("caption", { class: "sr-only" }, title + " by epoch"),
    h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "epoch"),
                     used.map((n) => h("th", { scope: "col", class: "num" }, n)))),
    h("tbody", {}, epochs.map((e) => h("tr", {}, h("th", { scope: "row" }, String(e)),
      used.map((n) => h("td", { class: "num" }, fmtNum(series.get(n).get(e))))))));
  fig.append(h("details", { id: id + "-numbers" }, h("summary", { id: id + "-numbers-s" }, "Numbers"),
               table));
  return fig;
}

function chartsFor(series) {
  const wrap = h("div", { class: "charts", id: "job-charts" });
  const names = [...series.keys()];
  const loss = names.filter((n) => /loss/.test(n));
  const acc = names.filter((n) => /acc/.test(n));
  if (loss.length) wrap.append(lineChart("chart-loss", "Loss per epoch", loss, series));
  if (acc.length) wrap.append(lineChart("chart-accuracy", "Accuracy per epoch", acc, series));
  if (!loss.length && !acc.length)
    wrap.append(h("p", { class: "muted" }, "No per-epoch metrics (yet): charts appear when the " +
                  "job reports epochs, as training jobs do."));
  return wrap;
}

function canCancel(j) {
  return (j.state === "PENDING" || j.state === "RUNNING") && state.me &&
    (state.me.role === "admin" || j.user === state.me.name);
}

async function pageJob(main, id) {
  const gen = state.generation;
  pageHeading(main, "Job " + id);
  let job = await api("/v1/jobs/" + id);
  let events = (await api("/v1/jobs/" + id + "/events")).events;
  if (gen !== state.generation) return;
  main.querySelector("h1").textContent = "Job " + id + (job.name ? " · " + job.name : "");
  const actions = h("div", { class: "actions", id: "job-actions" });
  const status = h("div", { id: "job-status" });
  const recordSlot = h("div", {}, recordList(job));
  const chartSlot = h("div", {});
  const logView = h("pre", { class: "log", id: "job-log", tabindex: "0", role: "log",
                             "aria-label": "log of job " + id, "aria-live": "off" });
  const eventsSlot = h("div", {});
  main.append(actions, status, h("h2", {}, "Record"), recordSlot,
              h("h2", {}, "Metrics"), chartSlot, h("h2", { id: "log-h" }, "Log"), logView,
              h("h2", {}, "Events"), eventsSlot);

  function drawActions() {
    actions.replaceChildren(refreshButton("job"));
    if (canCancel(job))
      actions.append(h("button", { type: "button", class: "danger", id: "cancel-job",
                                   onclick: cancel }, "Cancel job " + id));
  }
  async function cancel() {
    status.replaceChildren();
    try {
      job = await api("/v1/jobs/" + id + "/cancel", { method: "POST" });
      status.append(h("p", { role: "status" }, "Cancel requested: the job is " + job.state + "."));
      recordSlot.replaceChildren(recordList(job));
      drawActions();
      document.getElementById("job-actions").querySelector("button").focus();
      schedule(0);
    } catch (err) {
      status.append(errorBox(err));
    }
  }
  function drawEvents() {
    const t = h("table", { id: "job-events" }, h("caption", { class: "sr-only" }, "Events"),
      h("thead", {}, h("tr", {}, ["Time", "Event", "Detail"].map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", {}, events.map((e) => h("tr", {}, h("td", {}, fmtTime(e.time)),
                                         h("td", {}, e.type), h("td", {}, e.detail || "")))));
    eventsSlot.replaceChildren(events.length ? t : h("p", {}, "No events."));
  }
  /* The log is read by offset (X-Jazari-Next-Offset) once a second while the job runs: each
   * read is a short request, so nothing is held open and a lost read is simply retried. */
  let offset = 0, logText = "", trimmed = false, timer = null;
  /* One pending read at a time, however often it is asked for (a cancel asks at once). */
  function schedule(ms) {
    clearTimeout(timer);
    timer = setTimeout(poll, ms);
  }
  const decoder = new TextDecoder("utf-8");
  async function readLog() {
    for (let i = 0; i < 8; i++) { /* at most 8 MiB per tick; the rest next tick */
      const res = await api("/v1/jobs/" + id + "/log?offset=" + offset, { raw: true });
      const next = Number(res.headers.get("X-Jazari-Next-Offset"));
      const buf = await res.arrayBuffer();
      if (gen !== state.generation) return false;
      if (!buf.byteLength) break;
      logText += decoder.decode(buf, { stream: true });
      offset = isFinite(next) && next > offset ? next : offset + buf.byteLength;
      if (buf.byteLength < 1048576) break;
    }
    if (logText.length > LOG_KEEP_CHARS) {
      logText = logText.slice(logText.length - LOG_KEEP_CHARS);
      trimmed = true;
    }
    const atEnd = logView.scrollTop + logView.clientHeight >= logView.scrollHeight - 4;
    logView.textContent = (trimmed ? "[earlier lines not shown: jazari logs " + id + "]\n" : "") +
      (logText || "(nothing logged yet)");
    if (atEnd) logView.scrollTop = logView.scrollHeight;
    return true;
  }
  /* Redrawn only when the numbers changed, keeping open tables open and the focus in place:
   * a running job's page is read again every second. */
  let drawn = null;
  function drawCharts() {
    const fromEvents = seriesFromEvents(events);
    const series = fromEvents.size ? fromEvents : seriesFromLog(logText);
    const sig = JSON.stringify([...series].map(([n, m]) => [n, [...m]]));
    if (sig === drawn) return;
    drawn = sig;
    const open = [...chartSlot.querySelectorAll("details[open]")].map((e) => e.id);
    const focused = chartSlot.contains(document.activeElement) ? document.activeElement.id : null;
    chartSlot.replaceChildren(chartsFor(series));
    for (const id of open) if (document.getElementById(id)) document.getElementById(id).open = true;
    if (focused && document.getElementById(focused)) document.getElementById(focused).focus();
  }
  async function poll() {
    if (gen !== state.generation) return;
    try {
      const live = job.state === "PENDING" || job.state === "RUNNING";
      if (live) {
        const before = job;
        job = await api("/v1/jobs/" + id);
        /* The events (state changes, per-epoch metrics) are read again only when they can
         * have changed: the server reads them from its database for every request. */
        if (job.state !== before.state || job.metrics_step !== before.metrics_step ||
            job.requeues !== before.requeues)
          events = (await api("/v1/jobs/" + id + "/events")).events;
        if (gen !== state.generation) return;
        recordSlot.replaceChildren(recordList(job));
        drawEvents();
        if (!canCancel(job) && document.getElementById("cancel-job")) drawActions();
      }
      if (!(await readLog())) return;
      drawCharts();
      status.replaceChildren();
      if (job.state === "PENDING" || job.state === "RUNNING") schedule(LOG_POLL_MS);
      else if (live) { await readLog(); drawCharts(); announce("Job " + id + " " + job.state); }
    } catch (err) {
      if (gen !== state.generation) return;
      status.replaceChildren(errorBox(err));
      if (err.status !== 401 && err.status !== 404) schedule(5 * LOG_POLL_MS);
    }
  }
  drawActions();
  drawEvents();
  await readLog();
  drawCharts();
  if (job.state === "PENDING" || job.state === "RUNNING") schedule(LOG_POLL_MS);
}

/* ---- routing ----------------------------------------------------------------------------- */

const ROUTES = [
  [/^#\/cluster$/, pageCluster, "nav-cluster"],
  [/^#\/queue$/, pageQueue, "nav-queue"],
  [/^#\/tenants$/, pageTenants, "nav-tenants"],
  [/^#\/jobs\/([1-9][0-9]{0,17})$/, pageJob, null],
];

/* Draws the page of location.hash. how: "nav" (focus moves to the new page's heading, as a
 * screen reader user expects after following a link), "refresh" (focus stays where it was when
 * that element is still there) or "load" (the browser's own start: focus is left alone, so the
 * first Tab reaches the skip link). */
async function route(how) {
  const keepFocus = how === "refresh";
  const gen = ++state.generation;
  const main = document.getElementById("main");
  const hash = location.hash;
  for (const a of document.querySelectorAll("#nav a")) a.removeAttribute("aria-current");
  if (!token() || hash === "#/login") {
    if (token() && hash === "#/login") { location.hash = "#/cluster"; return; }
    state.me = null;
    showSession();
    await pageLogin(main);
    return;
  }
  if (!state.me) {
    try {
      state.me = await api("/v1/whoami");
    } catch (err) {
      if (gen !== state.generation) return;
      pageHeading(main, "Cannot load the dashboard");
      main.append(errorBox(err));
      if (err.status === 401)
        main.append(h("p", {}, h("a", { href: "#/login", onclick: logout }, "Log in with another token")));
      return;
    }
    showSession();
  }
  let page = null, args = [], navId = null;
  for (const [re, fn, nav] of ROUTES) {
    const m = re.exec(hash);
    if (m) { page = fn; args = m.slice(1); navId = nav; break; }
  }
  if (!page) {
    location.replace("#/cluster");
    return;
  }
  if (navId) document.getElementById(navId).setAttribute("aria-current", "page");
  const focused = keepFocus ? document.activeElement && document.activeElement.id : null;
  main.setAttribute("aria-busy", "true");
  try {
    await page(main, ...args);
  } catch (err) {
    if (gen === state.generation) main.append(errorBox(err));
  }
  if (gen !== state.generation) return;
  main.removeAttribute("aria-busy");
  const again = focused && document.getElementById(focused);
  if (again) again.focus();
  else if (how === "nav") main.querySelector("h1").focus();
  if (keepFocus) announce("Updated");
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("logout").addEventListener("click", logout);
  /* The skip link moves focus, not the hash (the hash is the router's). */
  document.getElementById("skip-link").addEventListener("click", (ev) => {
    ev.preventDefault();
    const target = document.querySelector("#main h1") || document.getElementById("main");
    target.focus();
  });
  window.addEventListener("hashchange", () => route("nav"));
  if (!location.hash) location.replace(token() ? "#/cluster" : "#/login");
  route("load");
});
