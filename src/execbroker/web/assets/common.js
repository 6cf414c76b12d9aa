// What every dashboard page shares: the token, API calls, the event stream, formatting.
//
// The token is asked for once per tab and kept in sessionStorage (gone when the tab
// closes; never in a cookie or localStorage). Every API call sends it as
// "Authorization: Bearer"; the event stream too, read with fetch because EventSource
// cannot send headers. Nothing here builds HTML from strings: text goes in as text.
//
// `execbroker dashboard` prints a login link /ui/#token=<token>: the fragment is never sent
// to the server. It is moved into sessionStorage and removed from the address (and so from
// the history) before anything else runs.

const TOKEN_KEY = "execbroker.token";

function takeTokenFromFragment() {
  const fragment = new URLSearchParams(window.location.hash.slice(1));
  const given = fragment.get("token");
  if (given === null) return;
  if (given.trim()) sessionStorage.setItem(TOKEN_KEY, given.trim());
  fragment.delete("token");
  const rest = fragment.toString();
  const address = window.location.pathname + window.location.search + (rest ? `#${rest}` : "");
  window.history.replaceState(window.history.state, "", address);
}

takeTokenFromFragment();

// This file is <prefix>/ui/static/common.js: the API is <prefix>/, the pages <prefix>/ui/.
export const apiRoot = new URL("../../", import.meta.url);
export const uiRoot = new URL("../", import.meta.url);

export const TERMINAL = new Set(["COMPLETED", "FAILED", "CANCELLED", "REJECTED", "EXPIRED"]);

// ---------------------------------------------------------------- DOM

/** An element with attributes (strings; `false`/null skip; `on…` functions listen) and
 * children (nodes or text). */
export function h(tag, attributes = {}, ...children) {
  const svg = ["svg", "g", "rect", "line", "text", "title", "desc"].includes(tag);
  const element = svg
    ? document.createElementNS("http://www.w3.org/2000/svg", tag)
    : document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === false || value === null || value === undefined) continue;
    if (name.startsWith("on") && typeof value === "function") {
      element.addEventListener(name.slice(2), value);
    } else {
      element.setAttribute(name, value === true ? "" : String(value));
    }
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}

export function byId(id) {
  return document.getElementById(id);
}

/** A badge naming a phase, styled by its family. */
export function phaseBadge(phase, attributes = {}) {
  return h("span", { class: `badge ${phaseClass(phase)}`, ...attributes }, phase || "…");
}

export function phaseClass(phase) {
  switch (phase) {
    case "RUNNING":
    case "AVAILABLE":
    case "COMPLETED":
      return "good";
    case "FAILED":
      return "bad";
    case "CANCELLED":
    case "REJECTED":
    case "EXPIRED":
      return "ended";
    case "OFFERED":
      return "offered";
    default:
      return "busy";
  }
}

/** Puts the messages of an error (or plain text) in the page's alert region. */
export function showProblem(problem) {
  const region = byId("problem");
  if (!region) return;
  region.replaceChildren();
  if (!problem) return;
  const lines = problem instanceof ApiError ? problem.lines() : [String(problem.message || problem)];
  region.append(
    h("div", { class: "notice error" }, h("ul", {}, lines.map((line) => h("li", {}, line)))),
  );
}

// ---------------------------------------------------------------- token

export function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

function forgetToken() {
  sessionStorage.removeItem(TOKEN_KEY);
}

// ---------------------------------------------------------------- API

export class ApiError extends Error {
  constructor(status, body) {
    const messages = (body && Array.isArray(body.messages) ? body.messages : [])
      .map((m) => m.message || m.template)
      .filter(Boolean);
    super(messages[0] || `The broker answered ${status}`);
    this.status = status;
    this.messages = messages;
  }

  lines() {
    return this.messages.length ? this.messages : [this.message];
  }
}

function headers(extra = {}) {
  return { Authorization: `Bearer ${token()}`, Accept: "application/json", ...extra };
}

/** One API call: the parsed JSON answer, or an ApiError carrying the broker's messages.
 * A refused token sends the page back to the sign-in form. */
export async function api(path, { method = "GET", body, contentType, signal } = {}) {
  const options = { method, headers: headers(), cache: "no-store", signal };
  if (body !== undefined) {
    options.body = typeof body === "string" ? body : JSON.stringify(body);
    options.headers["Content-Type"] = contentType || "application/json";
  }
  // POST /requests answers 303 to the offer set: fetch follows it (same origin, so the
  // Authorization header goes along) and hands back the offer set.
  const response = await fetch(new URL(path, apiRoot), options);
  const text = await response.text();
  let parsed = null;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    parsed = null;
  }
  if (response.status === 401) {
    signedOut("The broker refused the token; enter another.");
    throw new ApiError(401, parsed);
  }
  if (!response.ok) throw new ApiError(response.status, parsed);
  return parsed;
}

/** An update to a session (accept, reject, cancel, extend). */
export function updateSession(uuid, update) {
  return api(`sessions/${uuid}`, { method: "POST", body: update });
}

export function phaseUpdate(phase) {
  return { kind: "uri:enum-value-update", path: "/phase", value: phase };
}

function sleep(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

function parseEvent(block) {
  let name = "message";
  const data = [];
  for (const line of block.split("\n")) {
    if (!line || line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") name = value;
    else if (field === "data") data.push(value);
  }
  return data.length ? { event: name, data: data.join("\n") } : null;
}

/** Follows `GET /sessions/{uuid}/events` with the token in the Authorization header
 * (fetch streaming: EventSource cannot send headers). Calls `onEvent` for each event,
 * `onStatus` with "connecting" | "live" | "reconnecting" | "ended", and `isOver` when
 * the server closes the stream (it does at a terminal phase): true ends, false reconnects. */
export async function followEvents(uuid, { onEvent, onStatus, isOver, signal }) {
  let delay = 1000;
  while (!signal.aborted) {
    try {
      onStatus("connecting");
      const response = await fetch(new URL(`sessions/${uuid}/events`, apiRoot), {
        headers: headers({ Accept: "text/event-stream" }),
        cache: "no-store",
        signal,
      });
      if (response.status === 401) {
        signedOut("The broker refused the token; enter another.");
        return;
      }
      if (!response.ok || !response.body) throw new ApiError(response.status, null);
      onStatus("live");
      delay = 1000;
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer = (buffer + value).replace(/\r\n/g, "\n");
        let end = buffer.indexOf("\n\n");
        while (end >= 0) {
          const event = parseEvent(buffer.slice(0, end));
          buffer = buffer.slice(end + 2);
          if (event) onEvent(event);
          end = buffer.indexOf("\n\n");
        }
      }
      if (await isOver()) {
        onStatus("ended");
        return;
      }
    } catch (failure) {
      if (signal.aborted) return;
      if (failure instanceof ApiError && failure.status === 404) {
        onStatus("ended");
        return;
      }
    }
    onStatus("reconnecting");
    await sleep(delay, signal);
    delay = Math.min(delay * 2, 15000);
  }
}

// ---------------------------------------------------------------- time

/** Seconds in an ISO-8601 duration such as PT2H9S or P1DT30M. */
export function durationSeconds(text) {
  const match = /^P(?:(\d+(?:\.\d+)?)D)?(?:T(?:(\d+(?:\.\d+)?)H)?(?:(\d+(?:\.\d+)?)M)?(?:(\d+(?:\.\d+)?)S)?)?$/.exec(
    text || "",
  );
  if (!match) return 0;
  const [, d, hours, m, s] = match.map((part) => Number(part || 0));
  return d * 86400 + hours * 3600 + m * 60 + s;
}

/** "2 h 5 min", "45 s": a span for people. */
export function humanSpan(seconds) {
  const total = Math.round(Math.abs(seconds));
  if (total < 60) return `${total} s`;
  const days = Math.floor(total / 86400);
  const hours = Math.floor((total % 86400) / 3600);
  const minutes = Math.floor((total % 3600) / 60);
  const rest = total % 60;
  const parts = [];
  if (days) parts.push(`${days} d`);
  if (hours) parts.push(`${hours} h`);
  if (minutes) parts.push(`${minutes} min`);
  if (rest && !days && !hours) parts.push(`${rest} s`);
  return parts.join(" ");
}

/** A start time from the schedule: "2030-01-01T10:00:00Z/PT0S" starts at its first part. */
export function instant(text) {
  if (!text) return null;
  const moment = new Date(text.split("/")[0]);
  return Number.isNaN(moment.getTime()) ? null : moment;
}

const timeFormat = new Intl.DateTimeFormat(undefined, {
  dateStyle: "medium",
  timeStyle: "medium",
});

/** A <time> element: local date and time, with the relative time in its title. */
export function timeElement(moment) {
  if (!moment) return document.createTextNode("—");
  return h(
    "time",
    { datetime: moment.toISOString(), title: relative(moment) },
    timeFormat.format(moment),
  );
}

export function relative(moment) {
  const seconds = (moment.getTime() - Date.now()) / 1000;
  if (Math.abs(seconds) < 1) return "now";
  return seconds > 0 ? `in ${humanSpan(seconds)}` : `${humanSpan(seconds)} ago`;
}

/** The three phases of a schedule as [name, start Date, end Date] (skipping missing ones). */
export function schedulePhases(schedule) {
  const phases = [];
  for (const name of ["preparing", "available", "releasing"]) {
    const part = schedule?.[name];
    const start = instant(part?.start);
    if (!start) continue;
    const end = new Date(start.getTime() + durationSeconds(part.duration) * 1000);
    phases.push([name, start, end]);
  }
  return phases;
}

/** The time axis of an SVG timeline drawn by `x` across [from, to]: between 2 and `most`
 * ticks, at least `spacing` pixels apart, each a grid line down to `height` and a label
 * (`label(Date, span in ms)`) above `top`. */
export function timeAxis({ from, to, width, height, x, top, spacing, most, label }) {
  const ticks = h("g", { class: "axis" });
  const count = Math.max(2, Math.min(most, Math.floor(width / spacing)));
  for (let i = 0; i <= count; i += 1) {
    const moment = from + ((to - from) * i) / count;
    const at = x(moment);
    ticks.append(h("line", { x1: at, x2: at, y1: top - 6, y2: height, class: "grid" }));
    const anchor = i === 0 ? "start" : i === count ? "end" : "middle";
    ticks.append(
      h("text", { x: at, y: top - 10, "text-anchor": anchor }, label(new Date(moment), to - from)),
    );
  }
  return ticks;
}

// ---------------------------------------------------------------- sign-in

let onSignedIn = null;
let running = null; // aborts what the page started (polls, streams) when the token goes

function signedOut(reason) {
  forgetToken();
  running?.abort();
  byId("page").hidden = true;
  renderWho();
  renderSignIn(reason);
}

function renderWho() {
  const who = byId("who");
  if (!who) return;
  who.replaceChildren();
  if (!token()) return;
  who.append(
    h("span", { class: "quiet" }, "Token kept in this tab"),
    h(
      "button",
      {
        type: "button",
        class: "link",
        onclick: () => {
          forgetToken();
          window.location.reload();
        },
      },
      "Forget token",
    ),
  );
}

function renderSignIn(reason) {
  const holder = byId("signin");
  const input = h("input", {
    type: "password",
    id: "token",
    name: "token",
    autocomplete: "off",
    spellcheck: "false",
    required: true,
    "aria-describedby": "token-help",
  });
  const help = h(
    "p",
    { class: "quiet", id: "token-help" },
    "A bearer token from the broker's operator. On the broker's machine, ",
    h("code", {}, "execbroker dashboard"),
    " prints a link that signs you in. It is kept in this tab only, until the tab closes.",
  );
  const status = h("p", { class: "quiet", role: "status", id: "token-status" });
  const problem = h("div", { role: "alert" });
  if (reason) problem.append(h("p", { class: "notice error" }, reason));
  const form = h(
    "form",
    {
      class: "signin",
      onsubmit: async (event) => {
        event.preventDefault();
        const value = input.value.trim();
        if (!value) {
          problem.replaceChildren(h("p", { class: "notice error" }, "Enter a token."));
          input.focus();
          return;
        }
        sessionStorage.setItem(TOKEN_KEY, value);
        try {
          await api("sessions?last=1");
        } catch (failure) {
          if (!(failure instanceof ApiError && failure.status === 401)) {
            forgetToken();
            problem.replaceChildren(
              h("p", { class: "notice error" }, `The broker could not be asked: ${failure.message}`),
            );
          }
          return;
        }
        start();
      },
    },
    h("h1", {}, "Sign in"),
    problem,
    h("div", { class: "field" }, h("label", { for: "token" }, "Bearer token"), input, help),
    status,
    h("button", { type: "submit", class: "primary" }, "Use token"),
  );
  holder.replaceChildren(form);
  holder.hidden = false;
  input.focus();
}

function start() {
  const holder = byId("signin");
  holder.replaceChildren();
  holder.hidden = true;
  byId("page").hidden = false;
  renderWho();
  running?.abort();
  running = new AbortController();
  onSignedIn(running.signal);
}

/** Runs `ready(signal)` once the tab has a token (asking for one first if needed); the
 * signal aborts if the token is refused later, when the page asks for another. */
export function whenSignedIn(ready) {
  onSignedIn = ready;
  if (token()) start();
  else renderSignIn(null);
}
