// The status page. Every request carries an API key, kept in this tab's
// sessionStorage (or handed over once in the URL fragment, #key=…, which
// browsers never send to the server): an admin key shows every tenant, the
// consumer lag and any tenant's views; a tenant's key shows that tenant's
// views and runs its SQL.
"use strict";

const params = new URLSearchParams(location.search);
let selected = params.get("tenant") || "";
const KEY = "fhirlake-key";

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v; else if (k.startsWith("data-")) e.setAttribute(k, v); else e[k] = v;
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(c == null ? "" : String(c)));
  return e;
}

function when(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  return isNaN(d) ? "—" : d.toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
}

function age(iso, now) {
  if (!iso) return "—";
  const s = Math.max(0, (now - new Date(iso)) / 1000);
  if (s < 90) return Math.round(s) + " s";
  if (s < 5400) return Math.round(s / 60) + " min";
  if (s < 172800) return Math.round(s / 3600) + " h";
  return Math.round(s / 86400) + " d";
}

// takeFragmentKey moves a key handed over as #key=… into this tab's
// storage and out of the address bar and history.
function takeFragmentKey() {
  const k = new URLSearchParams(location.hash.slice(1)).get("key");
  if (k) {
    sessionStorage.setItem(KEY, k);
    history.replaceState(null, "", location.pathname + location.search);
  }
}

function pageKey() { return sessionStorage.getItem(KEY) || ""; }

async function getJSON(url, opts, key) {
  opts = opts || {};
  opts.headers = Object.assign({ "Authorization": "Bearer " + (key === undefined ? pageKey() : key) }, opts.headers || {});
  const r = await fetch(url, opts);
  const body = await r.json().catch(() => null);
  if (!r.ok) {
    const e = body && body.error;
    const err = new Error(e ? e.message + (e.request_id ? ` (request ${e.request_id})` : "") : r.status + " " + r.statusText);
    err.status = r.status;
    throw err;
  }
  return body;
}

function notice(text, cls) {
  const p = document.getElementById("notice");
  p.textContent = text;
  p.className = cls || "muted";
}

// completeText says through when the tenant's lake is complete: every
// change produced to Kafka before that time is durable.
function completeText(c) {
  if (!c || c.state !== "ok" || !c.complete_through) return "unknown";
  return when(c.complete_through);
}

async function loadStatus() {
  const st = await getJSON("/v1/status");
  const c = st.consumer || {};
  const pill = document.getElementById("consumer");
  pill.hidden = false;
  pill.textContent = c.state === "ok" ? `consumer lag: ${c.total} (group ${c.group})` : "consumer lag: unknown";
  pill.dataset.state = c.state || "unknown";
  const body = document.querySelector("#tenants tbody");
  body.replaceChildren();
  for (const t of st.tenants || []) {
    const comp = t.last_compaction;
    const row = el("tr", { "data-tenant": t.tenant, class: t.tenant === selected ? "selected" : "" },
      el("td", {}, el("a", { href: "?tenant=" + encodeURIComponent(t.tenant) }, t.tenant)),
      el("td", {}, t.store),
      el("td", { class: t.error ? "bad" : (t.open ? "ok" : "muted") }, t.error ? "error" : (t.open ? "open" : "closed")),
      el("td", {}, when(t.refreshed)),
      el("td", {}, comp ? when(comp.created) : (t.last_compaction_error ? "unreadable" : "none yet")),
      el("td", {}, comp ? when(comp.watermark) : "—"),
      el("td", { class: "complete-through" }, completeText(t.completeness)));
    if (t.error) row.title = t.error;
    body.append(row);
  }
  if (!selected && st.tenants && st.tenants.length) selected = st.tenants[0].tenant;
  return st;
}

async function loadTenant(now) {
  if (!selected) return;
  document.getElementById("tenant-section").hidden = false;
  document.getElementById("sql-section").hidden = false;
  document.getElementById("tenant-name").textContent = selected;
  document.querySelectorAll(".tenant-ref").forEach(e => e.textContent = selected);
  const body = document.querySelector("#freshness tbody");
  try {
    const ts = await getJSON("/v1/status/tenants/" + encodeURIComponent(selected));
    const comp = ts.last_compaction;
    document.getElementById("tenant-summary").textContent =
      (comp ? `batch snapshot ${comp.id}, compacted ${when(comp.created)}; ` : "no batch snapshot yet (speed layer only); ") +
      `${ts.speed_files} speed files read; checked ${when(ts.refreshed)}; ` +
      `lake complete through ${completeText(ts.completeness)}` +
      (ts.completeness && ts.completeness.checked ? ` (Kafka read ${when(ts.completeness.checked)})` : "");
    body.replaceChildren();
    for (const v of ts.views || []) {
      const f = v.freshness || {};
      const newest = f.ingest_time || f.as_of;
      body.append(el("tr", { "data-view": v.name },
        el("td", {}, v.name), el("td", {}, v.kind), el("td", {}, v.source),
        el("td", { class: "last-updated" }, when(f.last_updated)),
        el("td", { class: "ingest-time" }, when(f.ingest_time || f.as_of)),
        el("td", {}, age(newest, now))));
    }
  } catch (e) {
    body.replaceChildren(el("tr", {}, el("td", { colSpan: 6, class: "error" }, e.message)));
  }
}

function renderResult(res) {
  const out = document.getElementById("result");
  const cols = (res.columns || []).map(c => c.name);
  const table = el("table", { id: "result-table" },
    el("thead", {}, el("tr", {}, ...cols.map(c => el("th", {}, c)))),
    el("tbody", {}, ...(res.rows || []).slice(0, 500).map(r =>
      el("tr", {}, ...cols.map(c => el("td", {}, typeof r[c] === "object" && r[c] !== null ? JSON.stringify(r[c]) : r[c]))))));
  out.replaceChildren(table);
}

async function runSQL(ev) {
  ev.preventDefault();
  const key = document.getElementById("api-key").value.trim();
  const status = document.getElementById("sql-status");
  const out = document.getElementById("result");
  status.textContent = "running…";
  const t0 = performance.now();
  try {
    const res = await getJSON("/v1/tenants/" + encodeURIComponent(selected) + "/query", {
      method: "POST",
      headers: { "Content-Type": "application/json", "Accept": "application/json" },
      body: JSON.stringify({ sql: document.getElementById("sql").value }),
    }, key);
    renderResult(res);
    status.textContent = `${res.row_count} rows${res.truncated ? " (cut)" : ""} in ${Math.round(performance.now() - t0)} ms`;
  } catch (e) {
    out.replaceChildren(el("p", { class: "error" }, e.message));
    status.textContent = "";
  }
}

// load shows what the page's key opens.
async function load() {
  if (!pageKey()) {
    notice("Paste an API key to see the status.");
    return null;
  }
  let who;
  try {
    who = await getJSON("/v1/whoami");
  } catch (e) {
    notice(e.status === 401 ? "This key is not known to the server." : e.message, "error");
    return null;
  }
  let now = new Date();
  if (who.admin) {
    notice(`admin key ${who.name || ""}: every tenant`);
    document.getElementById("tenants-section").hidden = false;
    try {
      const st = await loadStatus();
      if (st.server && st.server.now) now = new Date(st.server.now);
    } catch (e) {
      document.querySelector("#tenants tbody").replaceChildren(el("tr", {}, el("td", { colSpan: 7, class: "error" }, e.message)));
    }
  } else {
    notice(`key of tenant ${who.tenant}`);
    selected = who.tenant;
    document.getElementById("api-key").value = pageKey();
  }
  await loadTenant(now);
  return who;
}

async function main() {
  takeFragmentKey();
  document.getElementById("sql-form").addEventListener("submit", runSQL);
  document.getElementById("key-form").addEventListener("submit", ev => {
    ev.preventDefault();
    sessionStorage.setItem(KEY, document.getElementById("key").value.trim());
    location.reload();
  });
  document.getElementById("forget").addEventListener("click", () => {
    sessionStorage.removeItem(KEY);
    location.reload();
  });
  const who = await load();
  document.body.dataset.ready = "true";
  if (!who) return;
  setInterval(async () => {
    try {
      const st = who.admin ? await loadStatus() : null;
      await loadTenant(st && st.server ? new Date(st.server.now) : new Date());
    } catch (e) { /* shown on the next successful refresh */ }
  }, 10000);
}

main();
