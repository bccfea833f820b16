/* tokentrail dashboard: renders what the JSON API (tokentrail.report) returns. No framework, no CDN. */
"use strict";

const $ = (sel) => document.querySelector(sel);
const PALETTE = ["#2f6fde", "#e8793a", "#2aa876", "#c03fa8", "#d8b22b", "#5bb4d8", "#8a62d6", "#d64f4f", "#8c8c8c"];
const PAGE = 50;
const state = { range: "24h", stack: "model", by: "model", filters: {}, sort: "newest", offset: 0, cursor: null, total: 0 };

// -- formatting ---------------------------------------------------------------------------------------
function money(v) {
  if (v === null || v === undefined) return "–";
  const a = Math.abs(v);
  if (a === 0) return "$0.00";
  if (a < 0.01) return "$" + v.toFixed(Math.min(12, 1 - Math.floor(Math.log10(a))));  // two significant digits
  if (a < 1) return "$" + v.toFixed(4);
  return "$" + v.toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
}
function count(v) {
  if (v === null || v === undefined) return "–";
  if (Math.abs(v) >= 1e9) return (v / 1e9).toFixed(2) + "B";
  if (Math.abs(v) >= 1e6) return (v / 1e6).toFixed(2) + "M";
  if (Math.abs(v) >= 1e4) return (v / 1e3).toFixed(1) + "k";
  return String(v);
}
const whole = (v) => (v === null || v === undefined ? "–" : v.toLocaleString("en-US"));
const pct = (v) => (v === null || v === undefined ? "–" : (v * 100).toFixed(v < 0.1 && v > 0 ? 2 : 1) + "%");
const ms = (v) => (v === null || v === undefined ? "–" : v >= 10000 ? (v / 1000).toFixed(1) + " s" : Math.round(v) + " ms");
function when(iso) {
  if (!iso) return "–";
  const d = new Date(iso);
  return d.toLocaleString(undefined, { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit" });
}
function esc(v) {
  return String(v ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}

// -- the API --------------------------------------------------------------------------------------------
function query(extra = {}, withFilters = true) {
  const p = new URLSearchParams();
  if (state.range) p.set("since", state.range);
  if (withFilters) for (const [k, v] of Object.entries(state.filters)) if (v) p.set(k, v);
  for (const [k, v] of Object.entries(extra)) if (v !== undefined && v !== null && v !== "") p.set(k, v);
  return p.toString();
}
async function api(path, params) {
  const res = await fetch(`api/${path}${params ? "?" + params : ""}`, { credentials: "same-origin" });
  const body = await res.json();
  if (!res.ok) throw new Error(body.error || `${res.status} ${res.statusText}`);
  return body;
}
function showError(err) {
  const el = $("#error");
  if (!err) { el.hidden = true; return; }
  el.textContent = String(err.message || err);
  el.hidden = false;
}

// -- totals ---------------------------------------------------------------------------------------------
async function loadSummary() {
  const data = await api("summary", query());
  $("#store").textContent = data.store;
  $("#empty-store").textContent = data.store;
  $("#empty").hidden = !data.empty;
  const t = data.totals;
  $("#total-cost").textContent = t ? money(t.cost_usd) : money(0);
  $("#total-calls").textContent = t ? whole(t.calls) : "0";
  $("#total-calls").dataset.value = t ? t.calls : 0;
  $("#total-cost").dataset.value = t && t.cost_usd !== null ? t.cost_usd : 0;
  $("#total-tokens").textContent = t ? count(t.total_tokens || 0) : "0";
  $("#total-tokens").dataset.value = t ? t.total_tokens || 0 : 0;
  $("#total-tokens-split").textContent = t ? `${count(t.input_tokens || 0)} in · ${count(t.output_tokens || 0)} out` : "";
  $("#total-error-rate").textContent = t ? pct(t.error_rate) : "–";
  $("#total-errors").textContent = t ? `${whole(t.errors)} failed` : "";
  $("#total-p95").textContent = t ? ms(t.p95_ms) : "–";
  $("#total-p50").textContent = t && t.p50_ms !== null ? `p50 ${ms(t.p50_ms)}` : "";
  $("#total-unpriced").textContent = t && t.unpriced_calls ? `${whole(t.unpriced_calls)} calls without a price` : "";
}

// -- charts ---------------------------------------------------------------------------------------------
const charts = {};
function cssVar(name) { return getComputedStyle(document.documentElement).getPropertyValue(name).trim(); }
function drawChart(id, legendId, data, metric, format) {
  const el = $("#" + id);
  const xs = data.buckets.map((b) => b.start);
  const width = Math.max(260, el.clientWidth || 600);
  if (charts[id]) { charts[id].destroy(); delete charts[id]; }
  el.innerHTML = "";
  $("#" + legendId).innerHTML = data.series.map((s, i) =>
    `<span><i style="background:${PALETTE[i % PALETTE.length]}"></i>${esc(s.key)}</span>`).join("");
  if (!xs.length) { el.innerHTML = '<p class="muted">No calls in this range.</p>'; return; }
  // Stacked: each drawn series is the sum of itself and those below it; drawn from the top down.
  const stacked = [];
  let running = xs.map(() => 0);
  for (const s of data.series) { running = running.map((v, i) => v + (s[metric][i] || 0)); stacked.push(running); }
  const order = stacked.map((_, i) => i).reverse();
  const axis = { stroke: cssVar("--muted"), grid: { stroke: cssVar("--line"), width: 1 }, ticks: { stroke: cssVar("--line") } };
  const opts = {
    width, height: 220, legend: { show: false }, cursor: { drag: { x: false, y: false } },
    scales: { x: { time: true } },
    axes: [{ ...axis }, { ...axis, size: 64, values: (u, vals) => vals.map(format) }],
    series: [{}, ...order.map((i) => ({
      label: data.series[i].key, stroke: PALETTE[i % PALETTE.length], fill: PALETTE[i % PALETTE.length], width: 1,
      points: { show: false }, paths: uPlot.paths.stepped ? uPlot.paths.stepped({ align: 1 }) : undefined,
    }))],
  };
  charts[id] = new uPlot(opts, [xs, ...order.map((i) => stacked[i])], el);
}
async function loadCharts() {
  const bucket = state.range === "1h" || state.range === "24h" ? "hour" : "day";
  const data = await api("timeseries", query({ bucket, stack: state.stack }));
  drawChart("chart-cost", "legend-cost", data, "cost_usd", (v) => money(v));
  drawChart("chart-calls", "legend-calls", data, "calls", (v) => count(v));
}

// -- breakdown, errors, outcomes -------------------------------------------------------------------------
async function loadBreakdown() {
  const data = await api("breakdown", query({ by: state.by }));
  const rest = data.rest;
  const total = data.rows.reduce((a, r) => a + (r.cost_usd || 0), 0) + (rest ? rest.cost_usd : 0);
  $("#breakdown-key").textContent = state.by;
  $("#breakdown-table tbody").innerHTML = data.rows.length ? data.rows.map((r) => `<tr>
    <td>${r[state.by] === null ? '<span class="muted">(none)</span>' : esc(r[state.by])}</td><td class="num">${whole(r.calls)}</td>
    <td class="num">${count(r.total_tokens || 0)}</td><td class="num">${money(r.cost_usd)}</td>
    <td class="num">${total ? pct((r.cost_usd || 0) / total) : "–"}</td><td class="num opt">${pct(r.error_rate)}</td>
    <td class="num opt">${ms(r.p95_ms)}</td></tr>`).join("") + (rest ? `<tr class="rest">
    <td class="muted">${whole(rest.groups)} more</td><td class="num">${whole(rest.calls)}</td>
    <td class="num">${count(rest.total_tokens)}</td><td class="num">${money(rest.cost_usd)}</td>
    <td class="num">${total ? pct(rest.cost_usd / total) : "–"}</td><td class="num opt"></td><td class="num opt"></td></tr>` : "")
    : '<tr><td colspan="7" class="muted">No calls in this range.</td></tr>';
}
async function loadErrors() {
  const data = await api("errors", query());
  $("#errors-table tbody").innerHTML = data.rows.length ? data.rows.map((r) => `<tr data-category="${esc(r.category)}">
    <td><span class="pill err">${esc(r.category)}</span></td><td class="num">${whole(r.calls)}</td><td class="num">${pct(r.share)}</td>
    <td class="num">${money(r.cost_usd)}</td></tr>`).join("") : '<tr><td colspan="4" class="muted">No failed calls in this range.</td></tr>';
}
async function loadOutcomes() {
  const data = await api("outcomes", query());
  $("#outcomes-table tbody").innerHTML = data.rows.length ? data.rows.map((r) => `<tr>
    <td>${esc(r.workflow ?? "(none)")}</td><td>${esc(r.outcome)}</td><td class="num">${whole(r.count)}</td>
    <td class="num">${money(r.cost_usd)}</td><td class="num">${money(r.cost_per_outcome_usd)}</td></tr>`).join("")
    : '<tr><td colspan="5" class="muted">No outcomes in this range (workflow(...).emit_outcome records them).</td></tr>';
}

// -- what if, cache savings ----------------------------------------------------------------------------------
async function loadWhatIf() {
  const model = $("#whatif-model").value.trim();
  const by = $("#whatif-by").value;
  if (!model) { $("#whatif-table tbody").innerHTML = ""; return; }
  const data = await api("reprice", query({ to: model, by }));
  const t = data.totals;
  $("#whatif-key").textContent = by;
  $("#whatif-summary").textContent = `On ${data.model}: ${money(t.what_if_usd)} instead of ${money(t.cost_usd)} — ` +
    (t.saving_usd >= 0 ? `saving ${money(t.saving_usd)}` : `${money(-t.saving_usd)} more`) +
    (t.saving_share === null ? "" : ` (${pct(Math.abs(t.saving_share))})`);
  $("#whatif-table tbody").innerHTML = data.rows.map((r) => `<tr>
    <td>${r[by] === null ? '<span class="muted">(none)</span>' : esc(r[by])}</td><td class="num">${whole(r.calls)}</td>
    <td class="num">${money(r.cost_usd)}</td><td class="num">${money(r.what_if_usd)}</td>
    <td class="num ${r.saving_usd < 0 ? "worse" : "better"}">${money(r.saving_usd)}</td></tr>`).join("");
}
async function loadCache() {
  const data = await api("cache", query({ by: "model" }));
  $("#cache-table tbody").innerHTML = data.rows.length ? data.rows.map((r) => `<tr>
    <td>${esc(r.model ?? "(none)")}</td><td class="num">${count(r.cache_read_tokens)}</td><td class="num">${money(r.saved_usd)}</td>
    <td class="num opt">${count(r.cache_write_tokens)}</td><td class="num opt">${money(r.write_premium_usd)}</td>
    <td class="num">${money(r.net_usd)}</td></tr>`).join("")
    : '<tr><td colspan="6" class="muted">No cache reads or writes in this range.</td></tr>';
}

// -- calls ------------------------------------------------------------------------------------------------
async function loadCalls() {
  const data = await api("calls", query({ sort: state.sort, offset: state.offset, limit: PAGE }));
  state.total = data.total;
  const rows = data.calls;
  $("#calls-table tbody").innerHTML = rows.length ? rows.map((c) => `<tr data-id="${esc(c.id)}">
    <td>${when(c.started_at)}</td><td class="opt">${esc(c.provider)}</td><td>${esc(c.model ?? "–")}</td>
    <td class="opt">${esc(c.customer_id ?? "")}</td><td class="opt">${esc(c.feature ?? "")}</td>
    <td class="num">${whole(c.total_tokens)}</td><td class="num">${money(c.cost_usd)}</td><td class="num opt">${ms(c.duration_ms)}</td>
    <td>${c.error_category ? `<span class="pill err">${esc(c.error_category)}</span>` : '<span class="pill ok">ok</span>'}</td></tr>`).join("")
    : '<tr><td colspan="9" class="muted">No calls match.</td></tr>';
  const first = rows.length ? state.offset + 1 : 0;
  $("#calls-count").textContent = `${whole(first)}–${whole(state.offset + rows.length)} of ${whole(data.total)}`;
  $("#page-info").textContent = `page ${Math.floor(state.offset / PAGE) + 1} of ${Math.max(1, Math.ceil(data.total / PAGE))}`;
  $("#prev").disabled = state.offset === 0;
  $("#next").disabled = state.offset + rows.length >= data.total;
  for (const th of document.querySelectorAll("#calls-table th[data-sort]")) {
    const key = th.dataset.sort;
    th.classList.toggle("sorted-desc", state.sort === "-" + key || (key === "started_at" && state.sort === "newest"));
    th.classList.toggle("sorted-asc", state.sort === key || (key === "started_at" && state.sort === "oldest"));
  }
}
async function loadValues() {
  for (const field of ["model", "provider", "customer", "user", "feature"]) {
    const data = await api("values", query({ field }, false));
    $("#values-" + field).innerHTML = data.values.map((v) => `<option value="${esc(v)}">`).join("");
  }
}

// -- detail ---------------------------------------------------------------------------------------------
function cell(v) {
  if (v === null || v === undefined) return '<span class="muted">–</span>';
  if (typeof v === "object") return `<pre>${esc(JSON.stringify(v, null, 2))}</pre>`;
  return esc(v);
}
function treeNode(n) {
  const cost = n.cost_usd !== null ? ` · ${money(n.cost_usd)}` : "";
  const err = n.error ? ` <span class="pill err">${esc(n.error.category || n.error.type)}</span>` : "";
  return `<li><b>${esc(n.kind)}</b> ${esc(n.name ?? "")}${cost} · ${ms(n.duration_ms)}${err}` +
    (n.children.length ? `<ul>${n.children.map(treeNode).join("")}</ul>` : "") + "</li>";
}
async function openDetail(id) {
  const { call } = await api("calls/" + encodeURIComponent(id));
  $("#detail-title").textContent = `${call.model ?? call.provider} · ${when(call.started_at)}`;
  const content = call.input_messages || call.output_text;
  const skip = new Set(["input_messages", "output_text"]);
  const rows = Object.entries(call).filter(([k]) => !skip.has(k)).map(([k, v]) => `<tr><td>${esc(k)}</td><td>${cell(v)}</td></tr>`).join("");
  const run = call.workflow_run_id || call.trace_id;
  $("#detail-body").innerHTML = `
    <h3>Content</h3>
    <div id="detail-content">${content
      ? `<p class="muted">Input</p>${cell(call.input_messages)}<p class="muted">Output</p>${cell(call.output_text)}`
      : '<p class="muted">Content was not captured for this call (tokentrail.init(capture_content=True) keeps prompts and outputs).</p>'}</div>
    ${run ? `<p><button type="button" id="show-tree" data-ref="${esc(run)}">Show the run tree</button></p><div id="tree" class="tree"></div>` : ""}
    <h3>Fields</h3><table id="detail-fields"><tbody>${rows}</tbody></table>`;
  const btn = $("#show-tree");
  if (btn) btn.addEventListener("click", async () => {
    try {
      const tree = await api("trace/" + encodeURIComponent(btn.dataset.ref));
      $("#tree").innerHTML = `<p class="muted">${esc(tree.workflow ?? "trace")} · ${money(tree.totals.cost_usd)} · ${tree.totals.llm_calls} LLM calls</p><ul>${tree.roots.map(treeNode).join("")}</ul>`;
    } catch (err) { $("#tree").textContent = err.message; }
  });
  $("#detail").showModal();
}

// -- wiring ---------------------------------------------------------------------------------------------
async function loadAll() {
  try {
    await Promise.all([loadSummary(), loadCharts(), loadBreakdown(), loadErrors(), loadOutcomes(), loadCalls(), loadCache(), loadWhatIf()]);
    showError(null);
  } catch (err) { showError(err); }
}
async function poll() {
  if (!$("#live").checked || document.hidden) return;
  try {
    const { cursor } = await api("cursor");
    if (state.cursor !== null && cursor !== state.cursor) await loadAll();
    state.cursor = cursor;
  } catch (err) { showError(err); }
}
function applyTheme(theme) {
  if (theme) document.documentElement.dataset.theme = theme; else delete document.documentElement.dataset.theme;
  loadCharts().catch(showError);
}

$("#range").addEventListener("change", (e) => { state.range = e.target.value; state.offset = 0; loadAll(); });
$("#stack").addEventListener("change", (e) => { state.stack = e.target.value; loadCharts().catch(showError); });
$("#theme").addEventListener("click", () => {
  const dark = document.documentElement.dataset.theme
    ? document.documentElement.dataset.theme === "dark" : matchMedia("(prefers-color-scheme: dark)").matches;
  const next = dark ? "light" : "dark";
  localStorage.setItem("tokentrail-theme", next);
  applyTheme(next);
});
for (const btn of document.querySelectorAll("#breakdown .tabs button")) {
  btn.addEventListener("click", () => {
    for (const b of document.querySelectorAll("#breakdown .tabs button")) b.classList.toggle("active", b === btn);
    state.by = btn.dataset.by;
    loadBreakdown().catch(showError);
  });
}
$("#filters").addEventListener("submit", (e) => {
  e.preventDefault();
  state.filters = Object.fromEntries([...new FormData(e.target).entries()].map(([k, v]) => [k, v.trim()]).filter(([, v]) => v));
  state.offset = 0;
  loadAll();
});
$("#whatif-form").addEventListener("submit", (e) => { e.preventDefault(); loadWhatIf().then(() => showError(null), showError); });
$("#whatif-by").addEventListener("change", () => loadWhatIf().catch(showError));
$("#filters-clear").addEventListener("click", () => { $("#filters").reset(); state.filters = {}; state.offset = 0; loadAll(); });
$("#prev").addEventListener("click", () => { state.offset = Math.max(0, state.offset - PAGE); loadCalls().catch(showError); });
$("#next").addEventListener("click", () => { state.offset += PAGE; loadCalls().catch(showError); });
for (const th of document.querySelectorAll("#calls-table th[data-sort]")) {
  th.addEventListener("click", () => {
    const key = th.dataset.sort;  // first click: largest (newest) first; a second flips it
    if (key === "started_at") state.sort = state.sort === "newest" ? "oldest" : "newest";
    else state.sort = state.sort === "-" + key ? key : "-" + key;
    state.offset = 0;
    loadCalls().catch(showError);
  });
}
$("#calls-table tbody").addEventListener("click", (e) => {
  const tr = e.target.closest("tr[data-id]");
  if (tr) openDetail(tr.dataset.id).catch(showError);
});
$("#errors-table tbody").addEventListener("click", (e) => {
  const tr = e.target.closest("tr[data-category]");
  if (!tr) return;
  $("#filter-error_category").value = tr.dataset.category;
  $("#filters").requestSubmit();
  $("#calls").scrollIntoView({ behavior: "smooth" });
});
let resizeTimer = null;
window.addEventListener("resize", () => { clearTimeout(resizeTimer); resizeTimer = setTimeout(() => loadCharts().catch(showError), 200); });

(async function start() {
  const saved = localStorage.getItem("tokentrail-theme");
  if (saved) document.documentElement.dataset.theme = saved;
  state.range = $("#range").value;
  await loadAll();
  document.body.dataset.ready = "1";
  loadValues().catch(() => {});
  try { state.cursor = (await api("cursor")).cursor; } catch (err) { showError(err); }
  setInterval(poll, 4000);
})();
