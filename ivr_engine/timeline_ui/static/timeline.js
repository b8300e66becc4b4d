// Customer timeline: plain JS, no build step, no inline script (the page's CSP forbids it).
// Every piece of data is put on the page with textContent (never innerHTML), so customer
// names, chat text and IVR input are always shown as text.
"use strict";

(() => {
  // Icons from the basic symbol blocks (in every common font: no emoji font needed).
  const CHANNELS = {
    voice: { icon: "\u260E", label: "Voice call" },
    chat: { icon: "\u275D", label: "Chat" },
    email: { icon: "\u2709", label: "E-mail" },
    sms: { icon: "\u2706", label: "SMS" },
    messenger: { icon: "\u27A4", label: "Messenger" },
    web: { icon: "\u2302", label: "Web" },
    system: { icon: "\u2699", label: "System" },
  };
  const MAX_DATA_ENTRIES = 20;
  const MAX_VALUE_CHARS = 300;

  const $ = (id) => document.getElementById(id);
  const API_BASE = document.body.dataset.apiBase || "/";
  const PAGE_SIZE = Math.min(Math.max(Number.parseInt(document.body.dataset.pageSize, 10) || 50, 1), 200);
  const TOKEN_REQUIRED = document.body.dataset.tokenRequired === "true";
  // The API token lives in this tab's sessionStorage only (never a cookie, never the URL).
  const TOKEN_KEY = "ivr-engine.api-token";

  // One search at a time: a reply to an older search (or page) is dropped when it lands late.
  let generation = 0;
  let current = null; // { customer, events, nextBefore, loaded }

  // ------------------------------------------------------------------ helpers

  function setText(node, value) {
    node.textContent = value === null || value === undefined ? "" : String(value);
  }

  function make(tag, value, className) {
    const node = document.createElement(tag);
    setText(node, value);
    if (className) node.className = className;
    return node;
  }

  function list(tag, items) {
    const node = document.createElement(tag);
    node.append(...items.map((item) => make("li", item)));
    return node;
  }

  function when(iso) {
    const moment = new Date(iso);
    return Number.isNaN(moment.getTime()) ? String(iso) : moment.toLocaleString();
  }

  function clip(text) {
    return text.length > MAX_VALUE_CHARS ? `${text.slice(0, MAX_VALUE_CHARS)}\u2026` : text;
  }

  function valueText(value) {
    if (value === null || value === undefined) return "\u2014";
    if (typeof value === "boolean") return value ? "yes" : "no";
    if (Array.isArray(value) && value.every((v) => v === null || typeof v !== "object")) {
      return value.map(valueText).join(", ");
    }
    if (typeof value === "object") return clip(JSON.stringify(value));
    return clip(String(value));
  }

  function showMessage(text, kind) {
    const box = $("message");
    setText(box, text);
    box.dataset.kind = kind || "info";
    box.hidden = !text;
  }

  // ------------------------------------------------------------------ API token

  function storedToken() {
    try {
      return window.sessionStorage.getItem(TOKEN_KEY) || "";
    } catch (_error) {
      return "";
    }
  }

  function storeToken(token) {
    try {
      if (token) window.sessionStorage.setItem(TOKEN_KEY, token);
      else window.sessionStorage.removeItem(TOKEN_KEY);
    } catch (_error) {
      // Storage refused (private mode): the token is then asked again on every page load.
    }
    $("token-forget").hidden = !token;
  }

  function askForToken(text) {
    $("token-form").hidden = false;
    $("token-input").value = "";
    $("token-input").focus();
    showMessage(text, "error");
  }

  function apiHeaders() {
    const headers = { Accept: "application/json" };
    const token = storedToken();
    if (token) headers.Authorization = `Bearer ${token}`;
    return headers;
  }

  async function getJson(path, params) {
    const url = new URL(API_BASE + path, window.location.origin);
    for (const [key, value] of Object.entries(params)) {
      if (value !== null && value !== undefined) url.searchParams.set(key, String(value));
    }
    let response;
    try {
      response = await fetch(url, { credentials: "same-origin", headers: apiHeaders() });
    } catch (_error) {
      return { ok: false, error: { message: "The server cannot be reached." } };
    }
    if (response.status === 401) return { ok: false, unauthorized: true, hadToken: Boolean(storedToken()) };
    let data = null;
    try {
      data = await response.json();
    } catch (_error) {
      data = null;
    }
    if (response.ok && data) return { ok: true, data };
    const error = data && data.error ? data.error : { message: `Request failed (${response.status}).` };
    return { ok: false, error };
  }

  // ------------------------------------------------------------------ search

  function refused(result) {
    if (!result.unauthorized) return false;
    storeToken("");
    askForToken(
      result.hadToken
        ? "The API token was refused (401): enter a valid token."
        : "This API needs a token (401): enter your API token."
    );
    return true;
  }

  async function search(query) {
    const mine = ++generation;
    current = null;
    $("customer").hidden = true;
    $("choices").hidden = true;
    showMessage("Searching\u2026");
    const kind = query.includes("@") ? "email" : "phone";
    const result = await getJson("v1/customers", { [kind]: query });
    if (mine !== generation) return;
    if (refused(result)) return;
    if (!result.ok) {
      showMessage(result.error.message, "error");
      return;
    }
    const customers = result.data.customers || [];
    if (customers.length === 0) {
      showMessage(`No customer found for ${query}.`);
    } else if (customers.length === 1) {
      await openCustomer(customers[0], mine);
    } else {
      showChoices(customers, mine);
    }
  }

  function showChoices(customers, mine) {
    showMessage("");
    $("choice-list").replaceChildren(
      ...customers.map((customer) => {
        const button = make("button", `${customer.display_name || "(no name on file)"} \u2014 ${customer.customer_id}`);
        button.type = "button";
        button.addEventListener("click", () => {
          if (mine !== generation) return;
          $("choices").hidden = true;
          openCustomer(customer, mine);
        });
        const item = document.createElement("li");
        item.append(button);
        return item;
      })
    );
    $("choices").hidden = false;
  }

  async function openCustomer(customer, mine) {
    current = { customer, events: [], nextBefore: null, loaded: false };
    setText($("customer-name"), customer.display_name || "(no name on file)");
    setText($("customer-id"), customer.customer_id);
    setText($("customer-merged"), customer.merged_into ? `Merged into ${customer.merged_into}.` : "");
    $("customer-merged").hidden = !customer.merged_into;
    $("customer-identities").replaceChildren(
      ...customer.identities.map((identity) => make("li", `${identity.kind}: ${identity.value}`))
    );
    renderTimeline();
    $("customer").hidden = false;
    showMessage("");
    await loadPage(mine);
  }

  async function loadPage(mine) {
    const shown = current;
    const button = $("load-older");
    button.disabled = true;
    const path = `v1/customers/${encodeURIComponent(shown.customer.customer_id)}/timeline`;
    const result = await getJson(path, { limit: PAGE_SIZE, before: shown.nextBefore });
    button.disabled = false;
    if (mine !== generation || shown !== current) return;
    if (refused(result)) return;
    if (!result.ok) {
      showMessage(result.error.message, "error");
      return;
    }
    const seen = new Set(shown.events.map((event) => event.seq));
    shown.events.push(...result.data.events.filter((event) => !seen.has(event.seq)));
    shown.nextBefore = result.data.next_before;
    shown.loaded = true;
    renderTimeline();
  }

  // ------------------------------------------------------------------ timeline

  // Newest first (the API's order). Events sharing a case_id form one thread, placed where
  // its newest event falls; older events of the case join the thread as pages load.
  function groupByCase(events) {
    const groups = [];
    const threads = new Map();
    for (const event of events) {
      if (!event.case_id) {
        groups.push({ caseId: null, events: [event] });
        continue;
      }
      let thread = threads.get(event.case_id);
      if (!thread) {
        thread = { caseId: event.case_id, events: [] };
        threads.set(event.case_id, thread);
        groups.push(thread);
      }
      thread.events.push(event);
    }
    return groups;
  }

  function renderTimeline() {
    const shown = current;
    const events = shown ? shown.events : [];
    const more = Boolean(shown && shown.nextBefore !== null);
    $("timeline").replaceChildren(...groupByCase(events).map(renderGroup));
    $("load-older").hidden = !more;
    const loaded = Boolean(shown && shown.loaded);
    $("empty-timeline").hidden = !loaded || events.length > 0 || more;
    $("timeline-end").hidden = !loaded || events.length === 0 || more;
  }

  function renderGroup(group) {
    const item = document.createElement("li");
    if (group.caseId === null) {
      item.append(renderEvent(group.events[0], "event"));
      return item;
    }
    item.className = "thread";
    item.dataset.case = group.caseId;
    const channels = [...new Set(group.events.map((event) => channelOf(event).label))];
    const count = group.events.length === 1 ? "1 contact" : `${group.events.length} contacts`;
    item.append(make("p", `Case ${group.caseId} \u00B7 ${count} \u00B7 ${channels.join(", ")}`, "thread-head"));
    const thread = make("ol", null, "thread-events");
    thread.append(
      ...group.events.map((event) => {
        const entry = document.createElement("li");
        entry.append(renderEvent(event, "event"));
        return entry;
      })
    );
    item.append(thread);
    return item;
  }

  function channelOf(event) {
    return CHANNELS[event.channel] || { icon: "\u2022", label: event.channel };
  }

  function renderEvent(event, className) {
    const box = make("article", null, className);
    box.dataset.seq = String(event.seq);
    box.dataset.channel = event.channel;
    const head = make("div", null, "event-head");
    const channel = make("span", null, "channel");
    channel.dataset.channel = event.channel;
    const icon = make("span", channelOf(event).icon, "channel-icon");
    icon.setAttribute("aria-hidden", "true");
    channel.append(icon, " ", make("span", channelOf(event).label, "channel-label"));
    const time = make("time", when(event.occurred_at));
    time.dateTime = event.occurred_at;
    head.append(channel, time, make("span", event.event_type, "event-type muted"));
    box.append(head, event.channel === "voice" ? voiceDetails(event) : dataDetails(event));
    return box;
  }

  function detailList(rows) {
    const dl = make("dl", null, "details");
    for (const [label, value, key] of rows) {
      const dt = make("dt", label);
      const dd = document.createElement("dd");
      dd.dataset.detail = key;
      if (value instanceof Node) dd.append(value);
      else setText(dd, value);
      dl.append(dt, dd);
    }
    return dl;
  }

  function stepText(step) {
    if (!step || typeof step !== "object") return valueText(step);
    const details = Object.entries(step)
      .filter(([key]) => key !== "step")
      .map(([key, value]) => `${key}=${valueText(value)}`);
    const name = valueText(step.step);
    return details.length ? `${name} (${details.join(", ")})` : name;
  }

  function strings(value) {
    return Array.isArray(value) ? value.map(valueText) : [];
  }

  function voiceDetails(event) {
    const data = event.data || {};
    const decision = data.decision && typeof data.decision === "object" ? data.decision : {};
    const routing = data.routing && typeof data.routing === "object" ? data.routing : {};
    const rows = [["Intent", event.intent || "\u2014", "intent"]];
    if ("outcome" in data) rows.push(["Outcome", valueText(data.outcome), "outcome"]);
    if (Array.isArray(data.path)) rows.push(["Menu path", list("ol", data.path.map(stepText)), "path"]);
    if (strings(decision.reasons).length) rows.push(["Menu reasons", list("ul", strings(decision.reasons)), "menu-reasons"]);
    if (strings(routing.reasons).length) rows.push(["Routing reasons", list("ul", strings(routing.reasons)), "routing-reasons"]);
    if (data.target) rows.push(["Routed to", valueText(data.target), "target"]);
    if (strings(data.prefilled).length) rows.push(["Prefilled", strings(data.prefilled).join(", "), "prefilled"]);
    if (strings(data.entered).length) rows.push(["Entered", strings(data.entered).join(", "), "entered"]);
    return detailList(rows);
  }

  function dataDetails(event) {
    const rows = [];
    if (event.intent) rows.push(["Intent", event.intent, "intent"]);
    const entries = Object.entries(event.data || {});
    for (const [key, value] of entries.slice(0, MAX_DATA_ENTRIES)) rows.push([key, valueText(value), key]);
    if (entries.length > MAX_DATA_ENTRIES) {
      rows.push(["\u2026", `${entries.length - MAX_DATA_ENTRIES} more`, "more"]);
    }
    return detailList(rows);
  }

  // ------------------------------------------------------------------ start

  function onSubmit(event) {
    event.preventDefault();
    const query = currentQuery();
    if (!query) return;
    const url = new URL(window.location.href);
    url.searchParams.set("q", query);
    window.history.replaceState(null, "", url);
    search(query);
  }

  function currentQuery() {
    return $("search-input").value.trim();
  }

  function onToken(event) {
    event.preventDefault();
    const token = $("token-input").value.trim();
    if (!token) return;
    if (!/^[\x21-\x7e]+$/.test(token)) {
      askForToken("An API token is printable ASCII without spaces: enter it again.");
      return;
    }
    storeToken(token);
    $("token-input").value = "";
    $("token-form").hidden = true;
    showMessage("");
    if (currentQuery()) search(currentQuery());
  }

  function onForget() {
    storeToken("");
    ++generation;
    current = null;
    $("customer").hidden = true;
    $("choices").hidden = true;
    askForToken("Token forgotten: enter an API token to search.");
  }

  function onLoadOlder() {
    if (current && current.nextBefore !== null) loadPage(generation);
  }

  function start() {
    $("search-form").addEventListener("submit", onSubmit);
    $("load-older").addEventListener("click", onLoadOlder);
    $("token-form").addEventListener("submit", onToken);
    $("token-forget").addEventListener("click", onForget);
    storeToken(storedToken());
    if (TOKEN_REQUIRED && !storedToken()) {
      $("token-form").hidden = false;
      showMessage("This API needs a token: enter your API token.");
    }
    const query = (new URLSearchParams(window.location.search).get("q") || "").trim();
    if (query) $("search-input").value = query;
    if (query && (!TOKEN_REQUIRED || storedToken())) search(query);
  }

  start();
})();
