// The sessions page: the user's sessions, newest first, their phases kept up to date.
//
// One event stream per session would soon exhaust the browser's six connections per
// origin, so this page reads the listing every few seconds while it is visible instead;
// the session page follows its one session live.

import {
  api,
  byId,
  durationSeconds,
  h,
  humanSpan,
  instant,
  phaseBadge,
  showProblem,
  timeElement,
  whenSignedIn,
} from "./common.js";

const POLL_MS = 3000;
const HIDDEN = new Set(["REJECTED", "EXPIRED"]);
const NAMED_AT_MOST = 50; // the listing has no names: each poll reads at most this many
const rows = new Map(); // uuid → <tr>, reused so that focus and position survive updates
const names = new Map(); // uuid → executable name (names do not change)

function cell(label, ...content) {
  return h("td", { "data-label": label }, ...content);
}

function buildRow(session) {
  const uuid = session.meta.uuid;
  return h(
    "tr",
    { "data-uuid": uuid },
    h(
      "th",
      { scope: "row", "data-label": "Session" },
      h(
        "a",
        { href: `sessions/${uuid}`, "aria-label": `Session ${uuid}` },
        h("span", { class: "name" }),
        h("span", { class: "mono quiet" }, uuid.slice(0, 8)),
      ),
    ),
    cell("Phase", phaseBadge(session.phase)),
    cell("Starts", timeElement(instant(session.schedule?.available?.start))),
    cell("Runs for", humanSpan(durationSeconds(session.schedule?.available?.duration))),
    cell("Created", timeElement(instant(session.meta.created))),
  );
}

function showName(row, uuid) {
  const name = names.get(uuid);
  const holder = row.querySelector(".name");
  if (name && holder.textContent !== name) {
    holder.textContent = name;
    row.querySelector("a").setAttribute("aria-label", `${name}, session ${uuid}`);
  }
}

/** Reads the names of listed sessions not named yet, a few at a time. */
async function fetchNames(uuids, signal) {
  const wanted = uuids.filter((uuid) => !names.has(uuid)).slice(0, NAMED_AT_MOST);
  for (const uuid of wanted) names.set(uuid, ""); // asked once, whatever the answer
  for (let i = 0; i < wanted.length && !signal.aborted; i += 4) {
    await Promise.all(
      wanted.slice(i, i + 4).map(async (uuid) => {
        try {
          const session = await api(`sessions/${uuid}`, { signal });
          names.set(uuid, session.executable?.meta?.name || "");
          const row = rows.get(uuid);
          if (row) showName(row, uuid);
        } catch {
          // Unnamed it stays: the short UUID still identifies it.
        }
      }),
    );
  }
}

function refreshRow(row, session) {
  const badge = row.querySelector(".badge");
  if (badge.textContent !== session.phase) badge.replaceWith(phaseBadge(session.phase));
  const starts = row.children[2];
  starts.replaceChildren(timeElement(instant(session.schedule?.available?.start)));
  const runs = row.children[3];
  runs.textContent = humanSpan(durationSeconds(session.schedule?.available?.duration));
}

function render(sessions) {
  const showAll = byId("show-all").checked;
  const shown = sessions.filter((s) => showAll || !HIDDEN.has(s.phase));
  const body = byId("sessions").tBodies[0];
  const wanted = [];
  for (const session of shown) {
    const uuid = session.meta.uuid;
    let row = rows.get(uuid);
    if (row) refreshRow(row, session);
    else {
      row = buildRow(session);
      rows.set(uuid, row);
      showName(row, uuid);
    }
    wanted.push(row);
  }
  const current = [...body.children];
  const same = current.length === wanted.length && current.every((row, i) => row === wanted[i]);
  if (!same) {
    const focused = document.activeElement;
    body.replaceChildren(...wanted);
    if (focused && body.contains(focused)) focused.focus();
  }
  byId("sessions").hidden = shown.length === 0;
  byId("empty").hidden = shown.length !== 0;
}

whenSignedIn(async (signal) => {
  let latest = [];
  byId("show-all").addEventListener("change", () => render(latest), { signal });
  while (!signal.aborted) {
    if (!document.hidden) {
      try {
        latest = (await api("sessions?last=200", { signal })).sessions;
        render(latest);
        showProblem(null);
        fetchNames(
          latest.filter((s) => !HIDDEN.has(s.phase)).map((s) => s.meta.uuid),
          signal,
        );
        byId("updated").textContent = `Updated ${new Date().toLocaleTimeString()}`;
      } catch (failure) {
        if (signal.aborted) return;
        showProblem(failure);
      }
    }
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
});
