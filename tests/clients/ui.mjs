// Drives the workbench (/ui) in headless Chromium for tests/api/ui.rs and
// prints what the page showed as one JSON line; screenshots go to the
// artefact folder.
//
//   node ui.mjs <server base URL> <scenario> <artefact dir> <JSON parameters>
//
// Scenarios:
//   header  pick identities from the selector, run a tool, raw SQL (refused
//           and accepted), and the recent calls
//   jwt     no token, then the token given in the parameters
//
// The browser is the distribution's Chromium (scripts/browser installs it),
// or SQLMCP_CHROMIUM.
import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";
import { join } from "node:path";

const [base, scenario, artefacts, parametersJson] = process.argv.slice(2);
const parameters = JSON.parse(parametersJson || "{}");
mkdirSync(artefacts, { recursive: true });

const browser = await chromium.launch({
  executablePath: process.env.SQLMCP_CHROMIUM || "/usr/bin/chromium",
  args: [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
  timeout: 60_000,
});
const context = await browser.newContext({ viewport: { width: 1366, height: 860 }, colorScheme: "light" });
const page = await context.newPage();
page.setDefaultTimeout(30_000);

// What the browser complained of: script errors, CSP violations, failed loads.
const problems = [];
page.on("console", (message) => {
  if (message.type() === "error") problems.push(`console: ${message.text()}`);
});
page.on("pageerror", (error) => problems.push(`page error: ${error.message}`));
const transferred = {};
page.on("response", async (response) => {
  const url = new URL(response.url());
  if (url.pathname.startsWith("/ui/") && !url.pathname.startsWith("/ui/api/")) {
    try {
      transferred[url.pathname] = (await response.body()).length;
    } catch {
      // a redirect has no body
    }
  }
});

async function shot(name) {
  await page.screenshot({ path: join(artefacts, `${name}.png`), fullPage: false });
}

/** Picks the identity `id` in header mode and waits for the tools to reload. */
async function callAs(id) {
  await page.selectOption("#identity-select", id);
  await page.waitForSelector(`body[data-identity="${id}"]`);
}

/** Runs the selected tool with `fields` filled in; what the page shows. */
async function run(tool, fields) {
  await page.click(`#tool-list .tool[data-tool="${tool}"]`);
  await page.waitForSelector("#tool-form");
  for (const [name, value] of Object.entries(fields)) {
    await page.fill(`#arg-${name}`, value);
  }
  await page.click("#run");
  await page.waitForSelector("#tool-result table.result, #tool-result .error");
  return readAnswer("#tool-result");
}

async function readAnswer(area) {
  return page.$eval(area, (holder) => {
    const error = holder.querySelector(".error");
    if (error) return { error: error.textContent };
    const table = holder.querySelector("table.result");
    const chart = holder.querySelector("svg.chart");
    const meta = holder.querySelector(".meta");
    return {
      columns: [...table.querySelectorAll("thead th")].map((th) => th.textContent),
      rightAligned: [...table.querySelectorAll("thead th")].map((th) => getComputedStyle(th).textAlign === "right"),
      rows: [...table.querySelectorAll("tbody tr")].map((tr) => [...tr.querySelectorAll("td")].map((td) => td.dataset.value)),
      shown: [...table.querySelectorAll("tbody tr")].slice(0, 1).map((tr) => [...tr.querySelectorAll("td")].map((td) => td.textContent)),
      rowCount: Number(meta.dataset.rows),
      truncated: meta.dataset.truncated === "true",
      chart: chart
        ? {
            kind: chart.dataset.kind,
            points: Number(chart.dataset.points),
            drawn: chart.querySelectorAll("circle.point, .bar rect").length,
            width: chart.getBoundingClientRect().width,
          }
        : null,
    };
  });
}

async function recentCalls() {
  await page.click("#tab-recent");
  await page.waitForSelector("#recent-table table, #recent-table p");
  return page.$eval("#panel-recent", (panel) => ({
    scope: panel.querySelector("#recent-scope").textContent,
    calls: [...panel.querySelectorAll("tbody tr")].map((tr) => ({
      tool: tr.dataset.tool,
      outcome: tr.dataset.outcome,
      caller: tr.children[2].getAttribute("title"),
    })),
  }));
}

const report = { scenario };

if (scenario === "header") {
  await page.goto(`${base}/ui/`);
  await page.waitForSelector("body[data-ready]");
  report.identities = await page.$$eval("#identity-select option", (options) => options.map((o) => ({ id: o.value, text: o.textContent })));
  report.developmentNote = await page.textContent("#identity-note");

  await callAs(parameters.seattle);
  report.tools = await page.$$eval("#tool-list .tool", (buttons) => buttons.map((b) => b.dataset.tool));
  report.seattle = await run("revenue_by_month", { start_date: "2025-01-01", end_date: "2025-12-31" });
  // the page holds the form's values when the identity changes
  await shot("revenue_by_month-seattle");
  report.formFieldTypes = await page.$$eval("#tool-form [data-arg]", (inputs) => Object.fromEntries(inputs.map((i) => [i.dataset.arg, i.type || i.tagName])));

  await callAs(parameters.redmond);
  report.afterSwitch = await page.textContent("#tool-result");
  report.redmond = await run("revenue_by_month", { start_date: "2025-01-01", end_date: "2025-12-31" });

  report.categories = await run("sales_by_category", { start_date: "2025-01-01" });
  await shot("sales_by_category-redmond");

  // top_products: the enum is a select
  await page.click('#tool-list .tool[data-tool="top_products"]');
  report.rankBy = await page.$eval("#arg-rank_by", (select) => ({ tag: select.tagName, options: [...select.options].map((o) => o.value), value: select.value }));

  // raw SQL: refused before it is sent, with the rule and where
  await page.click("#tab-sql");
  await page.fill("#sql", parameters.refusedSql);
  await page.click("#sql-run");
  await page.waitForSelector('#verdict[data-verdict="refused"]');
  await page.waitForSelector("#sql-result .error");
  report.refused = await page.evaluate(() => ({
    verdict: document.querySelector("#verdict").dataset.verdict,
    position: Number(document.querySelector("#verdict").dataset.position),
    rule: document.querySelector("#verdict .rule").textContent,
    pointer: document.querySelector("#verdict pre.pointer")?.textContent,
    result: document.querySelector("#sql-result").textContent,
    selection: [document.querySelector("#sql").selectionStart, document.querySelector("#sql").selectionEnd],
  }));
  await shot("raw-sql-refused");

  await page.fill("#sql", parameters.acceptedSql);
  await page.click("#sql-run");
  await page.waitForSelector('#verdict[data-verdict="accepted"]');
  await page.waitForSelector("#sql-result table.result, #sql-result .error");
  report.accepted = await readAnswer("#sql-result");
  await shot("raw-sql-accepted");

  report.recentAsRedmond = await recentCalls();
  await callAs(parameters.headOffice);
  report.recentAsHeadOffice = await recentCalls();
  await shot("recent-calls-head-office");

  // the picture for the README: Seattle's revenue in 2025
  await page.click("#tab-tools");
  await callAs(parameters.seattle);
  await page.setViewportSize({ width: 1280, height: 1040 });
  await run("revenue_by_month", { start_date: "2025-01-01", end_date: "2025-12-31" });
  await page.$eval("#status", (status) => (status.hidden = true));
  await page.screenshot({ path: join(artefacts, "workbench.png") });
  await page.$eval("#status", (status) => (status.hidden = false));

  // keyboard: the tabs move with the arrow keys
  await page.focus("#tab-tools");
  await page.keyboard.press("ArrowRight");
  report.keyboardTab = await page.evaluate(() => document.activeElement.id + ":" + !document.querySelector("#panel-sql").hidden);
  report.unlabelled = await page.$$eval("input, select, textarea", (fields) =>
    fields.filter((f) => !f.hidden && f.offsetParent !== null && !(f.labels && f.labels.length) && !f.getAttribute("aria-label")).map((f) => f.id || f.name),
  );
} else if (scenario === "jwt") {
  await page.goto(`${base}/ui/`);
  await page.waitForSelector("body[data-ready]");
  report.selectorShown = await page.isVisible("#identity-select");
  report.withoutToken = await page.textContent("#tool-list");
  await page.fill("#token", parameters.token);
  await page.click('#identity-jwt button[type="submit"]');
  await page.waitForSelector('body[data-identity="token"]');
  report.who = await page.textContent("#token-who");
  report.seattle = await run("revenue_by_month", { start_date: "2025-01-01", end_date: "2025-12-31" });
  report.tokenKept = await page.evaluate(() => sessionStorage.getItem("sqlmcp.token") !== null && localStorage.length === 0);
  await page.click("#tab-sql");
  await page.fill("#sql", "SELECT 1 AS one");
  await page.waitForSelector('#verdict[data-verdict="accepted"]');
  report.recent = await recentCalls();
  await shot("jwt");
} else {
  throw new Error(`no scenario ${scenario}`);
}

report.transferred = transferred;
report.problems = problems;
await browser.close();
console.log(JSON.stringify(report));
