// The token page: a signed-in user lists, creates, refreshes and deletes
// their API keys through the key-management API of this very origin. It
// loads nothing from elsewhere and writes every value with textContent.

const $ = (sel) => document.querySelector(sel);
const CSRF_KEY = "portcullis.csrf";
const DAY = 24 * 3600 * 1000;

let csrf = sessionStorage.getItem(CSRF_KEY) || "";
let me = null;      // GET /v1/sessions/current
let keys = [];      // the keys listed now

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

function say(text) { $("#status").textContent = text; }

function showError(err) {
  const el = $("#error");
  if (!err) { el.hidden = true; el.textContent = ""; return; }
  el.textContent = err.message || String(err);
  el.hidden = false;
  if (err.reason === "invalid_session") signedOut();
}

function signedOut() {
  sessionStorage.removeItem(CSRF_KEY);
  csrf = "";
  $("#account").hidden = true;
  $("#keys-section").hidden = true;
  $("#signed-out").hidden = false;
}

function when(iso) {
  if (!iso) return "never";
  return new Date(iso).toLocaleDateString(undefined, { year: "numeric", month: "short", day: "numeric" });
}

function lastUsed(iso) {
  if (!iso) return "not yet";
  const days = Math.floor((Date.now() - new Date(iso).getTime()) / DAY);
  return days <= 0 ? "today" : days === 1 ? "yesterday" : `${days} days ago`;
}

// Expiry presets, "never" only where the policy sets no key lifetime.
function fillExpiry(select, dateInput, dateLabel) {
  select.replaceChildren();
  const presets = [["30d", "In 30 days"], ["90d", "In 90 days"], ["365d", "In a year"], ["date", "On a date…"]];
  if (!me.max_lifetime) presets.push(["never", "Never"]);
  else presets.unshift(["max", `In ${me.max_lifetime.replace(/d$/, " days")} (the longest allowed)`]);
  for (const [value, text] of presets) select.append(new Option(text, value));
  const sync = () => { dateInput.hidden = dateLabel.hidden = select.value !== "date"; dateInput.required = select.value === "date"; };
  select.onchange = sync;
  dateInput.min = new Date(Date.now() + DAY).toISOString().slice(0, 10);
  sync();
}

// expiryFields turns an expiry choice into the API's fields.
function expiryFields(select, dateInput) {
  switch (select.value) {
    case "never": case "max": return {};
    case "date": return { expires_at: new Date(dateInput.value + "T23:59:59").toISOString().replace(/\.\d{3}Z$/, "Z") };
    default: return { expires_in: select.value };
  }
}

function tenantChoice() { return $("#tenant").value; }

let loading = 0; // the newest load; an older one that finishes later is dropped

async function load() {
  showError(null);
  const mine = ++loading;
  const tenant = tenantChoice();
  const q = tenant ? `?tenant=${encodeURIComponent(tenant)}&page_size=100` : `?user=${encodeURIComponent(me.user)}&page_size=100`;
  const list = [];
  let token = "";
  do {
    const page = await api("GET", `/v1/keys${q}${token ? "&page_token=" + encodeURIComponent(token) : ""}`);
    list.push(...page.keys);
    token = page.next_page_token;
  } while (token);
  if (mine !== loading) return;
  keys = list;
  render();
  for (const k of keys) usage(k).catch(() => {});
}

function render() {
  const body = $("#keys tbody");
  body.replaceChildren();
  $("#empty").hidden = keys.length > 0;
  $("#keys").hidden = keys.length === 0;
  $("#delete-all").disabled = keys.length === 0;
  for (const k of keys) {
    const tr = document.createElement("tr");
    tr.dataset.id = k.id;
    const cell = (label, ...children) => {
      const td = document.createElement("td");
      td.dataset.label = label;
      td.append(...children);
      tr.append(td);
      return td;
    };
    const name = document.createElement("strong");
    name.textContent = k.label;
    const desc = document.createElement("span");
    desc.className = "description";
    desc.textContent = k.description;
    cell("Label", name, desc);
    const start = document.createElement("code");
    start.textContent = k.start + "…";
    cell("Key", start);
    cell("Created", when(k.created_at));
    cell("Expires", when(k.expires_at));
    cell("Last used", lastUsed(k.last_used_at));
    const state = document.createElement("span");
    state.className = "state " + k.state;
    state.textContent = k.state;
    cell("State", state);
    cell("Checks, 30 days").className = "usage-cell";
    const actions = cell("Actions");
    actions.className = "actions";
    const refresh = document.createElement("button");
    refresh.type = "button";
    refresh.textContent = "Refresh";
    refresh.setAttribute("aria-label", `Refresh ${k.label}`);
    refresh.onclick = () => openRefresh(k);
    const del = document.createElement("button");
    del.type = "button";
    del.className = "danger";
    del.textContent = "Delete";
    del.setAttribute("aria-label", `Delete ${k.label}`);
    del.onclick = () => openDelete(k);
    actions.append(refresh, del);
    body.append(tr);
  }
}

// usage draws a key's last 30 days as bars: allowed above, denied below.
async function usage(k) {
  const u = await api("GET", `/v1/keys/${encodeURIComponent(k.id)}/usage`);
  const byDay = new Map(u.days.map((d) => [d.date, d]));
  const ns = "http://www.w3.org/2000/svg";
  const w = 4, gap = 1, h = 28, n = 30;
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("class", "usage");
  svg.setAttribute("width", String(n * (w + gap)));
  svg.setAttribute("height", String(h));
  svg.setAttribute("role", "img");
  const days = [];
  for (let i = n - 1; i >= 0; i--) days.push(new Date(Date.now() - i * DAY).toISOString().slice(0, 10));
  const max = Math.max(1, ...days.map((d) => (byDay.get(d)?.allowed || 0) + (byDay.get(d)?.denied || 0)));
  days.forEach((day, i) => {
    const d = byDay.get(day) || { allowed: 0, denied: 0 };
    const x = i * (w + gap);
    const bar = (cls, y, height) => {
      const r = document.createElementNS(ns, "rect");
      r.setAttribute("class", cls);
      r.setAttribute("x", String(x));
      r.setAttribute("y", String(y));
      r.setAttribute("width", String(w));
      r.setAttribute("height", String(Math.max(height, 0)));
      svg.append(r);
    };
    const a = Math.round(((h - 2) * d.allowed) / max), dn = Math.round(((h - 2) * d.denied) / max);
    bar("base", h - 1, 1);
    if (a) bar("allowed", h - 1 - a, a);
    if (dn) bar("denied", h - 1 - a - dn, dn);
  });
  const title = document.createElementNS(ns, "title");
  title.textContent = `${u.allowed} allowed and ${u.denied} denied checks in the last 30 days`;
  svg.prepend(title);
  svg.setAttribute("aria-label", title.textContent);
  const cell = document.querySelector(`tr[data-id="${CSS.escape(k.id)}"] .usage-cell`);
  if (cell) cell.replaceChildren(svg);
}

// Dialogs: each form's Cancel closes it; errors stay inside the dialog.
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
  $("#create-form").reset();
  dialogError(d, null);
  const tier = $("#create-tier");
  tier.replaceChildren(...me.tiers.map((t) => new Option(t, t)));
  fillExpiry($("#create-expiry"), $("#create-date"), d.querySelector(".date-label"));
  d.showModal();
  $("#create-label").focus();
}

$("#create-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const d = $("#create-dialog");
  const f = ev.target;
  const body = { label: f.label.value.trim(), description: f.description.value.trim(), tier: f.tier.value,
    ...expiryFields(f.expiry, f.date) };
  if (tenantChoice()) body.tenant = tenantChoice();
  try {
    const k = await api("POST", "/v1/keys", body);
    d.close();
    showSecret(k.key, `Key “${k.label}” created.`);
    await load();
  } catch (err) {
    dialogError(d, err);
  }
});

function showSecret(value, message) {
  say(message);
  $("#secret-value").textContent = value;
  $("#copied").textContent = "";
  $("#secret-dialog").showModal();
  $("#copy").focus();
}

$("#copy").addEventListener("click", async () => {
  try {
    await navigator.clipboard.writeText($("#secret-value").textContent);
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
  $("#refresh-form").reset();
  dialogError(d, null);
  d.querySelector(".key-label").textContent = k.label;
  fillExpiry($("#refresh-expiry"), $("#refresh-date"), d.querySelector(".date-label"));
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
    showSecret(k.key, `Key “${k.label}” refreshed${body.overlap ? "; the old value works for " + f.overlap.selectedOptions[0].text : ""}.`);
    await load();
  } catch (err) {
    dialogError(d, err);
  }
});

function openDelete(k) {
  current = k;
  const d = $("#delete-dialog");
  $("#delete-form").reset();
  dialogError(d, null);
  d.querySelector(".key-label").textContent = k.label;
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

$("#delete-all-confirm").addEventListener("input", (ev) => {
  $("#delete-all-dialog button[type=submit]").disabled = ev.target.value !== "delete all";
});

$("#delete-all-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const d = $("#delete-all-dialog");
  if ($("#delete-all-confirm").value !== "delete all") return;
  const body = tenantChoice() ? { tenant: tenantChoice(), user: me.user } : { user: me.user };
  try {
    const r = await api("POST", "/v1/keys/revoke", body);
    d.close();
    say(`${r.revoked} ${r.revoked === 1 ? "key" : "keys"} deleted.`);
    await load();
  } catch (err) {
    dialogError(d, err);
  }
});

$("#new-key").addEventListener("click", openCreate);
$("#delete-all").addEventListener("click", () => {
  const d = $("#delete-all-dialog");
  $("#delete-all-form").reset();
  dialogError(d, null);
  d.querySelector("button[type=submit]").disabled = true;
  d.showModal();
  $("#delete-all-confirm").focus();
});

$("#tenant").addEventListener("change", () => load().catch(showError));

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
  } catch (err) {
    signedOut();
    return showError(err);
  }
  $("#who").textContent = `Signed in as ${me.user}`;
  const tenant = $("#tenant");
  tenant.replaceChildren(new Option("All my keys", ""), ...me.tenants.map((t) => new Option(t, t)));
  tenant.value = me.tenant || "";
  tenant.hidden = $("label[for=tenant]").hidden = me.tenants.length === 0;
  $("#account").hidden = false;
  $("#signed-out").hidden = true;
  $("#keys-section").hidden = false;
  await load();
  say("");
}

start().catch(showError);
