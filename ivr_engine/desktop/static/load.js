// Contact-centre load: polls the JSON next to this page ("load") every 2 s and shows it.
// Plain JS, no build step, nothing from a CDN. Data reaches the page through textContent
// only (never innerHTML), so a team or skill name is always shown as text.
// ?every_ms=N changes the polling interval (100..60000 ms; for tests and wall screens).
"use strict";

(() => {
  const STATES = ["available", "reserved", "ringing", "on_call", "wrap_up", "paused", "logged_out"];
  const STATE_LABELS = {
    available: "Available",
    reserved: "Reserved",
    ringing: "Ringing",
    on_call: "On a call",
    wrap_up: "Wrap-up",
    paused: "Paused",
    logged_out: "Logged out",
  };
  const BUSY = ["reserved", "ringing", "on_call", "wrap_up"];
  const DEFAULT_EVERY_MS = 2000;
  const REQUEST_TIMEOUT_MS = 5000;
  // With api_tokens set, the token the timeline page (/timeline/) keeps in this tab.
  const TOKEN_KEY = "ivr-engine.api-token";

  const $ = (id) => document.getElementById(id);

  function pollInterval() {
    const asked = Number(new URLSearchParams(window.location.search).get("every_ms"));
    if (!Number.isFinite(asked) || asked <= 0) return DEFAULT_EVERY_MS;
    return Math.min(60000, Math.max(100, Math.round(asked)));
  }

  function setText(node, value) {
    node.textContent = value === null || value === undefined ? "" : String(value);
  }

  function cell(tag, value, column) {
    const node = document.createElement(tag);
    setText(node, value);
    if (column) node.dataset.col = column;
    return node;
  }

  function count(states, names) {
    return names.reduce((sum, name) => sum + (Number(states && states[name]) || 0), 0);
  }

  function loggedIn(states) {
    return count(states, STATES) - count(states, ["logged_out"]);
  }

  // 65 -> "1:05", 3725 -> "1:02:05"
  function formatWait(seconds) {
    const total = Math.max(0, Math.floor(Number(seconds) || 0));
    const h = Math.floor(total / 3600);
    const m = Math.floor((total % 3600) / 60);
    const s = String(total % 60).padStart(2, "0");
    return h > 0 ? `${h}:${String(m).padStart(2, "0")}:${s}` : `${m}:${s}`;
  }

  function replaceRows(table, rows) {
    table.tBodies[0].replaceChildren(...rows);
  }

  function skillRow(skill) {
    const tr = document.createElement("tr");
    tr.dataset.skill = skill.skill;
    const wait = cell("td", formatWait(skill.longest_wait_s), "longest_wait");
    wait.dataset.seconds = String(Math.floor(Number(skill.longest_wait_s) || 0));
    tr.append(
      cell("th", skill.skill, "skill"),
      cell("td", skill.waiting, "waiting"),
      cell("td", skill.ringing, "ringing"),
      wait,
      cell("td", count(skill.agents, ["available"]), "available"),
      cell("td", count(skill.agents, BUSY), "busy"),
      cell("td", loggedIn(skill.agents), "logged_in"),
    );
    return tr;
  }

  function agentRows(states) {
    return STATES.map((state) => {
      const tr = document.createElement("tr");
      tr.dataset.state = state;
      tr.append(cell("th", STATE_LABELS[state], "state"), cell("td", count(states, [state]), "count"));
      return tr;
    });
  }

  function teamHeader() {
    const tr = document.createElement("tr");
    tr.append(cell("th", "Team"), ...STATES.map((state) => cell("th", STATE_LABELS[state])));
    return tr;
  }

  function teamRow(team) {
    const tr = document.createElement("tr");
    tr.dataset.team = team.team;
    tr.append(cell("th", team.team, "team"), ...STATES.map((s) => cell("td", count(team.agents, [s]), s)));
    return tr;
  }

  function render(load) {
    setText($("total-waiting"), load.totals.waiting);
    setText($("total-ringing"), load.totals.ringing);
    setText($("total-longest"), formatWait(load.totals.longest_wait_s));
    replaceRows($("skills"), load.skills.map(skillRow));
    replaceRows($("agents"), agentRows(load.agents));
    replaceRows($("teams"), load.teams.map(teamRow));
    $("agent-state-warning").hidden = load.agent_state_available !== false;
    const updated = $("updated");
    updated.dateTime = load.at;
    setText(updated, new Date(load.at).toLocaleTimeString());
    styleTables();
  }

  function showStatus(state, text) {
    const status = $("status");
    status.dataset.state = state;
    setText(status, text);
  }

  function apiHeaders() {
    const headers = { Accept: "application/json" };
    let token = "";
    try {
      token = window.sessionStorage.getItem(TOKEN_KEY) || "";
    } catch (_error) {
      token = "";
    }
    if (token) headers.Authorization = `Bearer ${token}`;
    return headers;
  }

  async function fetchLoad() {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), REQUEST_TIMEOUT_MS);
    try {
      const response = await fetch("load", {
        headers: apiHeaders(),
        cache: "no-store",
        credentials: "same-origin",
        signal: controller.signal,
      });
      if (response.status === 401) {
        throw new Error("401: the API needs a token; enter it on /timeline/ in this tab, then come back");
      }
      if (!response.ok) throw new Error(`the server answered ${response.status}`);
      return await response.json();
    } finally {
      clearTimeout(timer);
    }
  }

  async function poll(everyMs) {
    try {
      render(await fetchLoad());
      showStatus("live", "Live");
    } catch (error) {
      showStatus("offline", `Cannot reach the server (${error.message}); showing the last figures.`);
    }
    setTimeout(() => poll(everyMs), everyMs);
  }

  function styleTables() {
    // CSSOM from this script: allowed by the page's CSP (no inline style attributes).
    for (const table of document.querySelectorAll("table")) {
      table.style.borderCollapse = "collapse";
      table.style.marginBottom = "1em";
    }
    for (const node of document.querySelectorAll("th, td")) {
      node.style.border = "1px solid #999";
      node.style.padding = "0.2em 0.6em";
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    const everyMs = pollInterval();
    setText($("interval"), everyMs / 1000);
    $("teams").tHead.replaceChildren(teamHeader());
    replaceRows($("agents"), agentRows({}));
    styleTables();
    poll(everyMs);
  });
})();
