// agentledger console: plain JS, no build step. Every text from the log goes in through
// textContent (never innerHTML), so a prompt or tool result cannot inject markup.
"use strict";

const CSRF = document.querySelector('meta[name="csrf-token"]').content;
const main = document.getElementById("main");
const SVGNS = "http://www.w3.org/2000/svg";
let cleanup = [];

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "on") for (const [ev, fn] of Object.entries(v)) el.addEventListener(ev, fn);
    else if (v !== null && v !== undefined && v !== false) el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}
function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, v);
  for (const c of children.flat()) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}
const fmtCost = (x) => "$" + (x || 0).toFixed(4);
const fmtDur = (x) => (x === null || x === undefined ? "—" : x < 60 ? x.toFixed(2) + " s" : (x / 60).toFixed(1) + " min");
const fmtTime = (t) => (t ? t.replace("T", " ").slice(0, 19) : "—");
const json = (v) => (typeof v === "string" ? v : JSON.stringify(v, null, 2));
const status = (st) => h("span", { class: "status " + st, "data-status": st }, st);

async function api(path, opts) {
  const r = await fetch(path, Object.assign({ credentials: "same-origin" }, opts || {}));
  const body = await r.json().catch(() => ({ error: r.statusText }));
  if (!r.ok) throw new Error(body.error || r.statusText);
  return body;
}
function stream(path, handlers) {
  const es = new EventSource(path);
  const live = document.getElementById("live");
  es.onopen = () => live.classList.add("on");
  es.onerror = () => live.classList.remove("on");
  for (const [name, fn] of Object.entries(handlers)) es.addEventListener(name, (m) => fn(JSON.parse(m.data)));
  cleanup.push(() => es.close());
  return es;
}

// ---- runs list -------------------------------------------------------------------------
function runsPage() {
  const q = h("input", { id: "search", placeholder: "search task, goal, workflow", size: 32 });
  const st = h("select", { id: "status-filter" }, h("option", { value: "" }, "any status"),
    ["running", "planning", "completed", "failed", "cancelled"].map((x) => h("option", { value: x }, x)));
  const wf = h("select", { id: "workflow-filter" }, h("option", { value: "" }, "any workflow"));
  const body = h("tbody", { id: "runs-body" });
  let rows = [];
  const draw = () => {
    const text = q.value.toLowerCase();
    const wfs = [...new Set(rows.map((r) => r.workflow).filter(Boolean))].sort();
    const current = wf.value;
    wf.replaceChildren(h("option", { value: "" }, "any workflow"), wfs.map((x) => h("option", { value: x }, x)));
    wf.value = current;
    body.replaceChildren(...rows
      .filter((r) => (!st.value || r.status === st.value) && (!wf.value || r.workflow === wf.value))
      .filter((r) => !text || `${r.task_id} ${r.goal} ${r.workflow}`.toLowerCase().includes(text))
      .map((r) => h("tr", { class: "clickable run-row", "data-task": r.task_id, on: { click: () => (location.hash = "#/runs/" + r.task_id) } },
        h("td", {}, status(r.pending_approvals ? "waiting" : r.status)),
        h("td", {}, r.workflow || "?"),
        h("td", { title: r.goal }, h("code", {}, r.task_id.slice(0, 12)), " ", h("span", { class: "muted" }, r.goal.slice(0, 70))),
        h("td", {}, fmtTime(r.started_at)),
        h("td", { class: "num" }, fmtDur(r.duration_s)),
        h("td", { class: "num" }, r.tokens),
        h("td", { class: "num" }, fmtCost(r.cost_usd)))));
    if (!body.children.length) body.append(h("tr", {}, h("td", { colspan: 7, class: "muted" }, "no runs match")));
  };
  for (const el of [q, st, wf]) el.addEventListener("input", draw);
  main.replaceChildren(h("h1", {}, "Runs"), h("div", { class: "filters" }, q, st, wf),
    h("div", { class: "card" }, h("table", { id: "runs" },
      h("thead", {}, h("tr", {}, ["status", "workflow", "task", "started", "duration", "tokens", "cost"].map((x, i) => h("th", { class: i > 3 ? "num" : "" }, x)))), body)));
  stream("/api/runs/stream", { runs: (b) => { rows = b.runs; draw(); } });
}

// ---- one run ---------------------------------------------------------------------------
function dagSvg(dag) {
  const ids = dag.nodes.map((n) => n.id);
  const deps = {};
  for (const e of dag.edges) (deps[e.target] = deps[e.target] || []).push(e.source);
  const level = {};
  const depth = (id, seen) => {
    if (level[id] !== undefined) return level[id];
    if (seen.has(id)) return 0;
    seen.add(id);
    level[id] = (deps[id] || []).reduce((m, d) => Math.max(m, depth(d, seen) + 1), 0);
    return level[id];
  };
  ids.forEach((id) => depth(id, new Set()));
  const cols = {};
  for (const n of dag.nodes) (cols[level[n.id]] = cols[level[n.id]] || []).push(n);
  const W = 210, H = 54, GX = 60, GY = 18;
  const pos = {};
  let maxRows = 1;
  for (const [c, ns] of Object.entries(cols)) {
    maxRows = Math.max(maxRows, ns.length);
    ns.forEach((n, i) => (pos[n.id] = { x: 10 + c * (W + GX), y: 10 + i * (H + GY) }));
  }
  const width = 20 + Object.keys(cols).length * (W + GX), height = 20 + maxRows * (H + GY);
  const colour = { completed: "#16a34a", running: "#2563eb", assigned: "#2563eb", failed: "#dc2626", skipped: "#a78bfa", pending: "#9ca3af" };
  const svg = s("svg", { viewBox: `0 0 ${width} ${height}`, id: "dag-svg", style: `max-height:${height}px` },
    s("defs", {}, s("marker", { id: "arrow", viewBox: "0 0 10 10", refX: "10", refY: "5", markerWidth: "7", markerHeight: "7", orient: "auto" }, s("path", { d: "M0,0 L10,5 L0,10 z", fill: "#9ca3af" }))));
  for (const e of dag.edges) {
    const a = pos[e.source], b = pos[e.target];
    if (!a || !b) continue;
    const x1 = a.x + W, y1 = a.y + H / 2, x2 = b.x, y2 = b.y + H / 2;
    svg.append(s("path", { class: "edge", "data-edge": `${e.source}->${e.target}`, d: `M${x1},${y1} C${x1 + GX / 2},${y1} ${x2 - GX / 2},${y2} ${x2},${y2}` }));
  }
  for (const n of dag.nodes) {
    const p = pos[n.id];
    const pending = n.status === "pending" || n.status === "assigned";
    svg.append(s("g", { class: "node", "data-node": n.id, "data-status": n.status, transform: `translate(${p.x},${p.y})` },
      s("title", {}, `${n.id} (${n.agent}): ${n.status}${n.error ? " — " + n.error : ""}`),
      s("rect", { width: W, height: H, fill: colour[n.status] || "#9ca3af", rx: 8 }),
      s("text", { x: 10, y: 20, "font-weight": "600" }, n.id.length > 22 ? n.id.slice(0, 21) + "…" : n.id),
      s("text", { x: 10, y: 38 }, `${n.agent} · ${n.status}${pending ? "" : " · try " + n.attempt}`)));
  }
  return svg;
}

function runPage(taskId) {
  let view = null, rows = [], until = null;
  const head = h("div", { id: "run-head" });
  const dag = h("div", { class: "card dag", id: "dag" });
  const tl = h("div", { class: "card timeline", id: "timeline" });
  const slider = h("input", { type: "range", id: "replay", min: 0, max: 0, value: 0 });
  const sliderLabel = h("span", { id: "replay-label", class: "muted" });
  const live = h("button", { id: "replay-live" }, "follow live");
  const details = h("div", { id: "run-details" });
  main.replaceChildren(h("p", {}, h("a", { href: "#/" }, "← runs")), head,
    h("div", { class: "card slider" }, h("b", {}, "Replay"), slider, sliderLabel, live),
    h("div", { class: "grid" }, h("div", {}, h("h2", {}, "Subtasks"), dag, details), h("div", {}, h("h2", {}, "Timeline ", h("span", { class: "muted", id: "event-count" })), tl)));

  const drawTimeline = () => {
    const at = until === null ? Infinity : until;
    tl.replaceChildren(...rows.map((r) => h("div", { class: "row" + (r.seq > at ? " future" : ""), "data-seq": r.seq },
      h("span", { class: "muted" }, r.seq), h("span", { class: "muted" }, r.occurred_at.slice(11, 23)),
      h("span", {}, r.agent || "-"), h("span", {}, h("span", { class: "type" }, r.type + " "), r.text))));
    document.getElementById("event-count").textContent = `(${rows.length} events)`;
    if (until === null) tl.scrollTop = tl.scrollHeight;
  };
  const draw = () => {
    const r = view.run;
    const fork = view.lineage;
    head.replaceChildren(h("h1", {}, `${r.workflow || "?"} `, h("code", {}, r.task_id), " ", status(r.status)),
      fork ? h("p", { id: "run-lineage", class: "muted" }, "forked from ",
        h("a", { href: "#/runs/" + fork.parent_task_id }, h("code", {}, fork.parent_task_id)), ` at seq ${fork.fork_seq}`,
        fork.workflow_path ? ` · workflow ${fork.workflow_path}` : "",
        Object.keys(fork.model_overrides).length ? " · models " + Object.entries(fork.model_overrides).map(([a, m]) => `${a}=${m}`).join(", ") : "",
        fork.edited_outputs.length ? " · edited outputs " + fork.edited_outputs.join(", ") : "") : "",
      h("div", { class: "card kpis" },
        [["goal", r.goal], ["started", fmtTime(r.started_at)], ["duration", fmtDur(r.duration_s)], ["tokens", r.tokens],
          ["cost", fmtCost(r.cost_usd)], ["LLM calls", view.llm_calls.length], ["tool calls", view.tool_calls.length]]
          .map(([k, v]) => h("div", { class: "kpi" }, h("span", { class: "muted" }, k), h("b", {}, v)))));
    slider.max = view.last_seq;
    slider.value = view.until;
    sliderLabel.textContent = until === null ? `seq ${view.last_seq} (live)` : `state as of seq ${view.until} of ${view.last_seq}`;
    dag.replaceChildren(view.dag.nodes.length ? dagSvg(view.dag) : h("p", { class: "muted" }, "no plan yet"));
    const parts = [];
    if (view.approvals.length) parts.push(h("h2", {}, "Waiting for approval"), approvalsTable(view.approvals));
    const f = view.flags;
    if (f.limits.length || f.injections.length)
      parts.push(h("h2", {}, "Limits and injection flags"), h("div", { class: "card", id: "flags" },
        f.limits.map((x) => h("div", { class: "flag" }, `#${x.seq} ${x.text}`)), f.injections.map((x) => h("div", { class: "flag" }, `#${x.seq} ${x.text}`))));
    if (view.failure) parts.push(h("div", { class: "card error" }, "failure: " + view.failure));
    parts.push(h("h2", {}, "LLM calls"), h("div", { class: "card", id: "llm-calls" }, view.llm_calls.length ? view.llm_calls.map((c) =>
      h("details", { class: "llm-call" }, h("summary", {}, `#${c.seq} ${c.subtask_id} · ${c.model} · ${c.ok ? (c.input_tokens + "+" + c.output_tokens + " tok · " + fmtCost(c.cost_usd)) : "FAILED " + c.error_kind} · ${Math.round(c.latency_ms)} ms`),
        h("div", { class: "muted" }, "prompt (as logged, masked)"), h("pre", {}, json(c.prompt)),
        h("div", { class: "muted" }, "response"), h("pre", {}, c.response ? c.response : json(c.tool_calls || [])))) : h("span", { class: "muted" }, "none yet")));
    parts.push(h("h2", {}, "Tool calls"), h("div", { class: "card", id: "tool-calls" }, view.tool_calls.length ? h("table", {},
      h("thead", {}, h("tr", {}, ["seq", "tool", "arguments", "result", "idempotency key", "approval"].map((x) => h("th", {}, x)))),
      h("tbody", {}, view.tool_calls.map((c) => h("tr", { class: "tool-call" }, h("td", {}, c.seq), h("td", {}, c.tool, " ", status(c.status)),
        h("td", {}, h("pre", {}, json(c.arguments))), h("td", {}, h("pre", {}, json(c.result))),
        h("td", {}, h("code", {}, (c.idempotency_key || "").slice(0, 16))),
        h("td", {}, c.approval ? `${c.approval.status}${c.approval.by ? " by " + c.approval.by : ""}${c.approval.text ? ": " + c.approval.text : ""}` : "—"))))) : h("span", { class: "muted" }, "none yet")));
    if (view.result !== null && view.result !== undefined) parts.push(h("h2", {}, "Result"), h("pre", { class: "card", id: "result" }, json(view.result)));
    details.replaceChildren(...parts);
    drawTimeline();
  };
  const load = async (at) => {
    const b = await api(`/api/runs/${encodeURIComponent(taskId)}${at === null ? "" : "?until=" + at}`);
    rows = b.timeline;
    view = b;
    draw();
    return b;
  };
  slider.addEventListener("input", () => { until = Number(slider.value); load(until); });
  live.addEventListener("click", () => { until = null; load(null); });
  load(null).then((b) => {
    stream(`/api/runs/${encodeURIComponent(taskId)}/stream?after=${b.last_seq}`, {
      event: (r) => { if (!rows.some((x) => x.seq === r.seq)) { rows.push(r); drawTimeline(); } },
      view: (v) => { if (until === null) { v.timeline = rows; view = v; draw(); } else { view.last_seq = v.last_seq; slider.max = v.last_seq; } },
    });
  }).catch((e) => main.replaceChildren(h("p", { class: "error" }, e.message)));
}

// ---- approvals -------------------------------------------------------------------------
function approvalsTable(items) {
  return h("table", { class: "approvals" }, h("thead", {}, h("tr", {}, ["approval", "tool", "arguments", "agent", "deadline", "decide"].map((x) => h("th", {}, x)))),
    h("tbody", {}, items.map((a) => {
      const reason = h("input", { placeholder: "reason to deny", class: "deny-reason" });
      const msg = h("div", { class: "decision-message muted" });
      const send = async (decision) => {
        try {
          const b = await api(`/api/approvals/${encodeURIComponent(a.approval_id)}`, {
            method: "POST", headers: { "Content-Type": "application/json", "X-CSRF-Token": CSRF },
            body: JSON.stringify({ task_id: a.task_id, decision, reason: reason.value, note: reason.value || null }),
          });
          msg.textContent = b.message;
        } catch (e) { msg.textContent = e.message; msg.className = "decision-message error"; }
      };
      return h("tr", { class: "approval", "data-approval": a.approval_id },
        h("td", {}, h("code", {}, a.approval_id), h("div", { class: "muted" }, h("a", { href: "#/runs/" + a.task_id }, a.task_id.slice(0, 12)), " · ", a.risk)),
        h("td", {}, a.tool), h("td", {}, h("pre", {}, json(a.arguments))), h("td", {}, `${a.agent} / ${a.subtask_id}`),
        h("td", {}, fmtTime(a.expires_at)),
        h("td", {}, h("button", { class: "primary approve", on: { click: () => send("approve") } }, "Approve"), " ",
          reason, " ", h("button", { class: "danger deny", on: { click: () => send("deny") } }, "Deny"), msg));
    })));
}
function approvalsPage() {
  const box = h("div", { class: "card", id: "approvals" });
  main.replaceChildren(h("h1", {}, "Approvals inbox"), box);
  const refresh = async () => {
    const b = await api("/api/approvals");
    box.replaceChildren(b.approvals.length ? approvalsTable(b.approvals) : h("p", { class: "muted", id: "no-approvals" }, "nothing waits for a decision"));
  };
  stream("/api/runs/stream", { runs: refresh });
}

// ---- analytics -------------------------------------------------------------------------
function barChart(title, rows, label, value, fmt, bad) {
  const W = 440, bh = 20, pad = 130;
  const max = Math.max(...rows.map(value), 1e-12);
  const svg = s("svg", { viewBox: `0 0 ${W} ${Math.max(rows.length, 1) * (bh + 6) + 8}` });
  rows.forEach((r, i) => {
    const y = 4 + i * (bh + 6), w = Math.max(1, ((W - pad - 70) * value(r)) / max);
    svg.append(s("text", { x: pad - 6, y: y + 14, "text-anchor": "end" }, String(label(r)).slice(0, 20)),
      s("rect", { class: "bar" + (bad ? " bad" : ""), x: pad, y, width: w, height: bh, rx: 3 }, s("title", {}, fmt(value(r)))),
      s("text", { x: pad + w + 4, y: y + 14 }, fmt(value(r))));
  });
  return h("div", { class: "card chart", "data-chart": title }, h("h2", {}, title), rows.length ? svg : h("p", { class: "muted" }, "no data yet"));
}
async function analyticsPage() {
  main.replaceChildren(h("h1", {}, "Analytics"), h("p", { class: "muted", id: "analytics-loading" }, "querying the audit table…"));
  let b;
  try { b = await api("/api/analytics"); } catch (e) { main.append(h("p", { class: "error" }, e.message)); return; }
  const money = (x) => "$" + x.toFixed(4), pct = (x) => (100 * x).toFixed(1) + "%", ms = (x) => Math.round(x) + " ms";
  const charts = h("div", { class: "charts", id: "charts" },
    ["agent", "model", "workflow", "day"].map((by) => barChart("Cost by " + by, b.cost[by], (r) => r.key, (r) => r.cost_usd, money)),
    barChart("Tokens by agent", b.cost.agent, (r) => r.key, (r) => r.input_tokens + r.output_tokens, (x) => String(x)),
    barChart("Failure rate by agent", b.failures.agent, (r) => r.key, (r) => r.failure_rate, pct, true),
    barChart("Failure rate by tool", b.failures.tool, (r) => r.key, (r) => r.failure_rate, pct, true),
    barChart("Latency p95 by model and tool", b.latency.filter((r) => r.dimension !== "agent"), (r) => `${r.dimension}:${r.key}`, (r) => r.p95_ms ?? r.p95 ?? 0, ms));
  const lat = h("table", {}, h("thead", {}, h("tr", {}, ["dimension", "key", "calls", "p50", "p95", "p99"].map((x) => h("th", {}, x)))),
    h("tbody", {}, b.latency.map((r) => h("tr", {}, h("td", {}, r.dimension), h("td", {}, r.key), h("td", { class: "num" }, r.calls),
      ["p50", "p95", "p99"].map((k) => h("td", { class: "num" }, ms(r[k + "_ms"] ?? r[k] ?? 0)))))));
  const anomalies = b.anomalies.length ? h("table", {}, h("tbody", {}, b.anomalies.map((a) => h("tr", {}, Object.values(a).map((v) => h("td", {}, String(v))))))) : h("p", { class: "muted" }, "no anomalies");
  main.replaceChildren(h("h1", {}, "Analytics"), charts, h("h2", {}, "Latency percentiles"), h("div", { class: "card" }, lat),
    h("h2", {}, "Anomalies"), h("div", { class: "card", id: "anomalies" }, anomalies));
}

// ---- routing ---------------------------------------------------------------------------
async function refreshBadge() {
  try {
    const b = await api("/api/approvals");
    document.getElementById("approval-count").textContent = b.approvals.length || "";
  } catch (e) { /* the page itself reports errors */ }
}
function route() {
  for (const fn of cleanup) fn();
  cleanup = [];
  const hash = location.hash || "#/";
  const m = hash.match(/^#\/runs\/(.+)$/);
  const page = m ? "runs" : hash.slice(2) || "runs";
  document.querySelectorAll("header nav a").forEach((a) => a.classList.toggle("active", a.dataset.nav === page));
  if (m) runPage(decodeURIComponent(m[1]));
  else if (hash === "#/approvals") approvalsPage();
  else if (hash === "#/analytics") analyticsPage();
  else runsPage();
  refreshBadge();
}
window.addEventListener("hashchange", route);
route();
