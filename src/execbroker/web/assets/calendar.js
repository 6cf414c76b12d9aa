// The pool calendar (administrators): every booking over a range, held against used, and
// the utilisation of each, from GET /admin/calendar. The page's own address carries the
// range (?from=…&to=…, ISO instants); without one it shows the next 24 hours and follows
// the time.

import {
  ApiError,
  TERMINAL,
  api,
  byId,
  h,
  humanSpan,
  phaseBadge,
  phaseClass,
  showProblem,
  timeAxis,
  timeElement,
  whenSignedIn,
} from "./common.js";

const POLL_MS = 15000;
const DRAWN_AT_MOST = 150; // Gantt rows; the table below lists every booking
const ROW = 22;
const AXIS = 28;
const LOAD_HEIGHT = 140;
const HOUR = 3600 * 1000;

const asked = new URLSearchParams(window.location.search);

function rangeLink(id, from, to) {
  const query = new URLSearchParams({ from: from.toISOString(), to: to.toISOString() });
  byId(id).setAttribute("href", `calendar?${query}`);
}

function setRangeLinks() {
  const now = new Date();
  rangeLink("range-past", new Date(now.getTime() - 24 * HOUR), now);
  byId("range-next").setAttribute("href", "calendar");
  rangeLink("range-week", now, new Date(now.getTime() + 7 * 24 * HOUR));
}

function percent(fraction) {
  return `${(fraction * 100).toFixed(1)} %`;
}

function hours(value) {
  return value.toLocaleString(undefined, { maximumFractionDigits: 1 });
}

function timeLabel(moment, span) {
  const options = { hour: "2-digit", minute: "2-digit" };
  if (span > 36 * HOUR) Object.assign(options, { month: "short", day: "numeric" });
  return moment.toLocaleString(undefined, options);
}

function fact(term, ...description) {
  return [h("dt", {}, term), h("dd", {}, ...description)];
}

function renderSummary(calendar) {
  const from = new Date(calendar.from);
  const to = new Date(calendar.to);
  byId("summary").replaceChildren(
    ...fact("Range", timeElement(from), " – ", timeElement(to), ` (${humanSpan((to - from) / 1000)})`),
    ...fact(
      "Pool",
      `${calendar.capacity.cores} cores, ${calendar.capacity.memory_gib} GiB memory, ` +
        `${calendar.capacity.storage_gib} GiB storage: ${hours(calendar.core_hours.pool)} core-hours in the range`,
    ),
    ...fact(
      "Held",
      h("strong", { id: "held-utilisation" }, percent(calendar.utilisation.held)),
      ` (${hours(calendar.core_hours.held)} core-hours)`,
    ),
    ...fact(
      "Used",
      h("strong", { id: "used-utilisation" }, percent(calendar.utilisation.used)),
      ` (${hours(calendar.core_hours.used)} core-hours)`,
    ),
    ...fact("Bookings", String(calendar.bookings.length)),
  );
}

function svgFrame(id, title, description, width, height) {
  return h(
    "svg",
    {
      width,
      height,
      viewBox: `0 0 ${width} ${height}`,
      role: "img",
      "aria-labelledby": `${id}-title ${id}-desc`,
      class: "gantt",
    },
    h("title", { id: `${id}-title` }, title),
    h("desc", { id: `${id}-desc` }, description),
  );
}

function axis(svg, { from, to, width, height, x }) {
  svg.append(
    timeAxis({ from, to, width, height, x, top: AXIS, spacing: 120, most: 8, label: timeLabel }),
  );
  const now = Date.now();
  if (now > from && now < to) {
    const at = x(now);
    svg.append(h("g", { class: "now" }, h("line", { x1: at, x2: at, y1: AXIS - 4, y2: height })));
  }
}

function drawLoad(calendar, frame) {
  const { from, to, width, x } = frame;
  const height = AXIS + LOAD_HEIGHT;
  const capacity = Math.max(calendar.capacity.cores, 1);
  const y = (cores) => AXIS + LOAD_HEIGHT - (Math.min(cores, capacity) / capacity) * (LOAD_HEIGHT - 4);
  const svg = svgFrame(
    "load",
    "Cores held and used over the range",
    "Held cores as the taller shade, used cores inside them; the table of bookings holds the same facts.",
    width,
    height,
  );
  axis(svg, { ...frame, height });
  const steps = calendar.series;
  const areas = h("g", { class: "load" });
  steps.forEach((step, index) => {
    const start = new Date(step.at).getTime();
    const end = index + 1 < steps.length ? new Date(steps[index + 1].at).getTime() : to;
    const left = x(Math.max(start, from));
    const right = x(Math.min(end, to));
    for (const kind of ["held", "used"]) {
      const cores = step[kind].cores;
      if (!cores) continue;
      areas.append(
        h(
          "rect",
          { x: left, y: y(cores), width: Math.max(right - left, 1), height: y(0) - y(cores), class: `area ${kind}` },
          h("title", {}, `${cores} cores ${kind} from ${new Date(start).toLocaleString()}`),
        ),
      );
    }
  });
  svg.append(areas);
  svg.append(
    h("line", { x1: x(from), x2: width, y1: y(capacity), y2: y(capacity), class: "capacity" }),
    h("text", { x: width - 4, y: y(capacity) + 12, "text-anchor": "end", class: "label" }, `${capacity} cores`),
  );
  byId("load").replaceChildren(svg);
}

function span(part) {
  return part ? [new Date(part.start).getTime(), new Date(part.end).getTime()] : null;
}

function drawGantt(calendar, frame) {
  const { from, to, width, x } = frame;
  const drawn = calendar.bookings.slice(0, DRAWN_AT_MOST);
  const height = AXIS + drawn.length * ROW + 4;
  const svg = svgFrame(
    "gantt",
    "The bookings over the range",
    "One row per booking: the held span as a light bar, the used span as a dark bar inside it.",
    width,
    height,
  );
  axis(svg, { ...frame, height });
  drawn.forEach((booking, index) => {
    const top = AXIS + index * ROW;
    const group = h("g", { class: `row ${phaseClass(booking.phase)}`, "data-session": booking.session });
    for (const [kind, part] of [["held", span(booking.held)], ["used", span(booking.used)]]) {
      if (!part) continue;
      const left = Math.max(x(part[0]), x(from));
      const right = Math.min(x(part[1]), width);
      if (right < 0 || left > width) continue;
      const inset = kind === "used" ? 4 : 0;
      group.append(
        h(
          "rect",
          { x: left, y: top + 2 + inset, width: Math.max(right - left, 2), height: ROW - 6 - 2 * inset, rx: 2, class: `bar ${kind}` },
          h(
            "title",
            {},
            `${booking.owner} · ${booking.session.slice(0, 8)} · ${booking.cores} cores · ${booking.phase}: ` +
              `${kind} ${new Date(part[0]).toLocaleString()} – ${new Date(part[1]).toLocaleString()}`,
          ),
        ),
      );
    }
    const label = `${booking.owner} · ${booking.cores} cores`;
    group.append(h("text", { x: 4, y: top + ROW - 8, class: "label" }, label.slice(0, 24)));
    svg.append(group);
  });
  byId("gantt").replaceChildren(svg);
  const notes = [];
  if (calendar.bookings.length > drawn.length) {
    notes.push(`The chart shows the first ${drawn.length} of ${calendar.bookings.length} bookings; the table lists them all.`);
  }
  for (const message of calendar.messages || []) notes.push(message.message);
  byId("bookings-note").textContent = notes.join(" ");
}

function usedText(booking) {
  if (!booking.used) return "not yet";
  const [start, end] = span(booking.used);
  if (!TERMINAL.has(booking.phase)) return `since ${new Date(start).toLocaleString()}`;
  return `${humanSpan((end - start) / 1000)} from ${new Date(start).toLocaleString()}`;
}

function renderTable(calendar) {
  const cell = (label, ...content) => h("td", { "data-label": label }, ...content);
  const rows = calendar.bookings.map((booking) =>
    h(
      "tr",
      { "data-session": booking.session },
      h(
        "th",
        { scope: "row", "data-label": "Session" },
        h("a", { href: `sessions/${booking.session}`, class: "mono" }, booking.session.slice(0, 8)),
        booking.interactive ? h("span", { class: "quiet" }, " interactive") : null,
      ),
      cell("Owner", booking.owner),
      cell("Phase", phaseBadge(booking.phase)),
      cell("Booked from", timeElement(new Date(booking.book_start))),
      cell("Booked until", timeElement(new Date(booking.book_end))),
      cell("Cores", String(booking.cores)),
      cell("Memory", `${booking.memory_gib} GiB`),
      cell("Storage", `${booking.storage_gib} GiB`),
      cell("Used", usedText(booking)),
    ),
  );
  byId("bookings").tBodies[0].replaceChildren(...rows);
  byId("bookings").hidden = rows.length === 0;
  if (!rows.length) byId("bookings-note").textContent = "No bookings in this range.";
}

function render(calendar) {
  const from = new Date(calendar.from).getTime();
  const to = new Date(calendar.to).getTime();
  const width = Math.max(byId("load").clientWidth || 600, 280);
  // A gutter on the left for the bookings' labels, the same in both charts.
  const gutter = Math.round(Math.min(170, width * 0.3));
  const x = (moment) => gutter + ((moment - from) / (to - from)) * (width - gutter - 2);
  const frame = { from, to, width, x };
  renderSummary(calendar);
  drawLoad(calendar, frame);
  drawGantt(calendar, frame);
  renderTable(calendar);
}

function calendarPath() {
  const query = new URLSearchParams();
  for (const name of ["from", "to"]) if (asked.get(name)) query.set(name, asked.get(name));
  const text = query.toString();
  return text ? `admin/calendar?${text}` : "admin/calendar";
}

whenSignedIn(async (signal) => {
  setRangeLinks();
  while (!signal.aborted) {
    if (!document.hidden) {
      try {
        const calendar = await api(calendarPath(), { signal });
        byId("calendar").hidden = false;
        render(calendar);
        showProblem(null);
        byId("updated").textContent = `Updated ${new Date().toLocaleTimeString()}`;
      } catch (failure) {
        if (signal.aborted) return;
        if (failure instanceof ApiError && failure.status === 403) {
          byId("calendar").hidden = true;
          showProblem(failure);
          return; // asking again will not make this user an administrator
        }
        showProblem(failure);
      }
    }
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    setRangeLinks();
  }
});
