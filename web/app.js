// The phanes serve dashboard: hosts, modules, runs, a live log, a form to
// dry-run or apply modules. Plain DOM, no dependencies; data goes in with
// textContent only.
"use strict";

const $ = (sel) => document.querySelector(sel);
const tokenInput = $("#token");
tokenInput.value = sessionStorage.getItem("phanes-token") || "";
tokenInput.addEventListener("change", () => sessionStorage.setItem("phanes-token", tokenInput.value.trim()));

function headers(extra) {
  const h = Object.assign({}, extra || {});
  const t = tokenInput.value.trim();
  if (t) h.Authorization = "Bearer " + t;
  return h;
}

async function api(method, path, body) {
  const opts = { method, headers: headers(body ? { "Content-Type": "application/json" } : {}) };
  if (body) opts.body = JSON.stringify(body);
  const res = await fetch(path, opts);
  let doc = null;
  try { doc = await res.json(); } catch (e) { doc = { error: res.statusText }; }
  return { status: res.status, doc };
}

function cell(tr, text, cls) {
  const td = document.createElement("td");
  td.textContent = text == null ? "" : String(text);
  if (cls) td.className = cls;
  tr.appendChild(td);
  return td;
}

function fill(tbody, rows, render) {
  const body = document.querySelector(tbody);
  body.replaceChildren();
  for (const r of rows) {
    const tr = document.createElement("tr");
    render(tr, r);
    body.appendChild(tr);
  }
}

async function loadHealth() {
  const { status, doc } = await api("GET", "/api/health");
  $("#health").textContent = status === 200 ? `${doc.status} · v${doc.version} · ${doc.running} running` : `error ${status}`;
}

async function loadHosts() {
  const { status, doc } = await api("GET", "/api/remote/status");
  if (status !== 200) return;
  fill("#hosts tbody", doc.hosts, (tr, h) => {
    tr.dataset.host = h.name;
    cell(tr, h.name);
    cell(tr, h.address);
    cell(tr, h.last_status || "never", "status st-" + (h.last_status || "none"));
    cell(tr, h.last_seen);
    cell(tr, h.version);
    cell(tr, h.running || "");
  });
  const sel = $("#host");
  const current = sel.value;
  if (sel.options.length !== doc.hosts.length) {
    sel.replaceChildren();
    for (const h of doc.hosts) {
      const o = document.createElement("option");
      o.value = o.textContent = h.name;
      sel.appendChild(o);
    }
    if (current) sel.value = current;
  }
}

async function loadModules() {
  const { status, doc } = await api("GET", "/api/remote/modules");
  if (status !== 200) return;
  const box = $("#modules");
  for (const m of doc.modules) {
    const label = document.createElement("label");
    const cb = document.createElement("input");
    cb.type = "checkbox";
    cb.name = "module";
    cb.value = m.name;
    label.appendChild(cb);
    label.appendChild(document.createTextNode(" " + m.name));
    if (m.description) label.title = m.description;
    box.appendChild(label);
  }
}

async function loadRuns() {
  const { status, doc } = await api("GET", "/api/runs");
  if (status !== 200) return;
  fill("#runs tbody", doc.runs.slice(0, 30), (tr, r) => {
    tr.dataset.run = r.id;
    cell(tr, r.id);
    cell(tr, r.host);
    cell(tr, (r.modules || []).join(", ") + (r.dry_run ? " (dry run)" : ""));
    cell(tr, r.status, "status st-" + r.status);
    cell(tr, r.started_at || r.created_at);
    const td = cell(tr, "");
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = "log";
    b.addEventListener("click", () => showLog(r.id));
    td.appendChild(b);
  });
}

let tailing = null;

// The log as chunked text, read as it arrives (fetch can send the token,
// which EventSource cannot).
async function showLog(id) {
  if (tailing) tailing.abort();
  const ctrl = new AbortController();
  tailing = ctrl;
  $("#log-section").hidden = false;
  $("#log-run").textContent = id;
  $("#log-status").textContent = "streaming…";
  const pre = $("#log");
  pre.textContent = "";
  try {
    const res = await fetch(`/api/runs/${encodeURIComponent(id)}/log`, { headers: headers(), signal: ctrl.signal });
    const reader = res.body.getReader();
    const dec = new TextDecoder();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      pre.textContent += dec.decode(value, { stream: true });
      pre.scrollTop = pre.scrollHeight;
    }
    const { doc } = await api("GET", `/api/runs/${encodeURIComponent(id)}`);
    $("#log-status").textContent = doc.status;
    $("#log-status").className = "status st-" + doc.status;
  } catch (e) {
    if (e.name !== "AbortError") $("#log-status").textContent = "stream error: " + e.message;
  }
  refresh();
}

function showPlan(doc) {
  $("#plan-box").hidden = false;
  $("#plan-status").textContent = doc.status + (doc.error ? ": " + doc.error : "");
  $("#plan-status").className = "status st-" + doc.status;
  fill("#plan tbody", doc.plan || [], (tr, p) => {
    cell(tr, p.module);
    cell(tr, p.resource);
    cell(tr, p.target);
    cell(tr, p.message);
  });
}

$("#run-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const dry = ev.submitter && ev.submitter.value === "dry";
  const modules = [...document.querySelectorAll("input[name=module]:checked")].map((c) => c.value);
  const msg = $("#form-msg");
  msg.textContent = dry ? "planning…" : "starting…";
  const body = { host: $("#host").value, modules, dry_run: dry, wait: dry };
  const { status, doc } = await api("POST", "/api/remote/install", body);
  if (status >= 400) {
    msg.textContent = `${status}: ${doc.error}`;
    msg.className = "st-failed";
    return;
  }
  msg.className = "";
  if (dry) {
    msg.textContent = "";
    showPlan(doc);
  } else {
    msg.textContent = `run ${doc.run_id} ${doc.status}`;
    showLog(doc.run_id);
  }
  refresh();
});

function refresh() {
  loadHealth();
  loadHosts();
  loadRuns();
}

loadModules();
refresh();
setInterval(refresh, 3000);
