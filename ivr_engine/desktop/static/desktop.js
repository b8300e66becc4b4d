// Agent desktop: plain JS, no build step. Every piece of data is put on the page with
// textContent (never innerHTML), so customer names and IVR input are always shown as text.
"use strict";

(() => {
  const STATE_LABELS = {
    logged_out: "Logged out",
    available: "Available",
    reserved: "Reserved",
    ringing: "Ringing",
    on_call: "On a call",
    wrap_up: "Wrap-up",
    paused: "Paused",
  };
  const WS_SESSION_ENDED = 4401;
  const MAX_RETRY_MS = 30000;

  const $ = (id) => document.getElementById(id);
  let socket = null;
  let signedIn = false;
  let retryMs = 1000;
  let retryTimer = null;
  let shownSinceMs = -1;

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

  function row(cells) {
    const tr = document.createElement("tr");
    for (const cell of cells) tr.append(cell instanceof Node ? cell : make("td", cell));
    return tr;
  }

  function when(iso) {
    const moment = new Date(iso);
    return Number.isNaN(moment.getTime()) ? String(iso) : moment.toLocaleString();
  }

  function showMessage(text, kind) {
    const box = $("message");
    setText(box, text);
    box.dataset.kind = kind || "error";
    box.hidden = !text;
  }

  async function call(path, body) {
    const options = { method: "GET", credentials: "same-origin", headers: { Accept: "application/json" } };
    if (body !== undefined) {
      options.method = "POST";
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(path, options);
    } catch (_error) {
      return { ok: false, status: 0, error: { message: "The server cannot be reached." } };
    }
    let data = null;
    try {
      data = await response.json();
    } catch (_error) {
      data = null;
    }
    if (response.ok) return { ok: true, status: response.status, data };
    const error = data && data.error ? data.error : { message: `Request failed (${response.status}).` };
    return { ok: false, status: response.status, error };
  }

  // ------------------------------------------------------------------ views

  function showLogin(message) {
    signedIn = false;
    closeSocket();
    $("who").hidden = true;
    $("desk-view").hidden = true;
    $("login-view").hidden = false;
    showMessage(message || "", "info");
    $("login-password").value = "";
    $("login-token").value = "";
  }

  function showDesk(me) {
    signedIn = true;
    shownSinceMs = -1;
    setText($("agent-name"), me.agent.name);
    setText($("agent-endpoint"), me.agent.sip_endpoint);
    $("who").hidden = false;
    $("login-view").hidden = true;
    $("desk-view").hidden = false;
    showMessage("");
    renderState(me.state);
    renderPop(me.pop);
    connect();
  }

  function renderState(state) {
    if (!state) return;
    if (typeof state.since_ms === "number" && state.since_ms < shownSinceMs) return; // stale
    shownSinceMs = typeof state.since_ms === "number" ? state.since_ms : shownSinceMs;
    const node = $("state");
    setText(node, STATE_LABELS[state.state] || state.state);
    node.dataset.state = state.state;
    setText($("state-since"), when(state.since));
    $("state-since").dateTime = state.since;
  }

  function renderList(list, items) {
    list.replaceChildren(...items.map((item) => make("li", item)));
  }

  function stepText(step) {
    const details = Object.entries(step.details || {}).map(([key, value]) => `${key}=${value}`);
    return details.length ? `${step.step} (${details.join(", ")})` : step.step;
  }

  function verifiedText(pop) {
    if (!pop.verified) return "no (sensitive fields hidden)";
    const by = pop.verified_by || [];
    return by.length ? `yes, by ${by.join(", ")}` : "yes";
  }

  function intentText(label, intent) {
    if (!intent) return "—";
    return label ? `${label} (${intent})` : intent;
  }

  function renderPop(pop) {
    $("pop").hidden = !pop;
    $("no-pop").hidden = Boolean(pop);
    if (!pop) return;
    setText($("pop-call-id"), pop.call_id);
    const customer = pop.customer;
    setText($("pop-customer-name"), customer ? customer.name || "(no name on file)" : "Unknown caller");
    renderList($("pop-identities"), customer ? customer.identities.map((i) => `${i.kind}: ${i.value}`) : []);
    setText($("pop-caller-id"), pop.caller_id || "—");
    setText($("pop-verified"), verifiedText(pop));
    setText($("pop-intent"), intentText(pop.intent_label, pop.intent));
    setText($("pop-target"), pop.target || "—");
    $("pop-history-warning").hidden = pop.history_available;
    renderList($("pop-routing-reasons"), pop.routing_reasons);
    renderList($("pop-menu-reasons"), pop.menu_reasons);
    renderList($("pop-path"), pop.path.map(stepText));
    $("pop-fields").tBodies[0].replaceChildren(
      ...pop.fields.map((field) => {
        const value = make("td", field.value, field.masked ? "masked" : "");
        value.dataset.masked = String(field.masked);
        const tr = row([field.name, value, field.source]);
        tr.dataset.field = field.name;
        return tr;
      })
    );
    $("pop-contacts").tBodies[0].replaceChildren(
      ...pop.recent_contacts.map((contact) =>
        row([
          when(contact.occurred_at),
          contact.channel,
          intentText(contact.intent_label, contact.intent),
          contact.event_type,
          contact.outcome || "",
        ])
      )
    );
  }

  // ------------------------------------------------------------------ socket

  function closeSocket() {
    if (retryTimer !== null) clearTimeout(retryTimer);
    retryTimer = null;
    if (socket) {
      const old = socket;
      socket = null;
      old.close();
    }
    setConnected(false);
  }

  function setConnected(connected) {
    const node = $("connection");
    node.dataset.connected = String(connected);
    setText(node, connected ? "live" : "offline");
  }

  function connect() {
    closeSocket();
    const url = new URL("ws", window.location.href);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(url);
    socket = ws;
    ws.onopen = () => {
      retryMs = 1000;
      setConnected(true);
    };
    ws.onmessage = (event) => {
      if (ws !== socket) return;
      let message;
      try {
        message = JSON.parse(event.data);
      } catch (_error) {
        return;
      }
      onMessage(message);
    };
    ws.onclose = (event) => {
      if (ws !== socket) return;
      socket = null;
      setConnected(false);
      if (event.code === WS_SESSION_ENDED) {
        showLogin(`Signed out: ${event.reason || "session ended"}.`);
      } else if (signedIn) {
        retryTimer = setTimeout(reconnect, retryMs);
        retryMs = Math.min(retryMs * 2, MAX_RETRY_MS);
      }
    };
  }

  async function reconnect() {
    retryTimer = null;
    const me = await call("api/me");
    if (me.ok) showDesk(me.data);
    else if (me.status === 401) showLogin("Your session has ended: log in again.");
    else retryTimer = setTimeout(reconnect, retryMs);
  }

  function onMessage(message) {
    switch (message.type) {
      case "hello":
        renderState(message.state);
        renderPop(message.pop);
        break;
      case "state":
        renderState(message.state);
        break;
      case "pop":
        renderPop(message.pop);
        break;
      case "pop_cleared":
        renderPop(null);
        break;
      case "bye":
        showLogin(`Signed out: ${message.reason}.`);
        break;
      default:
        break;
    }
  }

  // ------------------------------------------------------------------ actions

  async function logIn(event) {
    event.preventDefault();
    const token = $("login-token").value;
    const body = token
      ? { token }
      : { agent_id: $("login-agent").value.trim(), password: $("login-password").value };
    $("login-submit").disabled = true;
    const result = await call("login", body);
    $("login-submit").disabled = false;
    if (!result.ok) {
      showMessage(result.error.message);
      return;
    }
    const me = await call("api/me");
    if (me.ok) showDesk(me.data);
    else showMessage(me.error.message);
  }

  async function changeState(action) {
    const result = await call("api/state", { action });
    if (result.ok) {
      showMessage("");
      renderState(result.data.state);
    } else if (result.status === 401) {
      showLogin("Your session has ended: log in again.");
    } else {
      showMessage(result.error.message);
    }
  }

  async function signOut() {
    await call("logout", {});
    showLogin("You have signed out.");
  }

  async function dismissPop() {
    const result = await call("api/pop/dismiss", {});
    if (result.ok) renderPop(null);
    else showMessage(result.error.message);
  }

  async function start() {
    $("login-form").addEventListener("submit", logIn);
    $("sign-out").addEventListener("click", signOut);
    $("pop-dismiss").addEventListener("click", dismissPop);
    for (const button of document.querySelectorAll("#state-buttons button")) {
      button.addEventListener("click", () => changeState(button.dataset.action));
    }
    const me = await call("api/me");
    if (me.ok) showDesk(me.data);
    else showLogin("");
  }

  start();
})();
