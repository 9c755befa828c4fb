// The reviewer inbox. Plain JavaScript, no build step: it reads
// /inbox/api/pending and answers through the run API of this server.

const main = document.getElementById("main");
const who = document.getElementById("who");
const TOKEN = "hitl-inbox-token";

// ---------------------------------------------------------------- plumbing

function token() {
  return sessionStorage.getItem(TOKEN);
}

function headers(json) {
  const h = {};
  if (json) h["content-type"] = "application/json";
  const t = token();
  if (t) h.authorization = `Bearer ${t}`;
  return h;
}

class HttpError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
  }
}

async function api(path, options = {}) {
  const res = await fetch(path, {
    ...options,
    headers: headers(options.body !== undefined),
  });
  if (res.status === 401) {
    signIn();
    throw new HttpError(401, "sign in first");
  }
  const text = await res.text();
  let body = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = text;
  }
  if (!res.ok) throw new HttpError(res.status, (body && body.detail) || text || res.statusText);
  return body;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

let uid = 0;
const nextId = (prefix) => `${prefix}-${++uid}`;

function ago(ms) {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.round(s / 60)} min`;
  if (s < 86400) return `${Math.round(s / 3600)} h`;
  return `${Math.round(s / 86400)} d`;
}

function describeDecision(d) {
  if (!d) return "";
  if (d.decisions) return d.decisions.map(describeDecision).join("; ");
  if (d.edited_action) return `edit → ${d.edited_action.name}(${JSON.stringify(d.edited_action.args)})`;
  if (d.type) return d.message ? `${d.type} (“${d.message}”)` : d.type;
  return JSON.stringify(d);
}

// ---------------------------------------------------------------- sign in

function signIn(message) {
  who.textContent = "";
  main.replaceChildren(document.getElementById("signin").content.cloneNode(true));
  const form = document.getElementById("signin-form");
  if (message) document.getElementById("signin-error").textContent = message;
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    sessionStorage.setItem(TOKEN, form.token.value.trim());
    route();
  });
  document.getElementById("token").focus();
}

function showWho(reviewer) {
  const roles = reviewer.roles && reviewer.roles.length ? ` (${reviewer.roles.join(", ")})` : "";
  who.replaceChildren(
    el("span", { "data-testid": "reviewer", text: `Signed in as ${reviewer.id}${roles}` }),
    " ",
    token()
      ? el("button", {
          class: "secondary",
          type: "button",
          text: "Sign out",
          onclick: () => {
            sessionStorage.removeItem(TOKEN);
            signIn();
          },
        })
      : null,
  );
}

// ---------------------------------------------------------------- forms from schemas

// The JSON schema of one property, following a local $ref.
function resolve(schema, root) {
  let s = schema || {};
  for (let i = 0; i < 8 && s.$ref; i++) {
    const path = s.$ref.replace(/^#\//, "").split("/");
    s = path.reduce((o, k) => (o ? o[k] : undefined), root) || {};
  }
  if (Array.isArray(s.anyOf)) {
    const nonNull = s.anyOf.filter((x) => x.type !== "null");
    if (nonNull.length === 1) return { ...resolve(nonNull[0], root), nullable: true };
  }
  return s;
}

function typeOf(s) {
  const t = Array.isArray(s.type) ? s.type.find((x) => x !== "null") : s.type;
  return t || "json";
}

// Inputs for the properties of an object schema, filled with `values`. Returns the
// fieldset and a function reading the object back (throwing with a field name).
function objectForm(schema, values, idPrefix) {
  const root = schema || {};
  const props = (resolve(root, root).properties) || {};
  const required = new Set(resolve(root, root).required || []);
  const box = el("div", { class: "object-form" });
  const readers = [];
  for (const [name, raw] of Object.entries(props)) {
    const s = resolve(raw, root);
    const type = typeOf(s);
    const id = nextId(idPrefix);
    const value = values ? values[name] : undefined;
    const label = el("label", { for: id, text: s.title && s.title !== name ? `${name} (${s.title})` : name });
    const error = el("p", { class: "error", role: "alert", "data-field": name, id: `${id}-error` });
    let input;
    if (type === "boolean") {
      input = el("input", { id, name, type: "checkbox", "aria-describedby": `${id}-error` });
      input.checked = Boolean(value);
      box.append(el("div", { class: "field inline" }, input, label, error));
      readers.push(() => [name, input.checked]);
      continue;
    }
    if (type === "integer" || type === "number") {
      input = el("input", { id, name, type: "number", step: type === "integer" ? "1" : "any", required: required.has(name), "aria-describedby": `${id}-error` });
      if (value !== undefined && value !== null) input.value = String(value);
      readers.push(() => {
        if (input.value === "") {
          if (required.has(name)) throw fieldError(name, "a number is required");
          return [name, undefined];
        }
        const n = Number(input.value);
        if (!Number.isFinite(n)) throw fieldError(name, "not a number");
        if (type === "integer" && !Number.isInteger(n)) throw fieldError(name, "a whole number is required");
        return [name, n];
      });
    } else if (type === "string") {
      const long = (value && String(value).length > 60) || /body|text|message|content/i.test(name);
      input = long
        ? el("textarea", { id, name, required: required.has(name), "aria-describedby": `${id}-error` })
        : el("input", { id, name, type: "text", required: required.has(name), "aria-describedby": `${id}-error` });
      if (value !== undefined && value !== null) input.value = String(value);
      readers.push(() => [name, input.value]);
    } else {
      input = el("textarea", { id, name, "aria-describedby": `${id}-error` });
      input.value = value === undefined ? "" : JSON.stringify(value, null, 2);
      readers.push(() => {
        if (input.value.trim() === "") return [name, undefined];
        try {
          return [name, JSON.parse(input.value)];
        } catch {
          throw fieldError(name, "not valid JSON");
        }
      });
    }
    const hint = s.description ? el("small", { class: "muted", text: s.description }) : null;
    box.append(el("div", { class: "field" }, label, hint, input, error));
  }
  const read = () => {
    const out = { ...(values || {}) };
    for (const r of readers) {
      const [k, v] = r();
      if (v === undefined) delete out[k];
      else out[k] = v;
    }
    return out;
  };
  return { node: box, read };
}

function fieldError(field, message) {
  const e = new Error(message);
  e.field = field;
  return e;
}

// ---------------------------------------------------------------- one action

// The decision form of one tool call: the allowed decisions, an edit form from the
// tool's argument schema, a reason or a message. Returns the fieldset and a reader.
function actionForm(action, config, index) {
  const allowed = config.allowed_decisions || ["approve", "edit", "reject", "respond"];
  const group = nextId("decision");
  const fieldset = el("fieldset", { class: "action", "data-action": index });
  fieldset.append(el("legend", { text: action.name }));
  if (action.description) fieldset.append(el("p", { class: "description", text: action.description }));
  fieldset.append(el("pre", { "aria-label": "arguments", text: JSON.stringify(action.args, null, 2) }));
  const rules = [];
  if (config.reviewers && config.reviewers.length) rules.push(`only ${config.reviewers.join(" or ")}`);
  if (config.approvals) rules.push(`${config.approvals} approvals`);
  if (config.on_timeout) rules.push(`on timeout: ${describeDecision(config.on_timeout)}`);
  if (rules.length) fieldset.append(el("p", { class: "meta", text: rules.join(" · ") }));

  const choices = el("div", { class: "choices", role: "radiogroup", "aria-label": `Decision about ${action.name}` });
  const labels = { approve: "Approve", edit: "Edit", reject: "Reject", respond: "Respond" };
  for (const d of allowed) {
    const id = nextId("choice");
    choices.append(el("label", { for: id }, el("input", { id, type: "radio", name: group, value: d, required: true }), labels[d] || d));
  }
  fieldset.append(choices);

  const edit = objectForm(config.args_schema || {}, action.args, `edit-${index}`);
  const editBox = el("div", { class: "edit hidden" }, el("p", { class: "muted", text: "Run it with these arguments instead:" }), edit.node);
  const reasonId = nextId("reason");
  const reason = el("textarea", { id: reasonId, name: "reason" });
  const reasonBox = el("div", { class: "field reason hidden" }, el("label", { for: reasonId, text: "Reason (optional, the model reads it)" }), reason);
  const messageId = nextId("message");
  const message = el("textarea", { id: messageId, name: "message" });
  const messageBox = el("div", { class: "field respond hidden" }, el("label", { for: messageId, text: "Answer in place of the call" }), message);
  const error = el("p", { class: "error", role: "alert", "data-action-error": index });
  fieldset.append(editBox, reasonBox, messageBox, error);

  choices.addEventListener("change", () => {
    const d = fieldset.querySelector(`input[name="${group}"]:checked`)?.value;
    editBox.classList.toggle("hidden", d !== "edit");
    reasonBox.classList.toggle("hidden", d !== "reject");
    messageBox.classList.toggle("hidden", d !== "respond");
  });

  const read = () => {
    const d = fieldset.querySelector(`input[name="${group}"]:checked`)?.value;
    if (!d) throw Object.assign(new Error("choose a decision"), { action: index });
    if (d === "approve") return { type: "approve" };
    if (d === "reject") return reason.value.trim() ? { type: "reject", message: reason.value.trim() } : { type: "reject" };
    if (d === "respond") {
      if (!message.value.trim()) throw Object.assign(new Error("write the answer the model gets"), { action: index });
      return { type: "respond", message: message.value };
    }
    try {
      return { type: "edit", edited_action: { name: action.name, args: edit.read() } };
    } catch (e) {
      e.action = index;
      throw e;
    }
  };
  return { node: fieldset, read };
}

// ---------------------------------------------------------------- one card

function showError(card, err) {
  for (const p of card.querySelectorAll(".error")) p.textContent = "";
  const message = err.message || String(err);
  let target = null;
  // The server names the decision: "decision 0 (`pay`): .. at `/amount`: ..".
  const m = /decisions?(?:\[| )(\d+)/.exec(message);
  const action = err.action ?? (m ? Number(m[1]) : null);
  // Only an error about one action (a field of its edit form) goes next to a field.
  const scope = action !== null && action !== undefined ? card.querySelector(`[data-action="${action}"]`) : null;
  if (scope) {
    const field = err.field || [...scope.querySelectorAll("[data-field]")].map((p) => p.dataset.field).find((f) => new RegExp(`\\b${f}\\b`).test(message));
    if (field) target = scope.querySelector(`[data-field="${field}"]`);
    if (!target && action !== null && action !== undefined) target = scope.querySelector("[data-action-error]");
  }
  (target || card.querySelector(".card-error")).textContent = message;
}

function card(item) {
  const value = item.value || {};
  const node = el("article", { class: "card", "data-thread": item.thread_id, "data-interrupt": item.interrupt_id, "aria-labelledby": `title-${item.interrupt_id}` });
  let title;
  let actions = [];
  let build;
  if (item.type === "hitl.batched" && Array.isArray(value.action_requests)) {
    title = value.action_requests.map((a) => a.name).join(", ");
    actions = value.action_requests.map((a, i) => actionForm(a, (value.review_configs || [])[i] || {}, i));
    build = () => ({ decisions: actions.map((a) => a.read()) });
  } else if (item.type === "hitl.tool_approval") {
    title = value.name;
    actions = [actionForm(value, value, 0)];
    build = () => actions[0].read();
  } else {
    title = item.type || "Question";
    const form = objectForm(item.response_schema || {}, {}, "answer");
    actions = [{ node: el("fieldset", { "data-action": 0 }, el("legend", { text: "Your answer" }), el("pre", { "aria-label": "what is asked", text: JSON.stringify(value, null, 2) }), form.node), read: form.read }];
    build = () => form.read();
  }
  const g = item.governance || {};
  const now = Date.now();
  const facts = [el("span", { text: `waiting ${ago(now - Date.parse(item.waiting_since))}` })];
  if (g.expires_at) {
    const left = g.expires_at - now;
    facts.push(" · ", el("span", { class: left < 3600e3 ? "urgent" : "", text: left > 0 ? `expires in ${ago(left)}` : "expired" }));
    if (g.on_timeout) facts.push(` then ${describeDecision(g.on_timeout)}`);
  }
  if (g.reviewers && g.reviewers.length) facts.push(` · roles: ${g.reviewers.map((x) => x.join(" or ")).join("; ")}`);
  if (g.approvals > 1) facts.push(` · approvals: ${(item.approved_by || []).length} of ${g.approvals}${item.approved_by && item.approved_by.length ? ` (${item.approved_by.join(", ")})` : ""}`);

  const status = el("p", { class: "status", role: "status", "aria-live": "polite" });
  const events = el("ol", { class: "events", "aria-label": "what happened" });
  const submit = el("button", { type: "submit", text: "Send decision" });
  const form = el("form", { novalidate: true }, actions.map((a) => a.node), el("p", { class: "error card-error", role: "alert" }), submit, status, events);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    for (const p of node.querySelectorAll(".error")) p.textContent = "";
    let answer;
    try {
      answer = build();
    } catch (err) {
      showError(node, err);
      return;
    }
    submit.disabled = true;
    status.textContent = "Sending…";
    try {
      await answerAndFollow(item, answer, status, events);
      status.textContent = "Done.";
      status.classList.add("done");
      // The thread leaves the list once the reviewer had time to read the outcome.
      setTimeout(() => node.remove(), 4000);
    } catch (err) {
      submit.disabled = false;
      status.textContent = "";
      if (err.status === 409) {
        showError(node, new Error(`Already answered: ${err.message}. Nothing was run again; refresh to see what is pending.`));
        node.dataset.answered = "elsewhere";
      } else {
        showError(node, err);
      }
    }
  });
  node.append(
    el("header", {}, el("h2", { id: `title-${item.interrupt_id}`, text: title }), el("a", { href: `#/thread/${item.thread_id}`, text: `thread ${item.thread_id.slice(0, 8)}… (${item.graph_id})` })),
    el("p", { class: "meta" }, facts),
    form,
  );
  return node;
}

// Sends the answer and shows the run's events until it ends.
async function answerAndFollow(item, answer, status, events) {
  const res = await fetch(`/threads/${item.thread_id}/runs/stream`, {
    method: "POST",
    headers: headers(true),
    body: JSON.stringify({
      assistant_id: item.assistant_id,
      command: { resume: { [item.interrupt_id]: answer } },
      stream_mode: ["updates"],
    }),
  });
  if (!res.ok) {
    let detail = res.statusText;
    try {
      detail = (await res.json()).detail || detail;
    } catch {}
    throw new HttpError(res.status, detail);
  }
  status.textContent = "Running…";
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    // SSE lines may end in CRLF (this server's do).
    buffer += decoder.decode(value, { stream: true }).replace(/\r\n?/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const frame = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let event = "message";
      let data = "";
      for (const line of frame.split("\n")) {
        if (line.startsWith("event:")) event = line.slice(6).trim();
        else if (line.startsWith("data:")) data += line.slice(5).trim();
      }
      if (!data) continue;
      let payload;
      try {
        payload = JSON.parse(data);
      } catch {
        continue;
      }
      if (event === "error") throw new HttpError(500, payload.message || data);
      if (event === "updates" && payload && typeof payload === "object") {
        for (const [nodeName, update] of Object.entries(payload)) {
          if (nodeName === "__interrupt__") {
            events.append(el("li", { text: "waiting for another review" }));
            continue;
          }
          for (const m of (update && update.messages) || []) {
            const text = typeof m.content === "string" ? m.content : JSON.stringify(m.content);
            if (m.type === "tool") events.append(el("li", { class: "tool", text: `${m.name}: ${text}` }));
            else if (m.type === "ai" && text) events.append(el("li", { class: "ai", text: `assistant: ${text}` }));
          }
        }
      }
    }
  }
}

// ---------------------------------------------------------------- pages

async function listPage() {
  const data = await api("/inbox/api/pending");
  showWho(data.reviewer);
  const items = data.items || [];
  const list = el("section", { "aria-label": "pending reviews" }, items.map(card));
  main.replaceChildren(
    el("div", { class: "toolbar" }, el("p", { class: "muted", "data-testid": "count", text: items.length ? `${items.length} waiting` : "Nothing waits for you." }), el("button", { type: "button", class: "secondary", text: "Refresh", onclick: () => route() })),
    list,
  );
}

async function threadPage(threadId) {
  const [state, decisions, history] = await Promise.all([
    api(`/threads/${threadId}/state`),
    api(`/threads/${threadId}/decisions`),
    api(`/threads/${threadId}/history`, { method: "POST", body: JSON.stringify({ limit: 50 }) }),
  ]);
  const messages = ((state && state.values && state.values.messages) || []).map((m) => {
    const text = typeof m.content === "string" ? m.content : JSON.stringify(m.content);
    const calls = (m.tool_calls || []).map((c) => `${c.name}(${JSON.stringify(c.args)})`).join(", ");
    return el("li", {}, el("span", { class: "role", text: m.type === "tool" ? `tool ${m.name || ""}` : m.type }), ": ", text, calls ? ` → ${calls}` : "");
  });
  const chain = decisions.chain || {};
  const rows = (decisions.records || []).map((r) => {
    const rec = r.record || {};
    const by = rec.decided_by ? (rec.decided_by.type === "timeout" ? "timeout" : rec.decided_by.id) : "anonymous";
    const outcome = typeof rec.outcome === "string" ? rec.outcome : Object.keys(rec.outcome || {})[0] || "";
    return el("tr", {}, el("td", { text: r.seq }), el("td", { text: by }), el("td", { text: describeDecision(rec.answer) }), el("td", { text: outcome }), el("td", { text: rec.decided_at ? new Date(rec.decided_at).toISOString() : "" }), el("td", {}, el("code", { text: (r.hash || "").slice(0, 12) })));
  });
  const checkpoints = (history || []).map((s) => el("tr", {}, el("td", { text: s.checkpoint?.checkpoint_id || s.checkpoint_id || "" }), el("td", { text: s.metadata?.step ?? "" }), el("td", { text: s.metadata?.source || "" }), el("td", { text: s.created_at || "" })));
  main.replaceChildren(
    el("p", {}, el("a", { href: "#/", text: "← all reviews" })),
    el("h2", { text: `Thread ${threadId}` }),
    el("section", { "aria-labelledby": "conv" }, el("h3", { id: "conv", text: "Conversation" }), messages.length ? el("ol", { class: "messages" }, messages) : el("p", { class: "muted", text: "No messages." })),
    el("section", { "aria-labelledby": "dec" },
      el("h3", { id: "dec", text: "Decisions" }),
      el("p", { "data-testid": "chain", class: chain.verified ? "status done" : "error", text: chain.verified ? `Record chain verified (${chain.records} records).` : `Record chain does not verify: ${chain.error}` }),
      rows.length ? el("div", { class: "table-wrap" }, el("table", {}, el("thead", {}, el("tr", {}, ["#", "by", "decision", "outcome", "when", "hash"].map((h) => el("th", { scope: "col", text: h })))), el("tbody", {}, rows))) : el("p", { class: "muted", text: "No decisions yet." })),
    el("section", { "aria-labelledby": "cps" },
      el("h3", { id: "cps", text: "Checkpoints" }),
      el("div", { class: "table-wrap" }, el("table", {}, el("thead", {}, el("tr", {}, ["checkpoint", "step", "source", "created"].map((h) => el("th", { scope: "col", text: h })))), el("tbody", {}, checkpoints)))),
  );
}

async function route() {
  const m = /^#\/thread\/([^/?#]+)/.exec(location.hash);
  try {
    if (m) await threadPage(decodeURIComponent(m[1]));
    else await listPage();
    main.focus();
  } catch (err) {
    if (err.status === 401) return;
    if (err.status === 403) {
      signIn(err.message);
      return;
    }
    main.replaceChildren(el("p", { class: "error", role: "alert", text: `Could not load: ${err.message}` }), el("button", { type: "button", text: "Try again", onclick: () => route() }));
  }
}

window.addEventListener("hashchange", route);
route();
