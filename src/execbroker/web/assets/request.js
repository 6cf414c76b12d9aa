// The request page: write, load or build an execution request, see the offers side by
// side, accept one (which takes you to its session).

import {
  api,
  byId,
  durationSeconds,
  h,
  humanSpan,
  instant,
  phaseUpdate,
  relative,
  showProblem,
  timeElement,
  updateSession,
  whenSignedIn,
} from "./common.js";

const KINDS = "https://www.purl.org/ivoa.net/Calycopis-openapi/schema/v1.0/kinds";
const MAX_BYTES = 1024 * 1024;

const EXAMPLES = {
  notebook: `# A Jupyter notebook with 2-4 cores and 4-8 GiB, for 2 hours, as soon as possible.
executable:
  kind: ${KINDS}/executable/jupyter-notebook.yaml
  meta:
    name: photometry-notebook
  location: https://example.org/notebooks/photometry.ipynb
compute:
  kind: ${KINDS}/compute/simple-compute-resource.yaml
  meta:
    name: notebook-compute
  cores:
    min: 2
    max: 4
  memory:
    min: 4
    max: 8
schedule:
  requested:
    duration: PT2H
`,
  container: `# A container that runs for a minute on one core.
executable:
  kind: ${KINDS}/executable/docker-container.yaml
  meta:
    name: hello
  image:
    locations:
      - images.canfar.net/example/hello:1.0
    digest: sha256:${"1".repeat(64)}
  command: ["60", "0"]
compute:
  kind: ${KINDS}/compute/simple-compute-resource.yaml
  meta:
    name: hello-compute
  cores:
    min: 1
    max: 1
  memory:
    min: 1
    max: 2
schedule:
  requested:
    duration: PT30M
`,
};

function quickRequest() {
  const notebook = byId("quick-kind").value === "notebook";
  const where = byId("quick-location").value.trim();
  const cores = Number(byId("quick-cores").value) || 1;
  const memory = Number(byId("quick-memory").value) || 1;
  const minutes = Number(byId("quick-minutes").value) || 60;
  const executable = notebook
    ? { kind: `${KINDS}/executable/jupyter-notebook.yaml`, meta: { name: "notebook" }, location: where }
    : { kind: `${KINDS}/executable/docker-container.yaml`, meta: { name: "container" }, image: { locations: [where] } };
  return {
    executable,
    compute: {
      kind: `${KINDS}/compute/simple-compute-resource.yaml`,
      meta: { name: "compute" },
      cores: { min: cores, max: cores },
      memory: { min: memory, max: memory },
    },
    schedule: { requested: { duration: `PT${minutes}M` } },
  };
}

function mediaType(text) {
  return /^\s*[{[]/.test(text) ? "application/json" : "application/yaml";
}

function costText(offer) {
  const money = (offer.costs || []).find((c) => (c.type || "").endsWith(":monetary"));
  if (!money) return null;
  const unit = (money.description || "").split(" in ").pop();
  const amount = money.min === money.max ? `${money.min}` : `${money.min}–${money.max}`;
  return `${amount} ${unit}`.trim();
}

function amount(range, unit) {
  if (!range) return "—";
  const value = range.min === range.max || range.max === undefined ? range.min : `${range.min}–${range.max}`;
  return `${value}${unit}`;
}

function fact(term, ...definition) {
  return [h("dt", {}, term), h("dd", {}, ...definition)];
}

// "fits with 4 cores instead of 8", without the request path it starts with.
function fitText(message) {
  const text = message.message || message.template || "";
  const path = message.values?.path;
  return path && text.startsWith(`${path}: `) ? text.slice(path.length + 2) : text;
}

// Why an offer starts later than the request allowed, as the broker worked it out.
function waitReason(offer) {
  const why = (offer.meta?.messages || []).find((m) => m.values && "binding" in m.values);
  if (!why?.message) return null;
  const cut = why.message.indexOf(": ");
  return cut < 0 ? why.message : why.message.slice(cut + 2);
}

function offerCard(offer, index, all) {
  const number = index + 1;
  const start = instant(offer.schedule?.available?.start);
  const expires = instant(offer.expires);
  const storage = (offer.storage || []).reduce((sum, s) => sum + (s.size?.min || 0), 0);
  const cost = costText(offer);
  const button = h(
    "button",
    {
      type: "button",
      class: "primary",
      "aria-label": `Accept offer ${number}`,
      onclick: async () => {
        for (const other of document.querySelectorAll(".offer button")) other.disabled = true;
        button.textContent = "Accepting…";
        try {
          await updateSession(offer.meta.uuid, phaseUpdate("ACCEPTED"));
          window.location.assign(`sessions/${offer.meta.uuid}`);
        } catch (failure) {
          showProblem(failure);
          button.textContent = "Accept";
          for (const other of document.querySelectorAll(".offer button")) other.disabled = false;
        }
      },
    },
    "Accept",
  );
  return h(
    "article",
    { class: "offer", "aria-labelledby": `offer-${number}` },
    h("h3", { id: `offer-${number}` }, `Offer ${number} of ${all.length}`),
    h(
      "dl",
      { class: "facts" },
      fact("Starts", timeElement(start), start ? h("span", { class: "quiet" }, ` (${relative(start)})`) : null),
      waitReason(offer) ? fact("Not earlier because", waitReason(offer)) : [],
      fact("Runs for", humanSpan(durationSeconds(offer.schedule?.available?.duration))),
      fact("Cores", amount(offer.compute?.cores, "")),
      fact("Memory", amount(offer.compute?.memory, " GiB")),
      storage ? fact("Storage", `${storage} GiB`) : [],
      cost ? fact("Cost", cost) : [],
      fact("Offer expires", timeElement(expires), expires ? h("span", { class: "quiet" }, ` (${relative(expires)})`) : null),
    ),
    button,
  );
}

function renderOffers(offerSet) {
  const section = byId("offers-section");
  const messages = byId("offer-messages");
  const offers = byId("offers");
  section.hidden = false;
  messages.replaceChildren();
  offers.replaceChildren();
  const all = offerSet.meta?.messages || [];
  // The broker's advice on a NO: one change each that would fit (values.change names it).
  const advice = all.filter((m) => m.values && "change" in m.values);
  const notes = all.filter((m) => !advice.includes(m)).map((m) => m.message).filter(Boolean);
  if (offerSet.result !== "YES" || !offerSet.offers?.length) {
    notes.unshift("The broker cannot run this request:");
    messages.append(
      h("div", { class: "notice error" }, h("ul", {}, notes.map((note) => h("li", {}, note)))),
    );
    if (advice.length) {
      messages.append(
        h(
          "div",
          { class: "notice fits", id: "would-fit" },
          h("p", {}, h("strong", {}, "Would fit"), " (each change on its own):"),
          h("ul", {}, advice.map((m) => h("li", {}, fitText(m)))),
        ),
      );
    }
  } else {
    if (notes.length) messages.append(h("ul", { class: "quiet" }, notes.map((note) => h("li", {}, note))));
    offers.append(...offerSet.offers.map(offerCard));
  }
  byId("offers-heading").focus();
}

whenSignedIn((signal) => {
  const text = byId("request-text");
  const form = byId("request-form");
  const picker = byId("request-file");
  const load = async (file) => {
    if (file.size > MAX_BYTES) {
      showProblem(`${file.name} is larger than 1 MiB.`);
      return;
    }
    text.value = await file.text();
    showProblem(null);
  };
  picker.addEventListener(
    "change",
    () => {
      if (picker.files?.[0]) load(picker.files[0]);
    },
    { signal },
  );
  // A file chosen before this script ran (a slow page load, or the browser restoring the
  // form on "back") fired its change event to nobody: load it now rather than lose it
  // under the example.
  if (picker.files?.[0]) load(picker.files[0]);
  else if (!text.value) text.value = EXAMPLES.notebook;
  for (const button of document.querySelectorAll("[data-example]")) {
    button.addEventListener(
      "click",
      () => {
        text.value = EXAMPLES[button.dataset.example];
        text.focus();
      },
      { signal },
    );
  }
  byId("quick-write").addEventListener(
    "click",
    () => {
      text.value = JSON.stringify(quickRequest(), null, 2);
      text.focus();
    },
    { signal },
  );
  form.addEventListener(
    "submit",
    async (event) => {
      event.preventDefault();
      const body = text.value;
      if (!body.trim()) {
        showProblem("Write, load or pick a request first.");
        text.focus();
        return;
      }
      const ask = byId("ask");
      ask.disabled = true;
      ask.textContent = "Asking…";
      showProblem(null);
      try {
        renderOffers(await api("requests", { method: "POST", body, contentType: mediaType(body) }));
      } catch (failure) {
        showProblem(failure);
      } finally {
        ask.disabled = false;
        ask.textContent = "Ask for offers";
      }
    },
    { signal },
  );
});
