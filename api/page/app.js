// The token page: a signed-in user lists, creates, refreshes, disables,
// enables and deletes their API keys through the key-management API of this
// very origin; a tenant admin does the same for every key bound to their
// tenant. It loads nothing from elsewhere and writes every value with
// textContent (never as HTML).

const $ = (sel, root = document) => root.querySelector(sel);
const CSRF_KEY = "portcullis.csrf";
const DAY = 24 * 3600 * 1000;
const SOON = 7 * DAY;         // a key expiring within this is flagged
const USAGE_DAYS = 30;        // the usage API's window

let csrf = sessionStorage.getItem(CSRF_KEY) || "";
let me = null;      // GET /v1/sessions/current
let keys = [];      // the keys listed now
let members = [];   // the members of the tenant shown, when the user administers it

// api calls the key-management API with the session cookie and the CSRF
// token; an answer that is not 2xx throws an Error with the API's words.
async function api(method, path, body) {
  const opts = { method, credentials: "same-origin", headers: { "X-CSRF-Token": csrf } };
  if (body !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  let resp;
  try {
    resp = await fetch(path, opts);
  } catch (e) {
    throw new Error("The key service cannot be reached. Check your connection and try again.");
  }
  const data = await resp.json().catch(() => ({}));
  if (!resp.ok) {
    const err = new Error(data.error || `The key service answered ${resp.status}.`);
    err.status = resp.status;
    err.reason = data.reason;
    throw err;
  }
  return data;
}

// el makes an element: text is written with textContent, children are
// nodes or strings (appended as text, never parsed).
function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "text") e.textContent = v;
    else if (k === "class") e.className = v;
    else e.setAttribute(k, v === true ? "" : String(v));
  }
  e.append(...children);
  return e;
}

function say(text) { $("#status").textContent = text; }

function showError(err) {
  const box = $("#error");
  if (!err) { box.hidden = true; box.textContent = ""; return; }
  box.textContent = err.message || String(err);
  box.hidden = false;
  if (err.reason === "invalid_session") signedOut();
}

function signedOut() {
  sessionStorage.removeItem(CSRF_KEY);
  csrf = "";
  $("#account").hidden = true;
  $("#ids").hidden = true;
  $("#credits").hidden = true;
  $("#keys-section").hidden = true;
  $("#signed-out").hidden = false;
}

// --- Dates -----------------------------------------------------------------

const dateFmt = new Intl.DateTimeFormat("en-US", { year: "numeric", month: "short", day: "numeric" });
const longDateFmt = new Intl.DateTimeFormat("en-US", { weekday: "short", year: "numeric", month: "short", day: "numeric" });
const dayFmt = new Intl.DateTimeFormat("en-US", { month: "short", day: "numeric", timeZone: "UTC" });

function date(iso) { return dateFmt.format(new Date(iso)); }

function days(n) { return n === 1 ? "1 day" : `${n} days`; }

// timeEl is a <time> with its exact instant as a tooltip.
function timeEl(iso, text) {
  return el("time", { datetime: iso, title: new Date(iso).toISOString(), text });
}

function lastUsed(iso) {
  if (!iso) return document.createTextNode("never");
  const n = Math.floor((Date.now() - new Date(iso).getTime()) / DAY);
  return timeEl(iso, n <= 0 ? "today" : n === 1 ? "yesterday" : `${n} days ago`);
}

// expiry says when a key expires, and whether that is soon or past.
function expiry(k) {
  if (!k.expires_at) return { node: document.createTextNode("never"), soon: false, expired: false };
  const left = new Date(k.expires_at).getTime() - Date.now();
  if (k.state === "expired" || left <= 0) {
    return { node: el("span", { class: "expired-text" }, "expired on ", timeEl(k.expires_at, date(k.expires_at))), soon: false, expired: true };
  }
  const rel = left < DAY ? "within a day" : `in ${days(Math.floor(left / DAY))}`;
  if (left < SOON) {
    return { node: el("span", { class: "soon" }, timeEl(k.expires_at, date(k.expires_at)), `: expires ${rel}`), soon: true, expired: false };
  }
  return { node: el("span", {}, timeEl(k.expires_at, date(k.expires_at)), ` (${rel})`), soon: false, expired: false };
}

// lifetime reads the policy's longest key lifetime ("365d", or Go's "12h0m0s")
// in milliseconds; 0 when there is none.
function lifetime() {
  const s = me.max_lifetime;
  if (!s) return 0;
  const units = { d: DAY, h: 3600e3, m: 60e3, s: 1e3, ms: 1 };
  let ms = 0;
  for (const [, n, u] of s.matchAll(/(\d+(?:\.\d+)?)(ms|d|h|m|s)/g)) ms += Number(n) * units[u];
  return ms;
}

function spoken(ms) {
  if (ms % DAY === 0) return ms / DAY === 365 ? "a year" : days(ms / DAY);
  const h = Math.round(ms / 3600e3);
  return h === 1 ? "1 hour" : `${h} hours`;
}

// localDate is an instant's calendar date here, as a date input wants it.
function localDate(t) {
  const d = new Date(t);
  return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, "0")}-${String(d.getDate()).padStart(2, "0")}`;
}

// --- Who may do what -------------------------------------------------------

function membership(tenant) { return (me.memberships || []).find((m) => m.id === tenant); }
function administers(tenant) { return !!tenant && !!membership(tenant)?.admin; }
function tenantView() { return $("#tenant").value; }
function memberView() { return administers(tenantView()) ? $("#member").value : ""; }
function tierText(name) { return (me.tier_info || []).find((t) => t.name === name)?.description || ""; }

// mayEnable follows the API: a key its owner disabled, by its owner; any
// disabled key bound to a tenant, by an admin of that tenant.
function mayEnable(k) {
  return (k.disabled_by === "owner" && k.user === me.user) || administers(k.tenant);
}

function disabledBy(k) {
  switch (k.disabled_by) {
    case "owner": return k.user === me.user ? "Disabled by you." : `Disabled by its owner, ${k.user}.`;
    case "tenant_admin": return `Disabled by an admin of ${k.tenant}.`;
    case "platform": return "Disabled by the platform.";
    default: return "Disabled.";
  }
}

function whoMayEnable(k) {
  return k.tenant ? `Only an admin of ${k.tenant} can enable it.` : "Only the platform's administrators can enable it.";
}

// --- Expiry choices ----------------------------------------------------------

// fillExpiry offers the expiry presets that fit the policy's lifetime (from
// now for a new key; from its creation for a refreshed one, as the API
// counts), each once, and selects a sensible default: 30 days for a new
// key, the current expiry for a refresh.
function fillExpiry(form, prefix, refreshing) {
  const select = $(`#${prefix}-expiry`), dateInput = $(`#${prefix}-date`), dateLabel = form.querySelector(".date-label");
  const life = lifetime();
  const now = Date.now();
  const end = !life ? Infinity : refreshing ? new Date(refreshing.created_at).getTime() + life : now + life;
  const opts = [];
  if (refreshing && refreshing.state !== "expired") opts.push(["keep", `Keep: ${refreshing.expires_at ? date(refreshing.expires_at) : "never"}`]);
  for (const d of [7, 30, 60, 90, 365]) {
    const t = now + d * DAY;
    if (t > end) continue;
    const longest = !refreshing && life && d * DAY === life;
    opts.push([longest ? "max" : `${d}d`, `In ${spoken(d * DAY)}${longest ? " (the longest allowed)" : ""}`]);
  }
  if (life && !refreshing && !opts.some(([v]) => v === "max")) opts.push(["max", `In ${spoken(life)} (the longest allowed)`]);
  if (end - now > DAY) opts.push(["date", "On a date…"]);
  if (!life) opts.push(["never", "Never"]);
  select.replaceChildren(...opts.map(([v, t]) => new Option(t, v)));
  select.value = ["keep", "30d", "max"].find((v) => opts.some(([o]) => o === v)) || opts[0]?.[0] || "";
  dateInput.min = localDate(now + DAY);
  dateInput.max = end === Infinity ? "" : localDate(end - DAY);
  dateInput.value = "";
  const hint = $(`#${prefix}-expiry-hint`);
  const sync = () => {
    const v = select.value;
    dateInput.hidden = dateLabel.hidden = v !== "date";
    dateInput.required = v === "date";
    const at = v === "keep" ? (refreshing.expires_at ? new Date(refreshing.expires_at).getTime() : null)
      : v === "never" ? null
      : v === "max" ? now + life
      : v === "date" ? (dateInput.value ? new Date(dateInput.value + "T23:59:59").getTime() : undefined)
      : now + parseInt(v, 10) * DAY;
    hint.classList.toggle("warn", at === null);
    if (at === undefined) hint.textContent = "Choose the day it stops working.";
    else if (at === null) hint.textContent = "The key will never expire: set an expiry unless a program truly needs it forever.";
    else hint.textContent = `The key will expire on ${longDateFmt.format(new Date(at))}.`;
  };
  select.onchange = dateInput.oninput = sync;
  sync();
}

// expiryFields turns an expiry choice into the API's fields.
function expiryFields(select, dateInput) {
  switch (select.value) {
    case "keep": case "never": case "max": return {}; // max: the policy's lifetime is the default
    case "date": return { expires_at: new Date(dateInput.value + "T23:59:59").toISOString().replace(/\.\d{3}Z$/, "Z") };
    default: return { expires_in: select.value };
  }
}

// --- Listing -----------------------------------------------------------------

let loading = 0; // the newest load; an older one that finishes later is dropped

// query is the listing the view asks for: the user's own keys, theirs bound
// to a tenant, or (a tenant admin) every key bound to it, or one member's.
function query() {
  const t = tenantView(), m = memberView();
  const q = new URLSearchParams({ page_size: "100" });
  if (!t) q.set("user", me.user);
  else {
    q.set("tenant", t);
    if (!administers(t)) q.set("user", me.user);
    else if (m) q.set("user", m);
  }
  return q;
}

async function load() {
  showError(null);
  const mine = ++loading;
  const q = query();
  const list = [];
  let token = "";
  do {
    if (token) q.set("page_token", token);
    const page = await api("GET", `/v1/keys?${q}`);
    list.push(...page.keys);
    token = page.next_page_token;
  } while (token);
  if (mine !== loading) return;
  keys = list.sort((a, b) => b.created_at.localeCompare(a.created_at) || a.id.localeCompare(b.id)); // newest first
  render();
  for (const k of keys) usage(k).catch((err) => {
    const fig = document.querySelector(`li[data-id="${CSS.escape(k.id)}"] .usage`);
    if (fig) fig.replaceChildren(el("p", { class: "hint", text: `Usage unavailable: ${err.message}` }));
  });
  if (me.metered) for (const k of keys) keyUnits(k).catch((err) => {
    const dd = document.querySelector(`li[data-id="${CSS.escape(k.id)}"] .fact-units dd`);
    if (dd) dd.replaceChildren(el("span", { class: "hint", text: `unavailable: ${err.message}` }));
  });
  credits().catch((err) => {
    $("#credits-none").textContent = `Credits unavailable: ${err.message}`;
    $("#credits-none").hidden = false;
    $("#credits-body").hidden = true;
    $("#credits").hidden = false;
  });
}

// loadMembers lists the owners of the keys bound to a tenant the user
// administers, for the member filter and "delete a member's keys": read
// from the keys themselves, so the page needs no directory call (those
// stay off the token page's host; a member without keys has none to
// filter or delete).
async function loadMembers(tenant) {
  const users = new Set();
  let token = "";
  do {
    const q = new URLSearchParams({ tenant, page_size: "200" });
    if (token) q.set("page_token", token);
    const page = await api("GET", `/v1/keys?${q}`);
    for (const k of page.keys) users.add(k.user);
    token = page.next_page_token;
  } while (token);
  return [...users].sort().map((user) => ({ user }));
}

// view sets up what depends on the tenant chosen: the organization's ID,
// the member filter, the headings and which bulk delete is offered.
async function view() {
  const t = tenantView();
  const admin = administers(t);
  $("#org-id").textContent = t;
  $("#org-id-row").hidden = !t;
  members = admin ? await loadMembers(t) : [];
  if (tenantView() !== t) return; // switched again meanwhile
  $("#member").replaceChildren(new Option("Every member", ""), ...members.map((m) => new Option(m.user, m.user)));
  $("#member-filter").hidden = !admin;
  $("#delete-member").hidden = !admin;
  $("#delete-all").hidden = admin;
  $("#delete-all").textContent = t ? `Delete all my keys for ${t}` : "Delete all my keys";
  const note = $("#scope-note");
  note.hidden = !admin;
  note.textContent = admin ? `You are an admin of ${t}: you see and manage every key bound to it, whoever owns it.` : "";
  headings();
}

function headings() {
  const t = tenantView(), m = memberView();
  $("#keys-title").textContent = !t ? "Your keys" : !administers(t) ? `Your keys for ${t}` : m ? `Keys of ${m} for ${t}` : `Every key bound to ${t}`;
}

function render() {
  const list = $("#keys");
  list.replaceChildren(...keys.map(card));
  const t = tenantView(), m = memberView();
  const empty = $("#empty");
  empty.hidden = keys.length > 0;
  empty.textContent = !t ? "You have no keys yet. A key lets a program call the API as you."
    : !administers(t) ? `You have no keys for ${t} yet. A key made here acts for ${t}.`
    : m ? `${m} has no keys bound to ${t}.` : `No key is bound to ${t} yet.`;
  list.hidden = keys.length === 0;
  $("#delete-all").disabled = keys.length === 0;
  summary();
}

// summary counts what needs attention: expiring soon, expired, disabled.
function summary() {
  const n = keys.length;
  const soon = keys.filter((k) => expiry(k).soon).length;
  const expired = keys.filter((k) => expiry(k).expired).length;
  const disabled = keys.filter((k) => k.disabled).length;
  const parts = [];
  if (soon) parts.push(`${soon} ${soon === 1 ? "expires" : "expire"} within 7 days`);
  if (expired) parts.push(`${expired} expired`);
  if (disabled) parts.push(`${disabled} disabled`);
  const p = $("#summary");
  p.hidden = n === 0;
  p.textContent = `${n} ${n === 1 ? "key" : "keys"}${parts.length ? ": " + parts.join(", ") : ""}.`;
  p.classList.toggle("warn", soon > 0);
}

function button(text, label, onclick, cls) {
  const b = el("button", { type: "button", class: cls, "aria-label": label, text });
  b.addEventListener("click", onclick);
  return b;
}

// card shows one key: its names, its facts, who disabled it, its usage and
// what the user may do with it.
function card(k) {
  const exp = expiry(k);
  const titleID = `key-${k.id}-title`;
  const li = el("li", { class: "key", "data-id": k.id, "aria-labelledby": titleID });
  const badges = [el("span", { class: `badge state ${k.state}`, text: k.state })];
  if (exp.soon) badges.push(el("span", { class: "badge soon", text: "expires soon" }));
  const actions = el("div", { class: "key-actions" });
  const own = k.user === me.user;
  if (k.disabled && mayEnable(k)) actions.append(button("Enable", `Enable ${k.label}`, () => setDisabled(k, false)));
  if (!k.disabled && k.state !== "expired") actions.append(button("Disable", `Disable ${k.label}`, () => setDisabled(k, true)));
  if (own) actions.append(button("Refresh", `Refresh ${k.label}`, () => openRefresh(k)));
  actions.append(button("Delete", `Delete ${k.label}`, () => openDelete(k), "danger"));
  li.append(el("div", { class: "key-head" }, el("h3", { id: titleID, text: k.label }), ...badges, actions));
  if (k.description) li.append(el("p", { class: "description", text: k.description }));
  if (k.disabled) {
    li.append(el("p", { class: "disabled-note", text: disabledBy(k) + (mayEnable(k) ? "" : " " + whoMayEnable(k)) }));
  }

  const fact = (name, cls, ...value) => el("div", { class: cls }, el("dt", { text: name }), el("dd", {}, ...value));
  const id = el("code", { class: "key-id", text: k.id });
  const facts = el("dl", { class: "facts" },
    fact("ID", "fact-id", id, " ", button("Copy", `Copy the ID of ${k.label}`, (ev) => copy(ev.currentTarget, k.id, `the ID of ${k.label}`), "copy small")),
    fact("Key", "fact-start", el("code", { text: k.start + "…" })),
    fact("Organization", "fact-tenant", k.tenant ? el("span", { text: k.tenant }) : el("span", { class: "personal", text: "personal" })),
  );
  if (tenantView() && administers(tenantView())) {
    facts.append(fact("Owner", "fact-owner", k.user ? el("span", { text: k.user + (own ? " (you)" : "") }) : el("span", { class: "hint", text: `none: ${k.tenant}'s own` })));
  }
  facts.append(
    fact("Created", "fact-created", timeEl(k.created_at, date(k.created_at))),
    fact("Expires", "fact-expires", exp.node),
    fact("Last used", "fact-used", lastUsed(k.last_used_at)),
    fact("Access", "fact-tier", el("strong", { text: k.tier }), ...(tierText(k.tier) ? [el("span", { class: "hint block", text: tierText(k.tier) })] : [])),
  );
  if (me.metered) facts.append(fact("Units, last 30 days", "fact-units", el("span", { class: "hint loading", text: "Loading…" })));
  const fig = el("figure", { class: "usage" }, el("p", { class: "hint loading", text: "Loading checks…" }));
  li.append(el("div", { class: "key-body" }, facts, fig));
  return li;
}

// --- Usage -------------------------------------------------------------------

// niceMax rounds a count up to 1, 2 or 5 times a power of ten, for the y axis.
function niceMax(n) {
  if (n <= 1) return 1;
  const p = 10 ** Math.floor(Math.log10(n));
  for (const m of [1, 2, 5, 10]) if (m * p >= n) return m * p;
  return 10 * p;
}

// lastDays are the UTC dates of the usage API's window, oldest first.
function lastDays() {
  const today = Date.now(), out = [];
  for (let i = USAGE_DAYS - 1; i >= 0; i--) out.push(new Date(today - i * DAY).toISOString().slice(0, 10));
  return out;
}

function count(n, one, many = one + "s") { return `${n.toLocaleString("en-US")} ${n === 1 ? one : many}`; }

// chart draws per-day values over the last 30 days (UTC, as the API counts
// them): each day's series stacked in one bar (a day with none has no
// bar), a y axis from 0 to a round maximum over the peak day, dates along
// the x axis, each bar's numbers as its tooltip and label as the chart's
// accessible name. byDay maps a date to its row; series are
// [{cls, of(row)}]; tip(date, row) is a bar's tooltip.
function chart(byDay, series, tip, label, W = 320) {
  const dayList = lastDays();
  const sum = (d) => series.reduce((n, s) => n + (s.of(d) || 0), 0);
  const peak = Math.max(0, ...dayList.map((day) => (byDay.has(day) ? sum(byDay.get(day)) : 0)));
  const top = niceMax(peak);

  const ns = "http://www.w3.org/2000/svg";
  const H = 128, L = 40, R = 8, T = 8, B = 22;
  const pw = W - L - R, ph = H - T - B, step = pw / USAGE_DAYS, bw = Math.max(step - 2, 2);
  const svg = document.createElementNS(ns, "svg");
  const node = (tag, attrs, text) => {
    const n = document.createElementNS(ns, tag);
    for (const [a, v] of Object.entries(attrs)) n.setAttribute(a, String(v));
    if (text !== undefined) n.textContent = text;
    return n;
  };
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.setAttribute("class", "chart");
  svg.setAttribute("role", "img");
  const y = (v) => T + ph - (ph * v) / top;
  const ticks = top % 2 === 0 ? [0, top / 2, top] : [0, top];
  for (const v of ticks) {
    svg.append(node("line", { class: v ? "grid" : "axis-line", x1: L, x2: W - R, y1: y(v), y2: y(v) }));
    svg.append(node("text", { class: "axis y-tick", x: L - 6, y: y(v) + 3.5, "text-anchor": "end" }, v.toLocaleString("en-US")));
  }
  dayList.forEach((day, i) => {
    const d = byDay.get(day);
    if (!d || !sum(d)) return;
    const g = node("g", { class: "day" });
    g.append(node("title", {}, tip(dayFmt.format(new Date(day)), d)));
    const x = L + i * step + (step - bw) / 2;
    let base = 0;
    for (const s of series) {
      const v = s.of(d) || 0;
      if (v) g.append(node("rect", { class: s.cls, x, width: bw, y: y(base + v), height: y(base) - y(base + v) }));
      base += v;
    }
    svg.append(g);
  });
  const xLabel = (i, anchor, text) => svg.append(node("text", { class: "axis x-tick", x: L + i * step + step / 2, y: H - 6, "text-anchor": anchor }, text));
  xLabel(0, "start", dayFmt.format(new Date(dayList[0])));
  xLabel(Math.floor(USAGE_DAYS / 2), "middle", dayFmt.format(new Date(dayList[Math.floor(USAGE_DAYS / 2)])));
  xLabel(USAGE_DAYS - 1, "end", "today");
  svg.setAttribute("aria-label", `${label}; at most ${peak.toLocaleString("en-US")} in a day`);
  return svg;
}

// usage draws a key's checks per day over the last 30 days: allowed and
// denied stacked, with the totals beneath.
async function usage(k) {
  const u = await api("GET", `/v1/keys/${encodeURIComponent(k.id)}/usage`);
  const svg = chart(new Map(u.days.map((d) => [d.date, d])),
    [{ cls: "allowed", of: (d) => d.allowed }, { cls: "denied", of: (d) => d.denied }],
    (day, d) => `${day}: ${d.allowed} allowed, ${d.denied} denied`,
    `${u.allowed.toLocaleString("en-US")} allowed and ${u.denied.toLocaleString("en-US")} denied checks in the last 30 days`);
  const legend = el("p", { class: "legend" },
    el("span", { class: "swatch allowed", "aria-hidden": "true" }), el("span", { class: "total-allowed", text: `${u.allowed.toLocaleString("en-US")} allowed` }),
    el("span", { class: "swatch denied", "aria-hidden": "true" }), el("span", { class: "total-denied", text: `${u.denied.toLocaleString("en-US")} denied` }));
  const fig = document.querySelector(`li[data-id="${CSS.escape(k.id)}"] .usage`);
  if (fig) fig.replaceChildren(el("figcaption", { text: "Checks per day, last 30 days (UTC)" }), svg, legend);
}

// keyUnits writes on a key's card the units its allowed checks were
// charged over the last 30 days, and to which wallets (GET /v1/usage by
// tenant; a tenant admin reads a member's key through the tenant).
async function keyUnits(k) {
  const q = new URLSearchParams({ key: k.id, group_by: "tenant" });
  if (administers(tenantView())) q.set("tenant", tenantView());
  const { rows } = await api("GET", `/v1/usage?${q}`);
  const charged = rows.filter((r) => r.units > 0).sort((a, b) => b.units - a.units || a.tenant.localeCompare(b.tenant)); // most first
  const total = charged.reduce((n, r) => n + r.units, 0);
  const dd = document.querySelector(`li[data-id="${CSS.escape(k.id)}"] .fact-units dd`);
  if (!dd) return;
  const from = charged.map((r) => (charged.length > 1 ? `${r.units.toLocaleString("en-US")} ` : "") +
    (r.tenant === me.user ? "from your wallet" : `from ${r.tenant}'s wallet`));
  dd.replaceChildren(el("span", { class: "units-total", text: count(total, "unit") }),
    ...(from.length ? [el("span", { class: "hint block units-from", text: from.join(", ") })] : []));
}

// --- Credits -----------------------------------------------------------------

let walletsRead = 0;   // the newest read of the wallets
let walletsFresh = false; // me.wallets was read just now (at sign-in)

// walletTenant is the tenant whose wallet the view shows: the user's
// personal one under "All my keys", an organization's when they manage its
// keys, and none ("") for an organization they are only a member of: its
// wallet is not theirs to read.
function walletTenant() {
  const t = tenantView();
  if (!t) return me.user;
  return administers(t) ? t : "";
}

const utcFmt = new Intl.DateTimeFormat("en-US", { year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", hourCycle: "h23", timeZone: "UTC" });

// credits shows the wallet of the view's tenant: its balance, what it
// spent today, its refill and what replicas hold, and its units per day
// over the last 30 days. The session says which wallets the user may read;
// it is read again at every load, so the balance follows the checks, and
// meanwhile the panel shows what it knew (the list below does not jump).
// A tenant with no wallet is not metered; nothing shows when the policy
// meters nothing. #credits is aria-busy until it is current.
async function credits() {
  const mine = ++walletsRead;
  const sec = $("#credits"), t = walletTenant();
  if (!me.metered || !t) {
    sec.hidden = true;
    sec.setAttribute("aria-busy", "false");
    return;
  }
  sec.setAttribute("aria-busy", "true");
  try {
    drawWallet(t);
    if (!walletsFresh) {
      const cur = await api("GET", "/v1/sessions/current");
      if (mine !== walletsRead) return;
      me.metered = cur.metered;
      me.wallets = cur.wallets;
      if (!me.metered) {
        sec.hidden = true;
        return;
      }
      drawWallet(t);
    }
    walletsFresh = false;
    if (!wallet(t)) return;
    const { rows } = await api("GET", `/v1/usage?${new URLSearchParams({ tenant: t, group_by: "date" })}`);
    if (mine !== walletsRead) return;
    drawUnits(t, rows);
  } finally {
    if (mine === walletsRead) sec.setAttribute("aria-busy", "false");
  }
}

function wallet(t) { return (me.wallets || []).find((w) => w.tenant === t); }

// drawWallet writes what the session says of t's wallet.
function drawWallet(t) {
  const sec = $("#credits");
  sec.hidden = false;
  const personal = t === me.user;
  $("#credits-title").textContent = personal ? "Your credits" : `Credits of ${t}`;
  const w = wallet(t);
  const none = $("#credits-none");
  none.hidden = !!w;
  $("#credits-body").hidden = !w;
  if (!w) {
    none.textContent = personal ? "You have no wallet: calls acting for you are not metered, and cost no credits."
      : `${t} has no wallet: calls acting for it are not metered, and cost no credits.`;
    return;
  }
  $("#credits-about").textContent = personal
    ? "Every allowed call acting for you, not for an organization, is charged to your personal wallet."
    : `Every allowed call acting for ${t} is charged to its wallet, whoever makes it.`;
  $("#credit-balance").replaceChildren(el("span", { class: "balance", text: count(w.balance, "unit") }),
    ...(w.balance <= 0 ? [el("span", { class: "block exhausted", text: "Calls that cost credits are refused until credits are granted" + (w.refill ? " or refilled." : ".") })] : []));
  $("#credit-spent").textContent = count(w.spent_today, "unit");
  $("#credit-refill-row").hidden = !w.refill;
  if (w.refill) {
    const r = w.refill;
    $("#credit-refill").replaceChildren(
      el("span", { text: `Up to ${count(r.amount, "unit")} ${r.every === "month" ? `on day ${r.day} of every month` : "every day"}` }),
      ...(w.next_refill_at ? [el("span", { class: "hint block" }, "next on ", timeEl(w.next_refill_at, utcFmt.format(new Date(w.next_refill_at)) + " UTC"))] : []));
  }
  $("#credit-held-row").hidden = !w.held;
  $("#credit-held").textContent = w.held ? `${count(w.held, "unit")}, set aside for calls in progress; what is not spent returns within seconds` : "";
  const fig = $("#credit-usage");
  if (fig.dataset.tenant !== t) { // another view's chart goes at once; empty axes hold its place
    fig.dataset.tenant = t;
    drawUnits(t, null);
  }
}

// drawUnits draws t's units per day (rows of GET /v1/usage by date; null:
// not read yet).
function drawUnits(t, rows) {
  const total = (rows || []).reduce((n, r) => n + r.units, 0);
  const svg = chart(new Map((rows || []).map((r) => [r.date, r])), [{ cls: "units", of: (r) => r.units }],
    (day, r) => `${day}: ${count(r.units, "unit")}, ${r.allowed} allowed and ${r.denied} denied checks`,
    rows ? `${count(total, "unit")} charged in the last 30 days` : "Loading units", 480);
  $("#credit-usage").replaceChildren(el("figcaption", { text: "Units per day, last 30 days (UTC)" }), svg,
    el("p", { class: "legend" }, el("span", { class: "swatch units", "aria-hidden": "true" }),
      rows ? el("span", { class: "total-units", text: `${count(total, "unit")} in 30 days` }) : el("span", { class: "hint loading", text: "Loading…" })));
}

// --- Copy --------------------------------------------------------------------

// copy writes text to the clipboard and says so on the button and aloud.
async function copy(btn, text, what) {
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    say(`Your browser did not let the page copy ${what}: select it and copy it yourself.`);
    return;
  }
  btn.textContent = "Copied";
  btn.classList.add("copied");
  say(`Copied ${what}.`);
  clearTimeout(btn.copiedTimer);
  btn.copiedTimer = setTimeout(() => { btn.textContent = "Copy"; btn.classList.remove("copied"); }, 3000);
}

$("#copy-user-id").addEventListener("click", (ev) => copy(ev.currentTarget, me.user, "your user ID"));
$("#copy-org-id").addEventListener("click", (ev) => copy(ev.currentTarget, tenantView(), "the organization ID"));

// --- Dialogs -----------------------------------------------------------------

// Each form's Cancel closes it; errors stay inside the dialog.
function dialogError(dialog, err) {
  const p = dialog.querySelector(".dialog-error");
  p.textContent = err ? err.message : "";
  p.hidden = !err;
}

for (const d of document.querySelectorAll("dialog")) {
  d.querySelector(".cancel")?.addEventListener("click", () => d.close());
}

function openCreate() {
  const d = $("#create-dialog");
  const f = $("#create-form");
  f.reset();
  dialogError(d, null);
  const tenants = $("#create-tenant");
  tenants.replaceChildren(new Option(`None: a personal key of ${me.user}`, ""), ...me.tenants.map((t) => new Option(t, t)));
  tenants.value = tenantView();
  $("#create-tenant-hint").textContent = me.tenants.length ? "A key bound to an organization acts for it, and only while you are a member." : "";
  $("#create-tenant-hint").hidden = me.tenants.length === 0;
  tenants.disabled = me.tenants.length === 0;
  const fs = $("#create-tiers");
  fs.replaceChildren(el("legend", { text: "Access" }), ...(me.tier_info?.length ? me.tier_info : me.tiers.map((name) => ({ name, description: "" }))).map((t, i) =>
    el("label", { class: "choice" },
      el("input", { type: "radio", name: "tier", value: t.name, checked: i === 0, required: true }),
      el("span", {}, el("strong", { text: t.name }), ...(t.description ? [el("span", { class: "hint block", text: t.description })] : [])))));
  fillExpiry(f, "create", null);
  d.showModal();
  $("#create-label").focus();
}

$("#create-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const d = $("#create-dialog");
  const f = ev.target;
  const body = { label: f.label.value.trim(), description: f.description.value.trim(), tier: f.tier.value,
    ...expiryFields(f.expiry, f.date) };
  if (f.tenant.value) body.tenant = f.tenant.value;
  try {
    const k = await api("POST", "/v1/keys", body);
    d.close();
    showSecret(k, `Key “${k.label}” created${k.tenant ? " for " + k.tenant : ""}.`);
    await load();
  } catch (err) {
    dialogError(d, err);
  }
});

function showSecret(k, message) {
  say(message);
  $("#secret-value").textContent = k.key;
  $("#secret-disabled").hidden = !k.disabled;
  $("#copied").textContent = "";
  $("#copy").textContent = "Copy";
  $("#secret-dialog").showModal();
  $("#copy").focus();
}

$("#copy").addEventListener("click", async () => {
  try {
    await navigator.clipboard.writeText($("#secret-value").textContent);
    $("#copy").textContent = "Copied";
    $("#copied").textContent = "Copied to the clipboard.";
  } catch {
    const range = document.createRange();
    range.selectNodeContents($("#secret-value"));
    getSelection().removeAllRanges();
    getSelection().addRange(range);
    $("#copied").textContent = "Selected: press Ctrl+C (⌘C) to copy.";
  }
});

$("#secret-done").addEventListener("click", () => {
  $("#secret-value").textContent = "";
  $("#secret-dialog").close();
});
// Closing the dialog any way (Escape too) forgets the value.
for (const ev of ["cancel", "close"]) {
  $("#secret-dialog").addEventListener(ev, () => { $("#secret-value").textContent = ""; });
}

let current = null; // the key a refresh or delete dialog is about

function openRefresh(k) {
  current = k;
  const d = $("#refresh-dialog");
  const f = $("#refresh-form");
  f.reset();
  dialogError(d, null);
  d.querySelector(".key-label").textContent = k.label;
  $("#refresh-disabled").hidden = !k.disabled;
  fillExpiry(f, "refresh", k);
  d.showModal();
}

$("#refresh-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const d = $("#refresh-dialog");
  const f = ev.target;
  const body = { ...expiryFields(f.expiry, f.date) };
  if (f.overlap.value) body.overlap = f.overlap.value;
  try {
    const k = await api("POST", `/v1/keys/${encodeURIComponent(current.id)}/refresh`, body);
    d.close();
    showSecret(k, `Key “${k.label}” refreshed${body.overlap ? "; the old value works for " + f.overlap.selectedOptions[0].text : ""}.`);
    await load();
  } catch (err) {
    dialogError(d, err);
  }
});

async function setDisabled(k, disabled) {
  showError(null);
  try {
    await api("PATCH", `/v1/keys/${encodeURIComponent(k.id)}`, { disabled });
    say(`Key “${k.label}” ${disabled ? "disabled: it is refused until it is enabled" : "enabled"}.`);
    await load();
  } catch (err) {
    showError(err);
  }
}

function openDelete(k) {
  current = k;
  const d = $("#delete-dialog");
  $("#delete-form").reset();
  dialogError(d, null);
  d.querySelector(".key-label").textContent = k.label;
  d.querySelector(".key-owner").textContent = k.user && k.user !== me.user ? ` (${k.user}'s key)` : "";
  d.querySelector("button[type=submit]").disabled = true;
  d.showModal();
  $("#delete-confirm").focus();
}

$("#delete-confirm").addEventListener("input", (ev) => {
  $("#delete-dialog button[type=submit]").disabled = ev.target.value !== current.label;
});

$("#delete-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const d = $("#delete-dialog");
  if ($("#delete-confirm").value !== current.label) return;
  try {
    await api("DELETE", `/v1/keys/${encodeURIComponent(current.id)}`);
    d.close();
    say(`Key “${current.label}” deleted.`);
    await load();
  } catch (err) {
    dialogError(d, err);
  }
});

// Delete all my keys: every key of the user's in the view (all of them,
// or those bound to the tenant chosen).
$("#delete-all").addEventListener("click", () => {
  const d = $("#delete-all-dialog");
  $("#delete-all-form").reset();
  dialogError(d, null);
  const t = tenantView();
  $("#delete-all-title").textContent = $("#delete-all").textContent;
  $("#delete-all-what").textContent = t
    ? `Every key of yours bound to ${t} is refused at once; your personal keys stay. This cannot be undone.`
    : "Every key of yours, personal or bound to an organization, is refused at once. This cannot be undone.";
  d.querySelector("button[type=submit]").disabled = true;
  d.showModal();
  $("#delete-all-confirm").focus();
});

$("#delete-all-confirm").addEventListener("input", (ev) => {
  $("#delete-all-dialog button[type=submit]").disabled = ev.target.value !== "delete all";
});

$("#delete-all-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const d = $("#delete-all-dialog");
  if ($("#delete-all-confirm").value !== "delete all") return;
  const body = tenantView() ? { tenant: tenantView(), user: me.user } : { user: me.user };
  try {
    const r = await api("POST", "/v1/keys/revoke", body);
    d.close();
    say(`${r.revoked} ${r.revoked === 1 ? "key" : "keys"} deleted.`);
    await load();
  } catch (err) {
    dialogError(d, err);
  }
});

// Delete a member's keys (a tenant admin): every key of one member bound
// to the tenant, confirmed by typing the member's ID.
function memberChosen() {
  const d = $("#delete-member-dialog");
  const u = $("#delete-member-user").value;
  for (const e of d.querySelectorAll(".member-id")) e.textContent = u;
  d.querySelector("button[type=submit]").disabled = $("#delete-member-confirm").value !== u;
}

$("#delete-member").addEventListener("click", () => {
  const d = $("#delete-member-dialog");
  $("#delete-member-form").reset();
  dialogError(d, null);
  const t = tenantView();
  $("#delete-member-title").textContent = `Delete all keys of a member of ${t}`;
  d.querySelector(".tenant-id").textContent = t;
  const sel = $("#delete-member-user");
  sel.replaceChildren(...members.map((m) => new Option(m.user, m.user)));
  sel.value = memberView() || members[0]?.user || "";
  memberChosen();
  d.showModal();
  (memberView() ? $("#delete-member-confirm") : sel).focus();
});

$("#delete-member-user").addEventListener("change", memberChosen);
$("#delete-member-confirm").addEventListener("input", memberChosen);

$("#delete-member-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const d = $("#delete-member-dialog");
  const u = $("#delete-member-user").value, t = tenantView();
  if (!u || $("#delete-member-confirm").value !== u) return;
  try {
    const r = await api("POST", "/v1/keys/revoke", { tenant: t, user: u });
    d.close();
    say(`${r.revoked} ${r.revoked === 1 ? "key" : "keys"} of ${u} bound to ${t} deleted.`);
    await load();
  } catch (err) {
    dialogError(d, err);
  }
});

$("#new-key").addEventListener("click", openCreate);

$("#tenant").addEventListener("change", async () => {
  try {
    await view();
    await load();
  } catch (err) {
    showError(err);
  }
});

$("#member").addEventListener("change", () => {
  headings();
  load().catch(showError);
});

$("#logout").addEventListener("click", async () => {
  try {
    await api("POST", "/v1/sessions/logout", {});
  } catch (err) {
    if (err.reason !== "invalid_session") return showError(err);
  }
  signedOut();
  say("Signed out.");
});

// start trades a sign-in link's code for a session, or resumes one.
async function start() {
  const code = new URLSearchParams(location.hash.slice(1)).get("code");
  if (code) {
    history.replaceState(null, "", location.pathname); // the code is good once: keep it out of history
    try {
      const s = await api("POST", "/v1/sessions/exchange", { code });
      csrf = s.csrf_token;
      sessionStorage.setItem(CSRF_KEY, csrf);
    } catch (err) {
      signedOut();
      return showError(err);
    }
  }
  if (!csrf) return signedOut();
  try {
    me = await api("GET", "/v1/sessions/current");
    walletsFresh = true;
  } catch (err) {
    signedOut();
    return showError(err);
  }
  $("#who").textContent = `Signed in as ${me.user}`;
  $("#user-id").textContent = me.user;
  const tenant = $("#tenant");
  tenant.replaceChildren(new Option("All my keys", ""), ...me.tenants.map((t) => {
    const m = membership(t);
    return new Option(m?.role ? `${t} (${m.role})` : t, t);
  }));
  tenant.value = me.tenant && me.tenants.includes(me.tenant) ? me.tenant : "";
  tenant.hidden = $("label[for=tenant]").hidden = me.tenants.length === 0;
  $("#account").hidden = false;
  $("#signed-out").hidden = true;
  $("#ids").hidden = false;
  $("#keys-section").hidden = false;
  await view();
  await load();
  say("");
}

start().catch(showError);
