// The session page: phase, actions (accept/reject an offer, cancel, extend), connectors,
// a timeline of every component's schedule against now, and messages — kept live by the
// session's event stream.

import {
  TERMINAL,
  api,
  byId,
  durationSeconds,
  followEvents,
  h,
  humanSpan,
  instant,
  phaseBadge,
  phaseClass,
  phaseUpdate,
  schedulePhases,
  showProblem,
  timeAxis,
  timeElement,
  updateSession,
  whenSignedIn,
} from "./common.js";

const uuid = window.location.pathname.split("/").filter(Boolean).pop();
const EXTEND_PATH = "/schedule/available/duration";
const ROW = 44;
const AXIS = 28;
const NEAR_BEFORE = 5 * 60 * 1000;
const NEAR_AFTER = 10 * 60 * 1000;

let session = null;
let zoom = "all";
let confirming = false;
let drawn = null; // the range and width the timeline was last drawn for

// ---------------------------------------------------------------- components

function components(document_) {
  const found = [];
  const add = (role, component) => component && found.push({ role, component });
  add("executable", document_.executable);
  add("compute", document_.compute);
  for (const volume of document_.compute?.volumes || []) add("volume", volume);
  for (const storage of document_.storage || []) add("storage", storage);
  for (const data of document_.data || []) add("data", data);
  return found;
}

function nameOf(entry) {
  return entry.component.meta?.name || entry.role;
}

// ---------------------------------------------------------------- timeline (SVG)

function timeLabel(moment, span) {
  const options = span < 15 * 60 * 1000
    ? { hour: "2-digit", minute: "2-digit", second: "2-digit" }
    : { hour: "2-digit", minute: "2-digit" };
  if (span > 2 * 86400 * 1000) Object.assign(options, { month: "short", day: "numeric" });
  return moment.toLocaleString(undefined, options);
}

function drawTimeline() {
  const holder = byId("timeline");
  if (!session) return;
  const rows = [{ label: "session", phase: session.phase, schedule: session.schedule }].concat(
    components(session).map((entry) => ({
      label: `${entry.role} · ${nameOf(entry)}`,
      phase: entry.component.phase,
      schedule: entry.component.schedule,
    })),
  );
  const now = Date.now();
  const spans = rows.flatMap((row) => schedulePhases(row.schedule));
  let from = Math.min(now, ...spans.map(([, start]) => start.getTime()));
  let to = Math.max(now, ...spans.map(([, , end]) => end.getTime()));
  if (zoom === "near") {
    from = now - NEAR_BEFORE;
    to = now + NEAR_AFTER;
  }
  const pad = Math.max((to - from) * 0.02, 1000);
  from -= pad;
  to += pad;
  const width = Math.max(holder.clientWidth || 600, 280);
  const height = AXIS + rows.length * ROW + 4;
  const x = (moment) => ((moment - from) / (to - from)) * (width - 2);
  const svg = h(
    "svg",
    {
      width,
      height,
      viewBox: `0 0 ${width} ${height}`,
      role: "img",
      "aria-labelledby": "timeline-title timeline-desc",
      class: "gantt",
    },
    h("title", { id: "timeline-title" }, "Timeline of the session and its components"),
    h(
      "desc",
      { id: "timeline-desc" },
      "Bars show when each component prepares, is available and releases; a line marks now. The table below holds the same times.",
    ),
  );
  svg.append(
    timeAxis({ from, to, width, height, x, top: AXIS, spacing: 130, most: 6, label: timeLabel }),
  );
  rows.forEach((row, index) => {
    const top = AXIS + index * ROW;
    const group = h("g", { class: `row ${phaseClass(row.phase)}` });
    group.append(h("text", { x: 4, y: top + 14, class: "label" }, `${row.label} — ${row.phase}`));
    for (const [name, start, end] of schedulePhases(row.schedule)) {
      const left = Math.max(x(start.getTime()), 0);
      const right = Math.min(x(end.getTime()), width);
      if (right < 0 || left > width) continue;
      const current = currentPart(row.phase) === name;
      group.append(
        h(
          "rect",
          {
            x: left,
            y: top + 20,
            width: Math.max(right - left, 3),
            height: 14,
            rx: 2,
            class: `bar ${name}${current ? " current" : ""}`,
          },
          h(
            "title",
            {},
            `${row.label}: ${name} ${start.toLocaleString()} – ${end.toLocaleString()} (${humanSpan((end - start) / 1000)})`,
          ),
        ),
      );
    }
    svg.append(group);
  });
  svg.append(
    h(
      "g",
      { class: "now" },
      h("line", { y1: AXIS - 4, y2: height }),
      h("text", { y: height - 2, "text-anchor": "middle" }, "now"),
    ),
  );
  holder.replaceChildren(svg);
  drawn = { from, to, width, at: now, x, svg };
  placeNow(now);
}

function placeNow(now) {
  const at = drawn.x(now);
  const line = drawn.svg.querySelector(".now line");
  const label = drawn.svg.querySelector(".now text");
  line.setAttribute("x1", at);
  line.setAttribute("x2", at);
  label.setAttribute("x", Math.min(Math.max(at, 14), drawn.width - 14));
}

/** Every second: move the "now" line; redraw when now leaves the range drawn (or, around
 * now, once a minute), so that tooltips are not redrawn from under the pointer. */
function tick() {
  const now = Date.now();
  if (!drawn || !drawn.svg.isConnected || now >= drawn.to || (zoom === "near" && now - drawn.at > 60_000)) {
    drawTimeline();
  } else {
    placeNow(now);
  }
}

function currentPart(phase) {
  switch (phase) {
    case "PREPARING":
      return "preparing";
    case "AVAILABLE":
    case "RUNNING":
      return "available";
    case "RELEASING":
      return "releasing";
    default:
      return null;
  }
}

// ---------------------------------------------------------------- the rest of the page

function renderSchedule() {
  const body = byId("schedule").tBodies[0];
  const entries = [{ label: "Session", phase: session.phase, schedule: session.schedule }].concat(
    components(session).map((entry) => ({
      label: `${nameOf(entry)} (${entry.role})`,
      phase: entry.component.phase,
      schedule: entry.component.schedule,
    })),
  );
  body.replaceChildren(
    ...entries.map((entry) => {
      const parts = Object.fromEntries(schedulePhases(entry.schedule).map(([n, s, e]) => [n, [s, e]]));
      const last = parts.releasing?.[1] || parts.available?.[1];
      return h(
        "tr",
        {},
        h("th", { scope: "row", "data-label": "Component" }, entry.label),
        h("td", { "data-label": "Phase" }, phaseBadge(entry.phase)),
        h("td", { "data-label": "Preparing from" }, timeElement(parts.preparing?.[0])),
        h("td", { "data-label": "Available from" }, timeElement(parts.available?.[0])),
        h("td", { "data-label": "Releasing from" }, timeElement(parts.releasing?.[0])),
        h("td", { "data-label": "Done by" }, timeElement(last)),
      );
    }),
  );
}

// Why the session starts later than its request allowed: the broker's message naming the
// resource it waits for, while that message still speaks of this start (a session moved
// earlier since has another start, and a message of its own saying so).
function waitReason(start) {
  const why = (session.meta.messages || []).findLast((m) => m.values && "binding" in m.values);
  if (!why?.message || !start || why.values.start !== start.split("/")[0]) return null;
  const cut = why.message.indexOf(": ");
  return cut < 0 ? why.message : why.message.slice(cut + 2);
}

function renderSummary() {
  const available = session.schedule?.available;
  const start = instant(available?.start);
  const seconds = durationSeconds(available?.duration);
  const facts = [
    ["Session", h("span", { class: "mono" }, session.meta.uuid)],
    ["Starts", timeElement(start)],
    ["Runs for", humanSpan(seconds)],
    ["Ends", timeElement(start ? new Date(start.getTime() + seconds * 1000) : null)],
    ["Created", timeElement(instant(session.meta.created))],
  ];
  if (["OFFERED", "ACCEPTED", "WAITING"].includes(session.phase)) {
    const why = waitReason(available?.start);
    if (why) facts.splice(2, 0, ["Not earlier because", h("span", { id: "why-waiting" }, why)]);
  }
  if (session.expires) facts.push(["Offer expires", timeElement(instant(session.expires))]);
  if (session.compute?.cores) facts.push(["Cores", String(session.compute.cores.min)]);
  if (session.compute?.memory) facts.push(["Memory", `${session.compute.memory.min} GiB`]);
  byId("summary").replaceChildren(
    ...facts.flatMap(([term, value]) => [h("dt", {}, term), h("dd", {}, value)]),
  );
}

function safeHref(location) {
  try {
    const url = new URL(location);
    return url.protocol === "https:" || url.protocol === "http:" ? url.href : null;
  } catch {
    return null;
  }
}

function renderConnectors() {
  const list = byId("connectors");
  const connectors = session.connectors || [];
  if (!connectors.length) {
    list.replaceChildren(h("li", { class: "quiet" }, "None yet: they appear when the session is available."));
    return;
  }
  list.replaceChildren(
    ...connectors.map((connector) => {
      const kind = (connector.kind || "connector").split(":").pop();
      const href = safeHref(connector.location || connector.url || "");
      const label = `${kind} (${connector.protocol || "link"})`;
      return h(
        "li",
        {},
        href && connector.status !== "FINISHED"
          ? h("a", { href, target: "_blank", rel: "noopener noreferrer" }, `Open ${label}`)
          : h("span", {}, label),
        " ",
        h("span", { class: `badge ${connector.status === "AVAILABLE" ? "good" : "busy"}` }, connector.status || "?"),
      );
    }),
  );
}

function renderMessages() {
  const all = [
    ...(session.meta.messages || []).map((m) => ({ ...m, source: "session" })),
    ...components(session).flatMap((entry) =>
      (entry.component.meta?.messages || []).map((m) => ({ ...m, source: nameOf(entry) })),
    ),
  ].sort((a, b) => (b.time || "").localeCompare(a.time || ""));
  const list = byId("messages");
  list.replaceChildren(
    ...all.map((message) =>
      h(
        "li",
        { class: `message ${String(message.level || "info").toLowerCase()}` },
        h("span", { class: "level" }, message.level || "INFO"),
        " ",
        timeElement(instant(message.time)),
        " ",
        h("span", { class: "source" }, message.source),
        h("p", {}, message.message || message.template || ""),
      ),
    ),
  );
  if (!all.length) list.append(h("li", { class: "quiet" }, "No messages."));
}

function options() {
  const found = session.meta.options || [];
  const phases = found.find((o) => o.path === "/phase")?.values || [];
  const extend = found.find((o) => o.path === EXTEND_PATH && o.kind === "uri:integer-delta-option");
  return { phases, extend };
}

async function act(update, button) {
  button.disabled = true;
  showProblem(null);
  try {
    show(await updateSession(uuid, update));
  } catch (failure) {
    showProblem(failure);
    button.disabled = false;
  }
}

function renderActions() {
  const holder = byId("actions");
  const { phases, extend } = options();
  const focusedId = document.activeElement?.id;
  const parts = [];
  if (phases.includes("ACCEPTED")) {
    parts.push(
      h("button", { type: "button", class: "primary", id: "accept", onclick: (e) => act(phaseUpdate("ACCEPTED"), e.target) }, "Accept offer"),
    );
  }
  if (phases.includes("REJECTED")) {
    parts.push(
      h("button", { type: "button", class: "secondary", id: "reject", onclick: (e) => act(phaseUpdate("REJECTED"), e.target) }, "Reject offer"),
    );
  }
  if (phases.includes("CANCELLED")) {
    if (confirming) {
      parts.push(
        h(
          "div",
          { class: "confirm", role: "group", "aria-labelledby": "confirm-text" },
          h("span", { id: "confirm-text" }, "Cancel this session? What runs stops and its resources are released."),
          h("button", {
            type: "button",
            class: "danger",
            id: "confirm-cancel",
            onclick: (e) => {
              confirming = false;
              act(phaseUpdate("CANCELLED"), e.target);
            },
          }, "Yes, cancel it"),
          h("button", {
            type: "button",
            class: "secondary",
            id: "keep",
            onclick: () => {
              confirming = false;
              renderActions();
              byId("cancel")?.focus();
            },
          }, "Keep it"),
        ),
      );
    } else {
      parts.push(
        h("button", {
          type: "button",
          class: "danger",
          id: "cancel",
          onclick: () => {
            confirming = true;
            renderActions();
            byId("confirm-cancel")?.focus();
          },
        }, "Cancel session"),
      );
    }
  }
  if (extend) {
    const most = Math.floor((extend.max || 60) / 60);
    if (most >= 1) {
      const input = h("input", {
        type: "number",
        id: "extend-minutes",
        min: 1,
        max: most,
        value: Math.min(30, most),
        required: true,
        "aria-describedby": "extend-help",
      });
      parts.push(
        h(
          "form",
          {
            class: "extend",
            onsubmit: (event) => {
              event.preventDefault();
              const minutes = Math.round(Number(input.value));
              if (!(minutes >= 1 && minutes <= most)) {
                showProblem(`Extend by 1 to ${most} minutes.`);
                input.focus();
                return;
              }
              act(
                { kind: "uri:integer-delta-update", path: EXTEND_PATH, delta: minutes * 60, units: "seconds" },
                event.submitter || event.target.querySelector("button"),
              );
            },
          },
          h("label", { for: "extend-minutes" }, "Extend by (minutes)"),
          input,
          h("button", { type: "submit", class: "secondary", id: "extend" }, "Extend"),
          h("span", { class: "quiet", id: "extend-help" }, `up to ${humanSpan(most * 60)} more`),
        ),
      );
    }
  }
  if (!parts.length) {
    parts.push(
      h("p", { class: "quiet" }, TERMINAL.has(session.phase) ? "The session has ended: nothing to change." : "Nothing to change now."),
    );
  }
  // Keep typing in the extend field undisturbed by live updates.
  const typing = document.activeElement?.id === "extend-minutes" ? document.activeElement.value : null;
  holder.replaceChildren(...parts);
  if (typing !== null && byId("extend-minutes")) byId("extend-minutes").value = typing;
  if (focusedId && byId(focusedId)) byId(focusedId).focus();
}

function show(document_) {
  session = document_;
  const name = session.executable?.meta?.name || "Session";
  byId("title").textContent = name;
  document.title = `${name} (${session.phase}) · execbroker`;
  const badge = byId("phase");
  badge.textContent = session.phase;
  badge.className = `badge ${phaseClass(session.phase)}`;
  if (!options().phases.includes("CANCELLED")) confirming = false;
  renderActions();
  renderSummary();
  renderConnectors();
  drawTimeline();
  renderSchedule();
  renderMessages();
}

async function reload(signal) {
  show(await api(`sessions/${uuid}`, { signal }));
}

whenSignedIn(async (signal) => {
  for (const button of document.querySelectorAll("[data-zoom]")) {
    button.addEventListener(
      "click",
      () => {
        zoom = button.dataset.zoom;
        for (const other of document.querySelectorAll("[data-zoom]")) {
          other.setAttribute("aria-pressed", String(other === button));
        }
        drawTimeline();
      },
      { signal },
    );
  }
  new ResizeObserver(() => drawTimeline()).observe(byId("timeline"));
  // Move "now" along the timeline.
  const ticking = setInterval(tick, 1000);
  signal.addEventListener("abort", () => clearInterval(ticking));
  window.addEventListener("pagehide", () => clearInterval(ticking), { signal });

  try {
    await reload(signal);
  } catch (failure) {
    if (signal.aborted) return;
    showProblem(failure.status === 404 ? "There is no such session (or it is not yours)." : failure);
    return;
  }
  const live = byId("live");
  const words = {
    connecting: "Connecting to live updates…",
    live: "Live: phase changes appear as they happen.",
    reconnecting: "Live updates interrupted; reconnecting…",
    ended: "The session has ended.",
  };
  const stream = new AbortController();
  signal.addEventListener("abort", () => stream.abort());
  window.addEventListener("pagehide", () => stream.abort(), { signal });
  if (TERMINAL.has(session.phase)) {
    live.textContent = words.ended;
    return;
  }
  await followEvents(uuid, {
    signal: stream.signal,
    onStatus: (state) => {
      live.textContent = words[state];
    },
    onEvent: async (event) => {
      if (event.event !== "phase") return;
      try {
        await reload(signal);
      } catch (failure) {
        if (!signal.aborted) showProblem(failure);
      }
    },
    isOver: async () => {
      await reload(signal);
      return TERMINAL.has(session.phase);
    },
  });
});
