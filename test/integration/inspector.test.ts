/**
 * The live inspector in a real browser: Debian's chromium, driven headless by
 * playwright-core, against a coordinator started through the CLI with `--inspect` on a real
 * nats-server, with two clients written on the plain NATS client. Saves a screenshot under
 * .test-artifacts/.
 */
import { existsSync, mkdirSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { connect, type NatsConnection, type Subscription } from "@nats-io/transport-node";
import { chromium, type Browser, type Page } from "playwright-core";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { NatsServer } from "../../src/nats/server.js";
import { spawnCoordinator, waitFor, type CoordinatorProcess } from "../../harness/coordinators.js";

const CHROMIUM = process.env.CHROMIUM_BIN ?? "/usr/bin/chromium";
const ARTIFACTS = fileURLToPath(new URL("../../.test-artifacts/", import.meta.url));

function launchBrowser(): Promise<Browser> {
  if (!existsSync(CHROMIUM)) {
    throw new Error(
      `${CHROMIUM} is missing: install Debian's chromium (bash scripts/setup.sh does it as root: apt-get install -y chromium)`,
    );
  }
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--no-first-run"],
  });
}

/** The URL the coordinator printed for its inspector page. */
function inspectorUrl(c: CoordinatorProcess): string | undefined {
  for (const record of c.logs()) {
    if (record.message === "inspector page listening" && typeof record.url === "string") return record.url;
  }
  return undefined;
}

/** Polls an async check (a look at the page) until it gives a value, or fails after `timeoutMs`. */
async function pollFor<T>(what: string, check: () => Promise<T | undefined>, timeoutMs: number): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (performance.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The row's last-seen time (the cell's title, ISO) and round trip, as the page shows them. */
async function livenessOf(page: Page, subject: string): Promise<{ lastSeen: string; rtt: string }> {
  const row = page.locator(`#clients tbody tr[data-subject="${subject}"]`);
  // biome-ignore lint/performance/useDomNodeTextContent: a Playwright locator, not a DOM node; the rendered text is what the test reads
  return { lastSeen: (await row.locator("td").nth(3).getAttribute("title")) ?? "", rtt: await row.locator("td").nth(4).innerText() };
}

/** The selected actor's context as the page lists it: dt → dd. */
async function contextOf(page: Page): Promise<Record<string, string>> {
  const terms = await page.locator("#context dt").allInnerTexts();
  const values = await page.locator("#context dd").allInnerTexts();
  return Object.fromEntries(terms.map((t, i) => [t, values[i] ?? ""]));
}

const stateOf = (page: Page, subject: string) =>
  page
    .locator(`#clients tbody tr[data-subject="${subject}"]`)
    .getAttribute("data-state", { timeout: 1000 })
    .catch(() => null);

test("inspector - the page shows the leader's chart, its clients, and a client that stops answering turn suspect then dead", async () => {
  const server = await NatsServer.start();
  let coordinator: CoordinatorProcess | undefined;
  let nc: NatsConnection | undefined;
  let browser: Browser | undefined;
  try {
    coordinator = spawnCoordinator({ urls: [server.url], clusterId: "insp", id: "insp-a", args: ["--inspect=0"] });
    const url = await waitFor("the inspector URL in the log", () => inspectorUrl(coordinator!), 10_000);
    assert.match(url, /^http:\/\/127\.0\.0\.1:\d+\/$/);

    nc = await connect({ servers: server.url });
    const subs = new Map<string, Subscription>();
    for (const subject of ["app.inspected-1", "app.inspected-2"]) {
      subs.set(subject, nc.subscribe(subject, { callback: (_e, m) => void m.respond("pong") }));
    }
    await nc.flush();

    browser = await launchBrowser();
    const page = await browser.newPage({ viewport: { width: 1600, height: 1000 } });
    const pageErrors: string[] = [];
    page.on("pageerror", (e) => pageErrors.push(e.message));
    await page.goto(url);

    // The coordinator becomes leader; the page says so and highlights `leader` in the election chart.
    await page.locator('[data-testid="role"]', { hasText: "leader" }).waitFor({ timeout: 15_000 });
    await page.locator('#chart svg [id="state:election.leader"].active').waitFor({ timeout: 5000 });
    assert.is(
      await page.locator('#chart svg [id="state:election.follower"].active').count(),
      0,
      "follower is not highlighted while leading",
    );

    // Registration needs the stream, which the coordinator creates at startup.
    await waitFor(
      "the coordinator to be ready for registrations",
      () => coordinator!.logs().some((r) => r.message === "became leader"),
      10_000,
    );
    for (const subject of subs.keys()) nc.publish("presence.register.insp", JSON.stringify({ myPresenceSubject: subject }));
    await page.locator('#clients tbody tr[data-subject="app.inspected-1"][data-state="alive"]').waitFor({ timeout: 10_000 });
    await page.locator('#clients tbody tr[data-subject="app.inspected-2"][data-state="alive"]').waitFor({ timeout: 10_000 });

    // While a client answers, its actor hears nothing; its row still shows each new reply (from its shard's table).
    const first = await livenessOf(page, "app.inspected-1");
    await pollFor(
      "app.inspected-1's last-seen time to move on with its replies",
      async () => {
        const now = await livenessOf(page, "app.inspected-1");
        return now.lastSeen > first.lastSeen && /^\d+\.\d ms$/.test(now.rtt) ? now : undefined;
      },
      5000,
    );

    // Select the second client: its chart replaces the election chart, in `alive`, and its
    // context shows the same fresh last reply as its row.
    await page.locator('#clients tbody tr[data-subject="app.inspected-2"]').click();
    await page.locator('#chart svg [id="state:client.alive"].active').waitFor({ timeout: 5000 });
    await pollFor(
      "the selected client's context to show the row's last reply",
      async () => {
        const row = await livenessOf(page, "app.inspected-2");
        const context = await contextOf(page);
        return context.subject === "app.inspected-2" && context.lastSeen === row.lastSeen && context.lastSeen > first.lastSeen
          ? context
          : undefined;
      },
      5000,
    );
    mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: `${ARTIFACTS}inspector-alive.png`, fullPage: true });

    // It stops answering: suspect (a ping unanswered for a ping interval), then dead (after the dead timeout).
    subs.get("app.inspected-2")!.unsubscribe();
    await page.locator('#clients tbody tr[data-subject="app.inspected-2"][data-state="suspect"]').waitFor({ timeout: 5000 });
    await page.locator('#chart svg [id="state:client.suspect"].active').waitFor({ timeout: 3000 });
    await page.locator('#clients tbody tr[data-subject="app.inspected-2"][data-state="dead"]').waitFor({ timeout: 8000 });
    await page.locator('#chart svg [id="state:client.dead"].active').waitFor({ timeout: 3000 });
    assert.is(await page.locator('#chart svg [id="state:client.suspect"].active').count(), 0, "only the current state is highlighted");
    assert.is(await stateOf(page, "app.inspected-1"), "alive", "the other client stays alive");

    // The event list shows the reports; the counts chips agree with the table.
    await page.locator('[data-tab="reports"]').click();
    await page.locator('#events .event.report[data-type="NodeDead"]', { hasText: "app.inspected-2" }).waitFor({ timeout: 3000 });
    // biome-ignore lint/performance/useDomNodeTextContent: a Playwright locator, not a DOM node; the rendered text is what the test reads
    assert.match(await page.locator("#state-filter .chip.state-dead b").innerText(), /^1$/);

    await page.screenshot({ path: `${ARTIFACTS}inspector.png`, fullPage: true });
    assert.equal(pageErrors, [], "no script errors on the page");
  } finally {
    await browser?.close();
    await nc?.close();
    await coordinator?.kill();
    await server.stop();
  }
});

test("inspector - with three partitions the tree is one per coordinator: balancer, an election per partition, monitors, shards, clients", async () => {
  const server = await NatsServer.start();
  let coordinator: CoordinatorProcess | undefined;
  let nc: NatsConnection | undefined;
  let browser: Browser | undefined;
  try {
    coordinator = spawnCoordinator({
      urls: [server.url],
      clusterId: "inspp",
      id: "inspp-a",
      args: ["--inspect=0", "--partitions", "3"],
    });
    const url = await waitFor("the inspector URL in the log", () => inspectorUrl(coordinator!), 10_000);
    nc = await connect({ servers: server.url });
    // partitionOf over 3 partitions: svc.part.3 → 0, svc.part.1 and svc.part.8 → 1, svc.part.7 → 2.
    const subjects = ["svc.part.1", "svc.part.3", "svc.part.7", "svc.part.8"];
    for (const subject of subjects) nc.subscribe(subject, { callback: (_e, m) => void m.respond("pong") });
    await nc.flush();

    browser = await launchBrowser();
    const page = await browser.newPage({ viewport: { width: 1600, height: 1000 } });
    const pageErrors: string[] = [];
    page.on("pageerror", (e) => pageErrors.push(e.message));
    await page.goto(url);
    // Alone, it leads all three partitions.
    await page.locator('#tree [data-key="balancer"]', { hasText: "leads 3 of 3" }).waitFor({ timeout: 20_000 });
    for (const subject of subjects) nc.publish("presence.register.inspp", JSON.stringify({ myPresenceSubject: subject }));
    for (const subject of subjects) {
      await page.locator(`#clients tbody tr[data-subject="${subject}"][data-state="alive"]`).waitFor({ timeout: 10_000 });
    }
    // Each client sits under its partition's monitor, in the tree's order.
    const keys = async () => page.locator("#tree [data-key]").evaluateAll((els) => els.map((e) => e.getAttribute("data-key")));
    const order = await pollFor(
      "every client in the tree",
      async () => {
        const k = await keys();
        return subjects.every((s) => k.includes(`client:${s}`)) ? k : undefined;
      },
      5000,
    );
    const at = (key: string) => order.indexOf(key);
    assert.ok(at("balancer") < at("election.0") && at("election.0") < at("monitor.0"), order.join(" "));
    assert.ok(at("monitor.0") < at("client:svc.part.3") && at("client:svc.part.3") < at("election.1"), order.join(" "));
    assert.ok(at("election.1") < at("client:svc.part.1") && at("client:svc.part.8") < at("election.2"), order.join(" "));
    assert.ok(at("election.2") < at("monitor.2") && at("monitor.2") < at("client:svc.part.7"), order.join(" "));
    // The page opened on partition 0's election, with its chart; partition 2's can be picked from the tree.
    await page.locator('#tree [data-key="election.0"].selected').waitFor({ timeout: 5000 });
    await page.locator('#chart svg [id="state:election.leader"].active').waitFor({ timeout: 5000 });
    await page.locator('#tree [data-key="election.2"]').click();
    await page.locator('#tree [data-key="election.2"].selected').waitFor({ timeout: 3000 });
    // biome-ignore lint/performance/useDomNodeTextContent: a Playwright locator, not a DOM node; the rendered text is what the test reads
    assert.match(await page.locator("#chart-title").innerText(), /election machine — election\.2/);
    // biome-ignore lint/performance/useDomNodeTextContent: a Playwright locator, not a DOM node; the rendered text is what the test reads
    assert.match(await page.locator("#leader").innerText(), /^p0 inspp-a · p1 inspp-a · p2 inspp-a$/);
    mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: `${ARTIFACTS}inspector-partitions.png`, fullPage: true });
    assert.equal(pageErrors, [], "no script errors on the page");
  } finally {
    await browser?.close();
    await nc?.close();
    await coordinator?.kill();
    await server.stop();
  }
});

test.run();
