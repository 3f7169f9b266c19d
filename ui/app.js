// The sqlmcp workbench: an MCP client of this server's /mcp, with the
// identity the page holds. No framework and no build step.

const PROTOCOL = "2026-07-28";
const MCP_URL = new URL("../mcp", location.href).href;
const API = new URL("api/", location.href).href;
const DECIMAL = /^-?\d+(\.\d+)?$/;
const DAY = /^\d{4}-\d{2}-\d{2}$/;
const MONTH = /^\d{4}-\d{2}$/;

const $ = (selector, root = document) => root.querySelector(selector);

/** An element: h("button", {class: "x", onclick}, "text", child, …). */
function h(tag, attributes = {}, ...children) {
  const svg = ["svg", "g", "path", "line", "rect", "text", "circle", "title", "polyline"].includes(tag);
  const node = svg ? document.createElementNS("http://www.w3.org/2000/svg", tag) : document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

const state = {
  config: null,
  tools: [],
  selected: null,
  identity: null, // header mode: the caller id
  token: sessionStorage.getItem("sqlmcp.token") || "",
};

function status(text) {
  $("#status").textContent = text;
}

// ---------------------------------------------------------------------------
// MCP over Streamable HTTP (stateless, 2026-07-28: no handshake)

class CallFailed extends Error {}

function identityHeaders() {
  if (state.config?.auth === "jwt") {
    return state.token ? { authorization: `Bearer ${state.token}` } : {};
  }
  return state.identity ? { "x-rls-user-id": state.identity } : {};
}

let nextId = 1;

async function mcp(method, params = {}) {
  const id = nextId++;
  const body = {
    jsonrpc: "2.0",
    id,
    method,
    params: {
      ...params,
      _meta: {
        "io.modelcontextprotocol/protocolVersion": PROTOCOL,
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": { name: "sqlmcp-workbench", version: state.config?.version || "0" },
      },
    },
  };
  const headers = {
    "content-type": "application/json",
    accept: "application/json, text/event-stream",
    "mcp-protocol-version": PROTOCOL,
    "mcp-method": method,
    ...identityHeaders(),
  };
  const name = params.name ?? params.uri;
  if (name !== undefined) headers["mcp-name"] = name;
  const response = await fetch(MCP_URL, {
    method: "POST",
    headers,
    body: JSON.stringify(body),
    cache: "no-store",
    credentials: "omit",
  });
  if (!response.ok && !(response.headers.get("content-type") || "").includes("json")) {
    throw new CallFailed(httpError(response.status, (await response.text()).trim()));
  }
  const message = (response.headers.get("content-type") || "").startsWith("text/event-stream")
    ? fromEventStream(await response.text(), id)
    : await response.json();
  if (message.error) throw new CallFailed(`${message.error.message} (JSON-RPC ${message.error.code})`);
  return message.result;
}

/** The answer to request `id` in a Server-Sent Events body. */
function fromEventStream(text, id) {
  for (const event of text.split(/\r?\n\r?\n/)) {
    const data = event
      .split(/\r?\n/)
      .filter((line) => line.startsWith("data:"))
      .map((line) => line.slice(5).trimStart())
      .join("\n");
    if (!data) continue;
    const message = JSON.parse(data);
    if (message.id === id) return message;
  }
  throw new CallFailed("the server's event stream ended without an answer");
}

function httpError(status, text) {
  if (status === 401) return `not authenticated (401): ${text || "the server wants a valid bearer token"}`;
  if (status === 403) return `forbidden (403): ${text}`;
  if (status === 429) return `rate limited (429): ${text}`;
  return `HTTP ${status}: ${text}`;
}

async function api(path, options = {}) {
  const response = await fetch(API + path, {
    cache: "no-store",
    credentials: "omit",
    ...options,
    headers: { ...(options.headers || {}), ...identityHeaders() },
  });
  const type = response.headers.get("content-type") || "";
  const body = type.includes("json") ? await response.json() : { error: (await response.text()).trim() };
  if (!response.ok) throw new CallFailed(httpError(response.status, body.error || ""));
  return body;
}

// ---------------------------------------------------------------------------
// Identity

function identityLabel(id) {
  const known = (state.config?.identities || []).find((i) => i.id === id);
  return known ? known.label : id;
}

function setUpIdentity() {
  if (state.config.auth === "jwt") {
    const form = $("#identity-jwt");
    form.hidden = false;
    $("#token").value = state.token;
    showTokenOwner();
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      state.token = $("#token").value.trim();
      sessionStorage.setItem("sqlmcp.token", state.token);
      showTokenOwner();
      identityChanged();
    });
    $("#token-forget").addEventListener("click", () => {
      state.token = "";
      $("#token").value = "";
      sessionStorage.removeItem("sqlmcp.token");
      showTokenOwner();
      identityChanged();
    });
    return;
  }
  $("#identity-header").hidden = false;
  const select = $("#identity-select");
  for (const identity of state.config.identities) {
    select.append(h("option", { value: identity.id }, `${identity.label} (sees ${identity.sees})`));
  }
  select.append(h("option", { value: "" }, "Another id…"));
  const other = $("#identity-other");
  const saved = sessionStorage.getItem("sqlmcp.identity");
  const known = state.config.identities.some((i) => i.id === saved);
  if (saved && !known) {
    select.value = "";
    other.hidden = false;
    other.value = saved;
  } else {
    select.value = saved || state.config.identities[0].id;
  }
  state.identity = select.value || other.value.trim();
  select.addEventListener("change", () => {
    other.hidden = select.value !== "";
    if (select.value === "") other.focus();
    state.identity = select.value || other.value.trim();
    sessionStorage.setItem("sqlmcp.identity", state.identity);
    identityChanged();
  });
  other.addEventListener("change", () => {
    state.identity = other.value.trim();
    sessionStorage.setItem("sqlmcp.identity", state.identity);
    identityChanged();
  });
}

/** What the token says of itself (not verified here: the server does that). */
function showTokenOwner() {
  const who = $("#token-who");
  if (!state.token) {
    who.textContent = "no token: every call will be refused";
    return;
  }
  try {
    const part = state.token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const claims = JSON.parse(atob(part.padEnd(Math.ceil(part.length / 4) * 4, "=")));
    const minutes = claims.exp ? Math.round((claims.exp * 1000 - Date.now()) / 60000) : null;
    who.textContent = `subject ${claims.sub ?? "?"}` + (minutes === null ? "" : minutes > 0 ? `, expires in ${minutes} min` : ", expired");
  } catch {
    who.textContent = "not a JWT";
  }
}

async function identityChanged() {
  delete document.body.dataset.identity;
  await loadTools();
  for (const area of document.querySelectorAll(".result-area")) {
    area.replaceChildren(h("p", { class: "muted" }, "The identity changed: run again to see what it may see."));
  }
  if (!$("#panel-recent").hidden) await loadRecent();
  if (!$("#panel-sql").hidden) await checkSql();
  markIdentity();
}

/** Tells a test (or an observer) which identity the page now shows. */
function markIdentity() {
  document.body.dataset.identity = state.config.auth === "jwt" ? (state.token ? "token" : "none") : state.identity || "none";
}

// ---------------------------------------------------------------------------
// Tabs

function setUpTabs() {
  const tabs = [...document.querySelectorAll('[role="tab"]')];
  const show = (tab, focus) => {
    for (const other of tabs) {
      const selected = other === tab;
      other.setAttribute("aria-selected", String(selected));
      other.tabIndex = selected ? 0 : -1;
      $(`#${other.getAttribute("aria-controls")}`).hidden = !selected;
    }
    if (focus) tab.focus();
    if (tab.id === "tab-recent") loadRecent();
    if (tab.id === "tab-sql") checkSql();
  };
  tabs.forEach((tab, index) => {
    tab.addEventListener("click", () => show(tab, false));
    tab.addEventListener("keydown", (event) => {
      const step = { ArrowRight: 1, ArrowLeft: -1 }[event.key];
      if (step) show(tabs[(index + step + tabs.length) % tabs.length], true);
      if (event.key === "Home") show(tabs[0], true);
      if (event.key === "End") show(tabs[tabs.length - 1], true);
    });
  });
}

// ---------------------------------------------------------------------------
// Tools

async function loadTools() {
  const list = $("#tool-list");
  try {
    const result = await mcp("tools/list");
    state.tools = result.tools;
  } catch (error) {
    state.tools = [];
    list.replaceChildren(h("li", { class: "error" }, String(error.message)));
    $("#tool-detail").replaceChildren(h("p", { class: "muted" }, "No tools for this identity."));
    return;
  }
  list.replaceChildren(
    ...state.tools.map((tool) =>
      h(
        "li",
        {},
        h(
          "button",
          {
            type: "button",
            class: "tool",
            dataset: { tool: tool.name },
            "aria-current": tool.name === state.selected ? "true" : false,
            onclick: () => selectTool(tool.name, true),
          },
          h("span", { class: "tool-title" }, tool.title || tool.name),
          h("code", {}, tool.name),
        ),
      ),
    ),
  );
  const wanted = new URLSearchParams(location.hash.slice(1)).get("tool") || state.selected;
  const pick = state.tools.find((t) => t.name === wanted) || state.tools.find((t) => t.name !== state.config.rawSqlTool);
  if (pick) selectTool(pick.name, false, wanted === state.selected);
}

function selectTool(name, focus, keepForm = false) {
  const tool = state.tools.find((t) => t.name === name);
  if (!tool) return;
  const previous = keepForm && state.selected === name ? formValues() : null;
  state.selected = name;
  history.replaceState(null, "", `#tool=${encodeURIComponent(name)}`);
  for (const button of document.querySelectorAll("#tool-list .tool")) {
    if (button.dataset.tool === name) button.setAttribute("aria-current", "true");
    else button.removeAttribute("aria-current");
  }
  const detail = $("#tool-detail");
  detail.replaceChildren(renderTool(tool));
  if (previous) restoreForm(previous);
  if (focus) $("h2", detail).focus();
}

function renderTool(tool) {
  const info = state.config.tools[tool.name] || {};
  const annotations = tool.annotations || {};
  const chips = [
    annotations.readOnlyHint && "read-only",
    annotations.idempotentHint && "idempotent",
    annotations.destructiveHint === false && "not destructive",
    annotations.openWorldHint === false && "closed world",
  ].filter(Boolean);
  const source = h("details", { class: "source" }, h("summary", {}, "Source ", h("code", {}, info.source || "?")));
  if (info.resource) {
    source.addEventListener("toggle", async () => {
      if (!source.open || source.dataset.loaded) return;
      source.dataset.loaded = "1";
      const pre = h("pre", { class: "code" }, "Reading ", info.resource, "…");
      source.append(pre);
      try {
        const read = await mcp("resources/read", { uri: info.resource });
        pre.textContent = read.contents[0].text;
      } catch (error) {
        pre.textContent = String(error.message);
        delete source.dataset.loaded;
      }
    });
  } else {
    source.append(h("p", { class: "muted" }, "A built-in tool, written in Rust."));
  }
  const form = renderForm(tool);
  return h(
    "article",
    { class: "card" },
    h("h2", { tabindex: "-1" }, tool.title || tool.name, " ", h("code", { class: "name" }, tool.name)),
    h("p", { class: "chips" }, chips.map((chip) => h("span", { class: "badge" }, chip))),
    h("p", { class: "description" }, tool.description),
    source,
    h("details", {}, h("summary", {}, "Input schema"), h("pre", { class: "code" }, JSON.stringify(tool.inputSchema, null, 2))),
    tool.outputSchema &&
      h("details", {}, h("summary", {}, "Output schema"), h("pre", { class: "code" }, JSON.stringify(tool.outputSchema, null, 2))),
    form,
    h("div", { id: "tool-result", class: "result-area" }),
  );
}

function typesOf(schema) {
  const types = Array.isArray(schema.type) ? schema.type : [schema.type];
  return { nullable: types.includes("null"), type: types.find((t) => t !== "null") };
}

function renderForm(tool) {
  const properties = tool.inputSchema?.properties || {};
  const required = new Set(tool.inputSchema?.required || []);
  const fields = Object.entries(properties).map(([name, schema]) => renderField(name, schema, required.has(name)));
  const form = h(
    "form",
    { id: "tool-form", class: "run-form", novalidate: true, onsubmit: (event) => (event.preventDefault(), runTool(tool)) },
    h("h3", {}, "Run"),
    fields.length ? h("div", { class: "fields" }, fields) : h("p", { class: "muted" }, "This tool takes no arguments."),
    h("div", { class: "actions" }, h("button", { type: "submit", id: "run", class: "primary" }, `Run ${tool.name}`)),
  );
  return form;
}

function renderField(name, schema, required) {
  const { type } = typesOf(schema);
  const id = `arg-${name}`;
  const hintId = `${id}-hint`;
  const bounds = [];
  const int32 = schema.minimum === -2147483648 && schema.maximum === 2147483647;
  if (!int32 && schema.minimum !== undefined && schema.maximum !== undefined) bounds.push(`${schema.minimum}–${schema.maximum}`);
  else if (!int32 && schema.minimum !== undefined) bounds.push(`at least ${schema.minimum}`);
  if (schema.default !== undefined && schema.default !== null) bounds.push(`default ${schema.default}`);
  const common = { id, name, "aria-describedby": hintId, required: required || false, dataset: { type, arg: name } };
  let input;
  if (schema.enum) {
    input = h(
      "select",
      common,
      required || schema.default !== undefined ? null : h("option", { value: "" }, "(any)"),
      schema.enum.map((value) => h("option", { value, selected: value === schema.default }, value)),
    );
  } else if (type === "integer" || type === "number") {
    input = h("input", {
      ...common,
      type: "number",
      inputmode: type === "integer" ? "numeric" : "decimal",
      step: type === "integer" ? "1" : "any",
      min: int32 ? undefined : schema.minimum,
      max: int32 ? undefined : schema.maximum,
      placeholder: schema.default ?? "",
    });
  } else if (type === "boolean") {
    input = h("input", { ...common, type: "checkbox", checked: schema.default === true });
  } else if (schema.format === "date") {
    input = h("input", { ...common, type: "date" });
  } else if (type === "array") {
    input = h("input", { ...common, type: "text", placeholder: "comma-separated, e.g. retail.orders, retail.stores" });
  } else if (name.endsWith("query")) {
    input = h("textarea", { ...common, rows: 4, spellcheck: "false" });
  } else {
    input = h("input", { ...common, type: "text", spellcheck: "false", placeholder: schema.default ?? "" });
  }
  return h(
    "div",
    { class: `field field-${type}` },
    h("label", { for: id }, name, required ? h("span", { class: "required", title: "required" }, " *") : null),
    input,
    h("small", { id: hintId, class: "hint" }, [schema.description, bounds.join(", ")].filter(Boolean).join(" · ")),
  );
}

function formValues() {
  const values = {};
  for (const input of document.querySelectorAll("#tool-form [data-arg]")) {
    values[input.dataset.arg] = input.type === "checkbox" ? input.checked : input.value;
  }
  return values;
}

function restoreForm(values) {
  for (const input of document.querySelectorAll("#tool-form [data-arg]")) {
    if (!(input.dataset.arg in values)) continue;
    if (input.type === "checkbox") input.checked = values[input.dataset.arg];
    else input.value = values[input.dataset.arg];
  }
}

/** The arguments the form holds: empty fields are left out (defaults apply). */
function argumentsOf(tool) {
  const args = {};
  const problems = [];
  for (const input of document.querySelectorAll("#tool-form [data-arg]")) {
    const name = input.dataset.arg;
    const type = input.dataset.type;
    if (type === "boolean") {
      args[name] = input.checked;
      continue;
    }
    const raw = input.value.trim();
    if (raw === "") {
      if (input.required) problems.push(`${name} is required`);
      continue;
    }
    if (type === "integer" || type === "number") {
      if (!input.checkValidity() || raw === "") {
        problems.push(`${name}: ${input.validationMessage || "not a number"}`);
        continue;
      }
      args[name] = Number(raw);
    } else if (type === "array") {
      args[name] = raw.split(",").map((s) => s.trim()).filter(Boolean);
    } else {
      args[name] = raw;
    }
  }
  return { args, problems, tool };
}

async function runTool(tool) {
  const { args, problems } = argumentsOf(tool);
  const area = $("#tool-result");
  if (problems.length) {
    area.replaceChildren(h("div", { class: "error", role: "alert" }, problems.join("; ")));
    return;
  }
  await runAndShow(tool.name, args, area, $("#run"));
}

async function runAndShow(name, args, area, button) {
  button.disabled = true;
  area.setAttribute("aria-busy", "true");
  area.replaceChildren(h("p", { class: "muted" }, `Running ${name}…`));
  status(`Running ${name}…`);
  const started = performance.now();
  try {
    const result = await mcp("tools/call", { name, arguments: args });
    const elapsed = Math.round(performance.now() - started);
    if (result.isError) {
      const text = (result.content || []).map((c) => c.text).join("\n");
      area.replaceChildren(h("div", { class: "error", role: "alert", dataset: { outcome: "error" } }, text));
      status(`${name} answered with an error`);
    } else {
      area.replaceChildren(...renderAnswer(name, result, elapsed));
      status(`${name} answered in ${elapsed} ms`);
    }
  } catch (error) {
    area.replaceChildren(h("div", { class: "error", role: "alert", dataset: { outcome: "failed" } }, String(error.message)));
    status(`${name} failed`);
  } finally {
    button.disabled = false;
    area.removeAttribute("aria-busy");
  }
}

// ---------------------------------------------------------------------------
// Answers: a table, a chart where the shape fits, copies as JSON and CSV

/** {columns: [{name, kind}], rows: [[…]], truncated, count} or null. */
function tabular(name, structured) {
  if (!structured || typeof structured !== "object") return null;
  const tool = state.tools.find((t) => t.name === name);
  if (Array.isArray(structured.c) && Array.isArray(structured.r)) {
    const columns = structured.c.map((column, i) => ({ name: column, kind: inferKind(structured.r.map((row) => row[i])) }));
    return { columns, rows: structured.r, truncated: structured.truncated, count: structured.n };
  }
  if (!Array.isArray(structured.rows)) return null;
  const schema = tool?.outputSchema?.properties?.rows?.items?.properties;
  const names = schema ? Object.keys(schema) : Object.keys(structured.rows[0] || {});
  const columns = names.map((column) => ({
    name: column,
    kind: schema ? kindOf(schema[column]) : inferKind(structured.rows.map((row) => row[column])),
  }));
  const rows = structured.rows.map((row) => names.map((column) => row[column]));
  return { columns, rows, truncated: structured.truncated, count: structured.row_count ?? rows.length };
}

function kindOf(schema) {
  const branch = schema?.anyOf?.find((s) => s.type !== "null");
  if (branch) return kindOf(branch);
  const { type } = typesOf(schema || {});
  if (type === "integer" || type === "number") return "number";
  if (type === "string" && schema.pattern && schema.pattern.includes("[0-9]")) return "number";
  if (schema?.format === "date" || schema?.format === "date-time") return "date";
  if (type === "boolean") return "boolean";
  return "text";
}

function inferKind(values) {
  const present = values.filter((v) => v !== null && v !== undefined);
  if (!present.length) return "text";
  if (present.every((v) => typeof v === "number" || (typeof v === "string" && DECIMAL.test(v)))) return "number";
  if (present.every((v) => typeof v === "string" && (DAY.test(v) || MONTH.test(v)))) return "date";
  if (present.every((v) => typeof v === "boolean")) return "boolean";
  return "text";
}

/** An exact number with thousands separators, digits untouched. */
function groupDigits(value) {
  const text = String(value);
  const match = /^(-?)(\d+)(\.\d+)?$/.exec(text);
  if (!match) return text;
  return match[1] + match[2].replace(/\B(?=(\d{3})+(?!\d))/g, "\u202f") + (match[3] || "");
}

function renderAnswer(name, result, elapsed) {
  const structured = result.structuredContent;
  const table = tabular(name, structured);
  if (!table) {
    const text = structured ? JSON.stringify(structured, null, 2) : (result.content || []).map((c) => c.text).join("\n");
    return [
      h("p", { class: "meta" }, `${elapsed} ms`),
      h("pre", { class: "code answer" }, text),
      copyButtons(() => JSON.stringify(structured ?? result, null, 2), null),
    ];
  }
  const summary = h(
    "p",
    { class: "meta", dataset: { rows: table.count, truncated: table.truncated ? "true" : "false" } },
    h("strong", {}, `${table.count} row${table.count === 1 ? "" : "s"}`),
    ` · ${elapsed} ms · `,
    table.truncated
      ? h("span", { class: "badge warn", id: "truncated" }, "truncated: more rows matched than were returned")
      : h("span", { class: "badge" }, "complete"),
  );
  const chart = renderChart(table);
  return [
    h("div", { class: "answer-bar" }, summary, copyButtons(() => JSON.stringify(structured, null, 2), () => toCsv(table))),
    chart,
    renderTable(table, name),
  ].filter(Boolean);
}

function renderTable(table, name) {
  const numeric = table.columns.map((c) => c.kind === "number");
  return h(
    "div",
    { class: "table-wrap", tabindex: "0", role: "region", "aria-label": `${name} rows` },
    h(
      "table",
      { class: "result" },
      h("caption", { class: "visually-hidden" }, `Rows of ${name}`),
      h("thead", {}, h("tr", {}, table.columns.map((c, i) => h("th", { scope: "col", class: numeric[i] ? "num" : null }, c.name)))),
      h(
        "tbody",
        {},
        table.rows.map((row) =>
          h(
            "tr",
            {},
            row.map((value, i) => {
              const shown = value === null || value === undefined ? "null" : typeof value === "object" ? JSON.stringify(value) : String(value);
              return h(
                "td",
                { class: [numeric[i] ? "num" : null, value === null ? "null" : null].filter(Boolean).join(" ") || null, dataset: { value: shown } },
                numeric[i] && value !== null ? groupDigits(value) : shown,
              );
            }),
          ),
        ),
      ),
    ),
  );
}

function csvField(value) {
  if (value === null || value === undefined) return "";
  const text = typeof value === "object" ? JSON.stringify(value) : String(value);
  return /[",\n\r]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

function toCsv(table) {
  const lines = [table.columns.map((c) => csvField(c.name)).join(",")];
  for (const row of table.rows) lines.push(row.map(csvField).join(","));
  return lines.join("\r\n") + "\r\n";
}

function copyButtons(json, csv) {
  const note = h("span", { class: "muted", role: "status" });
  const copy = (label, make) =>
    h(
      "button",
      {
        type: "button",
        class: "quiet",
        onclick: async () => {
          const text = make();
          try {
            await navigator.clipboard.writeText(text);
          } catch {
            // not a secure context: select the text for a manual copy
            const area = h("textarea", { class: "copy-fallback", readonly: true, "aria-label": `${label} to copy` });
            area.value = text;
            note.replaceChildren(area);
            area.select();
            return;
          }
          note.textContent = `${label} copied`;
        },
      },
      `Copy ${label}`,
    );
  return h("div", { class: "actions copy" }, copy("JSON", json), csv && copy("CSV", csv), note);
}

// Charts: hand-drawn SVG.

function renderChart(table) {
  if (table.rows.length < 2) return null;
  const numeric = table.columns.map((c, i) => (c.kind === "number" && !/(^|_)id$/.test(c.name) ? i : -1)).filter((i) => i >= 0);
  if (!numeric.length) return null;
  const dateColumn = table.columns.findIndex((c) => c.kind === "date");
  const categoryColumn = table.columns.findIndex((c) => c.kind === "text");
  let kind;
  let x;
  if (dateColumn >= 0) {
    kind = "line";
    x = dateColumn;
  } else if (categoryColumn >= 0 && table.rows.length <= 40) {
    kind = "bar";
    x = categoryColumn;
  } else {
    return null;
  }
  const holder = h("figure", { class: "chart-holder" });
  const picker = h("select", { id: `chart-measure-${kind}`, "aria-label": "Measure to chart" }, numeric.map((i) => h("option", { value: i }, table.columns[i].name)));
  const draw = () => {
    const y = Number(picker.value);
    const svg = kind === "line" ? lineChart(table, x, y) : barChart(table, x, y);
    holder.replaceChildren(
      h("figcaption", {}, `${table.columns[y].name} by ${table.columns[x].name} `, numeric.length > 1 ? h("label", {}, "Measure ", picker) : null),
      svg,
    );
  };
  picker.addEventListener("change", draw);
  draw();
  return holder;
}

function niceTicks(max, count = 5) {
  if (max <= 0) return [0, 1];
  const raw = max / count;
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * magnitude).find((s) => s >= raw);
  const ticks = [];
  for (let v = 0; v <= max + step * 0.999; v += step) ticks.push(Number(v.toPrecision(12)));
  return ticks;
}

function shortNumber(value) {
  const abs = Math.abs(value);
  if (abs >= 1e9) return `${+(value / 1e9).toFixed(1)}B`;
  if (abs >= 1e6) return `${+(value / 1e6).toFixed(1)}M`;
  if (abs >= 1e3) return `${+(value / 1e3).toFixed(1)}k`;
  return String(+value.toFixed(2));
}

function lineChart(table, x, y) {
  const points = table.rows
    .map((row) => ({ label: String(row[x]).slice(0, 10), value: Number(row[y]), exact: row[y] }))
    .filter((p) => Number.isFinite(p.value))
    .sort((a, b) => (a.label < b.label ? -1 : a.label > b.label ? 1 : 0));
  const width = 900;
  const height = 230;
  const pad = { left: 64, right: 40, top: 12, bottom: 34 };
  const max = Math.max(...points.map((p) => p.value), 0);
  const ticks = niceTicks(max);
  const top = ticks[ticks.length - 1] || 1;
  const px = (i) => pad.left + (points.length === 1 ? 0 : (i * (width - pad.left - pad.right)) / (points.length - 1));
  const py = (v) => pad.top + (height - pad.top - pad.bottom) * (1 - v / top);
  const every = Math.max(1, Math.ceil(points.length / 12));
  const svg = h(
    "svg",
    {
      class: "chart",
      viewBox: `0 0 ${width} ${height}`,
      role: "img",
      "aria-label": `Line chart of ${table.columns[y].name} by ${table.columns[x].name}, ${points.length} points`,
      dataset: { kind: "line", points: points.length },
    },
    ticks.map((t) =>
      h("g", { class: "tick" }, h("line", { x1: pad.left, x2: width - pad.right, y1: py(t), y2: py(t) }), h("text", { x: pad.left - 6, y: py(t) + 4, "text-anchor": "end" }, shortNumber(t))),
    ),
    points.map((p, i) => (i % every === 0 ? h("text", { class: "x-label", x: px(i), y: height - pad.bottom + 18, "text-anchor": "middle" }, p.label.slice(0, 7)) : null)),
    h("polyline", { class: "series", points: points.map((p, i) => `${px(i).toFixed(1)},${py(p.value).toFixed(1)}`).join(" ") }),
    points.map((p, i) => h("circle", { class: "point", cx: px(i), cy: py(p.value), r: 3 }, h("title", {}, `${p.label}: ${groupDigits(p.exact)}`))),
  );
  return svg;
}

function barChart(table, x, y) {
  const bars = table.rows.map((row) => ({ label: String(row[x] ?? "null"), value: Number(row[y]), exact: row[y] })).filter((b) => Number.isFinite(b.value));
  const row = 22;
  const width = 900;
  const pad = { left: 230, right: 70, top: 8, bottom: 24 };
  const height = pad.top + pad.bottom + bars.length * row;
  const max = Math.max(...bars.map((b) => b.value), 0);
  const ticks = niceTicks(max, 4);
  const top = ticks[ticks.length - 1] || 1;
  const bx = (v) => pad.left + ((width - pad.left - pad.right) * Math.max(v, 0)) / top;
  return h(
    "svg",
    {
      class: "chart",
      viewBox: `0 0 ${width} ${height}`,
      role: "img",
      "aria-label": `Bar chart of ${table.columns[y].name} by ${table.columns[x].name}, ${bars.length} bars`,
      dataset: { kind: "bar", points: bars.length },
    },
    ticks.map((t) =>
      h("g", { class: "tick" }, h("line", { x1: bx(t), x2: bx(t), y1: pad.top, y2: height - pad.bottom }), h("text", { x: bx(t), y: height - 6, "text-anchor": "middle" }, shortNumber(t))),
    ),
    bars.map((b, i) =>
      h(
        "g",
        { class: "bar" },
        h("text", { class: "y-label", x: pad.left - 8, y: pad.top + i * row + row / 2 + 4, "text-anchor": "end" }, b.label.length > 32 ? `${b.label.slice(0, 31)}…` : b.label),
        h("rect", { x: pad.left, y: pad.top + i * row + 4, width: Math.max(bx(b.value) - pad.left, 1), height: row - 8, rx: 2 }, h("title", {}, `${b.label}: ${groupDigits(b.exact)}`)),
        h("text", { class: "value", x: bx(b.value) + 6, y: pad.top + i * row + row / 2 + 4 }, shortNumber(b.value)),
      ),
    ),
  );
}

// ---------------------------------------------------------------------------
// Raw SQL: the policy's verdict before anything runs

let checkTimer = null;
let checkSeq = 0;

async function checkSql() {
  const text = $("#sql").value;
  const box = $("#verdict");
  const seq = ++checkSeq;
  if (!text.trim()) {
    box.replaceChildren();
    delete box.dataset.verdict;
    return null;
  }
  let verdict;
  try {
    verdict = await api("check", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ query: text }),
    });
  } catch (error) {
    if (seq === checkSeq) {
      box.dataset.verdict = "unknown";
      box.replaceChildren(h("span", { class: "error" }, String(error.message)));
    }
    return null;
  }
  if (seq !== checkSeq) return verdict;
  box.dataset.verdict = verdict.verdict;
  if (verdict.verdict === "accepted") {
    delete box.dataset.position;
    box.replaceChildren(h("span", { class: "ok" }, "✓ The policy accepts this query."));
  } else {
    box.dataset.position = verdict.position ?? "";
    box.replaceChildren(
      h("p", { class: "refused" }, "✗ Refused: ", h("span", { class: "rule" }, verdict.rule), verdict.position ? ` (at character ${verdict.position})` : ""),
      verdict.position ? pointAt(text, verdict.position) : null,
    );
  }
  return verdict;
}

/** The line of `text` holding the 1-based character `position`, with a caret under it. */
function pointAt(text, position) {
  const chars = [...text];
  const index = Math.min(position - 1, chars.length);
  const before = chars.slice(0, index).join("");
  const lineStart = before.lastIndexOf("\n") + 1;
  const lineNumber = before.split("\n").length;
  const rest = text.slice(lineStart);
  const line = rest.split("\n")[0];
  const column = [...before.slice(lineStart)].length;
  return h("pre", { class: "code pointer", "aria-label": `line ${lineNumber}, column ${column + 1}` }, `${line}\n${" ".repeat(column)}^ line ${lineNumber}, column ${column + 1}`);
}

function setUpSql() {
  const sql = $("#sql");
  sql.value =
    "SELECT s.store_name, count(*) AS orders, sum(oi.total_amount) AS revenue\n" +
    "FROM retail.orders o\n" +
    "JOIN retail.stores s ON s.store_id = o.store_id\n" +
    "JOIN retail.order_items oi ON oi.order_id = o.order_id\n" +
    "GROUP BY s.store_name\nORDER BY revenue DESC";
  $("#sql-tool").textContent = state.config.rawSqlTool;
  sql.addEventListener("input", () => {
    clearTimeout(checkTimer);
    checkTimer = setTimeout(checkSql, 300);
  });
  $("#sql-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    clearTimeout(checkTimer);
    const area = $("#sql-result");
    const verdict = await checkSql();
    if (!verdict) {
      area.replaceChildren(h("div", { class: "error", role: "alert" }, "The policy's verdict is unknown, so the query was not sent."));
      return;
    }
    if (verdict.verdict !== "accepted") {
      area.replaceChildren(h("div", { class: "error", role: "alert", dataset: { outcome: "refused" } }, "Not sent: the policy refuses this query (see above)."));
      if (verdict.position) {
        const index = [...sql.value].slice(0, verdict.position - 1).join("").length;
        sql.focus();
        sql.setSelectionRange(index, index + 1);
      }
      return;
    }
    await runAndShow(state.config.rawSqlTool, { postgresql_query: sql.value }, area, $("#sql-run"));
  });
}

// ---------------------------------------------------------------------------
// Recent calls

async function loadRecent() {
  const holder = $("#recent-table");
  let answer;
  try {
    answer = await api("recent");
  } catch (error) {
    holder.replaceChildren(h("p", { class: "error" }, String(error.message)));
    $("#recent-scope").textContent = "";
    return;
  }
  $("#recent-scope").textContent = answer.everyone
    ? `Every caller's calls, newest first (this identity may see every store). The last ${state.config.recentCapacity} calls of this server process; never their results.`
    : `Only this identity's own calls, newest first: the last calls of this server process, never their results. Head office sees everyone's.`;
  if (!answer.calls.length) {
    holder.replaceChildren(h("p", { class: "muted" }, "No calls yet."));
    return;
  }
  holder.replaceChildren(
    h(
      "div",
      { class: "table-wrap", tabindex: "0", role: "region", "aria-label": "Recent calls" },
      h(
        "table",
        { class: "result recent" },
        h("caption", { class: "visually-hidden" }, "Recent calls"),
        h("thead", {}, h("tr", {}, ["time", "tool", "caller", "duration", "rows", "outcome"].map((c, i) => h("th", { scope: "col", class: i === 3 || i === 4 ? "num" : null }, c)))),
        h(
          "tbody",
          {},
          answer.calls.map((call) =>
            h(
              "tr",
              { dataset: { tool: call.tool, outcome: call.outcome } },
              h("td", {}, h("time", { datetime: call.at }, new Date(call.at).toLocaleTimeString())),
              h("td", {}, h("code", {}, call.tool)),
              h("td", { title: call.caller || "" }, call.caller ? identityLabel(call.caller) : h("span", { class: "muted" }, "none"), call.auth_method ? h("span", { class: "muted" }, ` · ${call.auth_method}`) : null),
              h("td", { class: "num" }, `${call.duration_ms.toFixed(1)} ms`),
              h("td", { class: "num" }, call.row_count ?? "–"),
              h("td", {}, h("span", { class: `badge outcome-${call.outcome}` }, call.outcome), call.error_class ? ` ${call.error_class}` : "", call.cached ? " (cached)" : ""),
            ),
          ),
        ),
      ),
    ),
  );
}

// ---------------------------------------------------------------------------

async function start() {
  try {
    state.config = await (await fetch(API + "config", { cache: "no-store" })).json();
  } catch (error) {
    $("#tool-detail").replaceChildren(h("p", { class: "error" }, `The workbench's configuration could not be read: ${error.message}`));
    return;
  }
  setUpIdentity();
  setUpTabs();
  setUpSql();
  $("#recent-refresh").addEventListener("click", loadRecent);
  await loadTools();
  markIdentity();
  document.body.dataset.ready = "true";
}

start();
