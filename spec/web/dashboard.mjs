// Drives the phanes serve dashboard in headless Debian chromium, as a user
// would: load the page, dry-run a module on a host and see the plan, apply
// it and see the live log arrive, see the host's status change. Prints one
// JSON document of what it saw; the Lua spec judges it and the host.
//
//   node dashboard.mjs BASE_URL TOKEN HOST MODULE PROFILE_DIR
import { chromium } from "playwright-core";

const [base, token, host, module, profile] = process.argv.slice(2);
const seen = { steps: [] };
const step = (s) => seen.steps.push(s);

const browser = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
try {
  const page = browser.pages()[0] || (await browser.newPage());
  page.setDefaultTimeout(240000);
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(base + "/");
  const row = page.locator(`#hosts tr[data-host="${host}"]`);
  await row.waitFor();
  seen.status_before = (await row.locator("td.status").textContent()).trim();
  step("loaded");
  await page.fill("#token", token);
  await page.dispatchEvent("#token", "change");
  await page.selectOption("#host", host);
  await page.check(`input[name=module][value="${module}"]`);
  await page.click("#dry-run");
  await page.locator("#plan-box").waitFor({ state: "visible" });
  await page.waitForFunction(() => document.querySelector("#plan-status").textContent !== "");
  seen.plan_status = (await page.textContent("#plan-status")).trim();
  seen.plan_rows = await page.locator("#plan tbody tr").count();
  step("planned");
  await page.click("#apply");
  await page.locator("#log-section").waitFor({ state: "visible" });
  // live: some of the log shows while the run still goes on
  await page.waitForFunction(() => document.querySelector("#log").textContent.length > 0);
  seen.log_while_running = (await page.textContent("#log-status")).trim();
  seen.first_log = (await page.textContent("#log")).slice(0, 200);
  await page.waitForFunction(() => !/streaming/.test(document.querySelector("#log-status").textContent));
  seen.run_status = (await page.textContent("#log-status")).trim();
  seen.log = await page.textContent("#log");
  step("applied");
  await page.waitForFunction(([h, before]) => {
    const td = document.querySelector(`#hosts tr[data-host="${h}"] td.status`);
    return td && td.textContent.trim() !== before;
  }, [host, seen.status_before]);
  seen.status_after = (await row.locator("td.status").textContent()).trim();
  seen.runs_rows = await page.locator("#runs tbody tr").count();
  seen.errors = errors;
  step("status");
} catch (e) {
  seen.error = String(e);
} finally {
  await browser.close();
}
process.stdout.write(JSON.stringify(seen) + "\n");
