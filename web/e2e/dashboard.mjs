// Browser test of the kanade dashboard against a running `kanade serve --demo`.
// Usage: node web/e2e/dashboard.mjs http://127.0.0.1:PORT
// Env: SCREENSHOT_DIR (default artifacts/screenshots), CHROMIUM (default
// /usr/bin/chromium), E2E_GROUP (group to run a job on; default: the first
// group a demo schedule targets), E2E_TOKEN (the server's --api-token, when
// it has one: the test then enters it in the dashboard's prompt),
// E2E_SKIP_JOB (a stored job whose shell no agent supports: its results come
// back skipped) and E2E_BROKEN_SCHEDULE (a stored schedule the engine cannot
// use); web/e2e_test.go writes both straight into KV, and the steps that need
// them fail when they are missing.
//
// It drives the real UI only (clicks, typing); the API is read directly only
// to pick a group name. Each step prints "ok - …"; the first failure prints
// "not ok - …" and exits 1.

import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { authSteps } from './auth.mjs';
import { outputSteps } from './outputs.mjs';
import { homeSteps } from './home.mjs';
import { fleetSteps } from './fleet.mjs';
import { scheduleSteps } from './schedules.mjs';

const base = process.argv[2];
if (!base) {
  console.error('usage: node dashboard.mjs <dashboard url>');
  process.exit(2);
}
const shotDir = process.env.SCREENSHOT_DIR || 'artifacts/screenshots';
mkdirSync(shotDir, { recursive: true });

const token = process.env.E2E_TOKEN || '';
const suffix = Date.now().toString(36);
const SLOW_JOB = `e2e-slow-${suffix}`;
const SKIP_JOB = process.env.E2E_SKIP_JOB || '';
const BROKEN_SCHEDULE = process.env.E2E_BROKEN_SCHEDULE || '';
const FAIL_JOB = `e2e-fail-${suffix}`;

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--no-first-run', '--disable-sync', '--disable-dev-shm-usage'],
});
const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, colorScheme: 'light' });
const page = await context.newPage();
page.setDefaultTimeout(15000);

// Anything the page throws, any CSP refusal and any missing asset fails the run.
const problems = [];
page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
page.on('response', (r) => {
  if (r.url().includes('/assets/') && r.status() >= 400) problems.push(`asset ${r.url()}: HTTP ${r.status()}`);
});
page.on('console', (m) => {
  if (m.type() === 'error' && /Content Security Policy|Refused to/i.test(m.text())) problems.push(`CSP: ${m.text()}`);
});

let passed = 0;
async function step(name, fn) {
  const t0 = Date.now();
  try {
    await fn();
  } catch (err) {
    console.log(`not ok - ${name}: ${err.message.split('\n')[0]}`);
    await page.screenshot({ path: join(shotDir, 'failure.png'), fullPage: true }).catch(() => {});
    console.log(`${passed} passed, 1 failed`);
    await browser.close();
    process.exit(1);
  }
  if (problems.length) {
    console.log(`not ok - ${name}: ${problems.join('; ')}`);
    await browser.close();
    process.exit(1);
  }
  passed++;
  console.log(`ok - ${name} (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
}

const tid = (id) => `[data-testid="${id}"]`;
const go = (hash) => page.goto(`${base}/#${hash}`);

// poll waits until fn() returns a truthy value.
async function poll(what, fn, timeoutMs = 30000) {
  const end = Date.now() + timeoutMs;
  let last;
  while (Date.now() < end) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) {
      last = e.message;
    }
    await page.waitForTimeout(250);
  }
  throw new Error(`timed out waiting for ${what} (last: ${JSON.stringify(last)})`);
}

async function api(path, { method = 'GET', data } = {}) {
  const res = await page.request.fetch(`${base}${path}`, { method, data, headers: token ? { Authorization: `Bearer ${token}` } : {} });
  if (!res.ok()) throw new Error(`${method} ${path}: HTTP ${res.status()} ${await res.text()}`);
  return res.status() === 204 ? null : res.json();
}

// firstRunningRow waits for a running row of the filtered Activity list;
// it presses Refresh while none shows (the run may start after the load).
async function firstRunningRow() {
  const row = page.locator(`${tid('result-row')}[data-status="running"]`).first();
  await poll('a running row', async () => {
    if (await row.count()) return true;
    await page.locator(tid('refresh')).click();
    return false;
  }, 30000);
  return row;
}

async function addJob(yaml) {
  await go('/jobs');
  await page.locator(tid('add-job')).click();
  const dialog = page.locator(tid('yaml-dialog'));
  await dialog.locator(tid('yaml-input')).fill(yaml);
  await dialog.locator(tid('dialog-submit')).click();
  await dialog.waitFor({ state: 'detached' });
}

// saveUnchanged opens an editor, saves what it shows, and checks the stored
// document kept every field: the YAML the dashboard writes reads back the
// same (the server may add its defaults, such as a schedule's tz).
async function saveUnchanged(apiPath, editButton) {
  const before = await api(apiPath);
  await editButton.click();
  const dialog = page.locator(tid('yaml-dialog'));
  await dialog.locator(tid('dialog-submit')).click();
  await poll('the editor to close', async () => {
    if ((await dialog.count()) === 0) return true;
    const err = await dialog.locator(tid('dialog-error')).textContent({ timeout: 1000 }).catch(() => '');
    if (err.trim()) throw new Error(`save refused: ${err}`);
    return false;
  }, 10000);
  const after = await api(apiPath);
  const kept = Object.fromEntries(Object.keys(before).map((k) => [k, after[k]]));
  const [a, b] = [JSON.stringify(sortKeys(before)), JSON.stringify(sortKeys(kept))];
  if (a !== b) throw new Error(`the round trip changed ${apiPath}: ${a} -> ${JSON.stringify(after)}`);
}

function sortKeys(v) {
  if (Array.isArray(v)) return v.map(sortKeys);
  if (v && typeof v === 'object') return Object.fromEntries(Object.keys(v).sort().map((k) => [k, sortKeys(v[k])]));
  return v;
}

async function runJob(jobId, fill) {
  await go('/jobs');
  await page.locator(`${tid('job-row')}[data-job-id="${jobId}"] ${tid('run-job')}`).click();
  const dialog = page.locator(tid('run-dialog'));
  await fill(dialog);
  await dialog.locator(tid('dialog-submit')).click();
  await page.waitForURL(/#\/executions\/[^/?]+$/);
}

let group = process.env.E2E_GROUP;
let pcs = [];

await step('dashboard loads, asks for the API token once, shows the version', async () => {
  await page.goto(base + '/#/activity');
  if (token) {
    // The server wants a login: the login page offers the API token too,
    // asked once, then remembered.
    await page.locator(tid('login-page')).waitFor();
    await page.locator(tid('use-token')).click();
    const dialog = page.locator(tid('token-dialog'));
    await dialog.locator(tid('token-input')).fill('not-the-token');
    await dialog.locator(tid('dialog-submit')).click();
    await poll('the wrong token refused', async () => /rejected/.test(await page.locator(`${tid('token-dialog')} p`).first().textContent()));
    await page.locator(`${tid('token-dialog')} ${tid('token-input')}`).fill(token);
    await page.locator(`${tid('token-dialog')} ${tid('dialog-submit')}`).click();
    await page.locator(tid('results-table')).waitFor();
    await poll('rows or an empty list', async () => (await page.locator(`${tid('results-body')} tr`).count()) > 0
      && !/Loading/.test(await page.locator(tid('results-body')).textContent()));
    await page.reload();
    await page.locator(tid('activity-page')).waitFor();
    await page.waitForTimeout(500);
    if (await page.locator('dialog[open]').count()) throw new Error('asked for the token again after a reload');
  } else {
    await page.locator(tid('activity-page')).waitFor();
  }
  await poll('version', async () => /^v\S+/.test(await page.locator(tid('version')).textContent()));
  const agents = await poll('agents heartbeating', async () => {
    const a = await api('/api/agents');
    return a.filter((x) => x.alive).length >= 2 && a;
  });
  pcs = agents.map((a) => a.pc_id).sort();
  if (!group) {
    const schedules = await api('/api/schedules');
    group = schedules.flatMap((s) => s.target?.groups || [])[0];
  }
  if (!group) throw new Error('no group to run on: set E2E_GROUP');
});

await step('add two jobs as YAML, edit one', async () => {
  await addJob(`id: ${FAIL_JOB}
version: 1.0.0
description: fails quickly with exit 3 (browser test)
execute:
  shell: sh
  script: |
    # sim: outcome=failure exit=3 duration=1s-3s
    exit 3
  timeout: 1m
`);
  await addJob(`id: ${SLOW_JOB}
version: 1.0.0
description: prints progress for minutes (browser test)
execute:
  shell: sh
  script: |
    # sim: outcome=success duration=300s output=64KiB
    for i in $(seq 300); do echo progress $i; sleep 1; done
  timeout: 10m
`);
  await go('/jobs');
  for (const id of [FAIL_JOB, SLOW_JOB]) await page.locator(`${tid('job-row')}[data-job-id="${id}"]`).waitFor();
  await saveUnchanged(`/api/jobs/${SLOW_JOB}`, page.locator(`${tid('job-row')}[data-job-id="${SLOW_JOB}"] ${tid('edit-job')}`));
});

await step(`run a job on group ${group} and see the execution complete`, async () => {
  await runJob(FAIL_JOB, async (d) => {
    await d.locator(tid('target-groups')).check();
    await d.locator(tid('target-groups-input')).fill(group);
  });
  await page.locator(tid('execution-page')).waitFor();
  await poll('execution completed', async () => (await page.locator(`${tid('execution-summary')} ${tid('execution-status')}`).textContent()) === 'completed', 60000);
  const counts = await page.locator(`${tid('execution-summary')} ${tid('execution-counts')}`).textContent();
  const [ok, failed, target] = counts.split('/').map((s) => Number(s.trim()));
  if (!(target > 0 && failed === target && ok === 0)) throw new Error(`counts ${counts}: want every target failed`);
  const rows = await page.locator(`${tid('execution-results')} ${tid('result-row')}`).count();
  if (rows !== target) throw new Error(`${rows} result rows, want ${target}`);
  await page.screenshot({ path: join(shotDir, 'execution-light.png') });
});

await step(`skipped results: a job no agent can run, on group ${group}`, async () => {
  if (!SKIP_JOB) throw new Error('E2E_SKIP_JOB not set (web/e2e_test.go writes that job)');
  await runJob(SKIP_JOB, async (d) => {
    await d.locator(tid('target-groups')).check();
    await d.locator(tid('target-groups-input')).fill(group);
  });
  await page.locator(tid('execution-page')).waitFor();
  // Skipped results count toward completion, as neither success nor failure.
  await poll('execution completed', async () => (await page.locator(`${tid('execution-summary')} ${tid('execution-status')}`).textContent()) === 'completed', 60000);
  const summary = page.locator(tid('execution-summary'));
  const [ok, failed, target] = (await summary.locator(tid('execution-counts')).textContent()).split('/').map((x) => Number(x.trim()));
  if (!(target > 0 && ok === 0 && failed === 0)) throw new Error(`counts ${ok}/${failed}/${target}: want none succeeded or failed`);
  const skipped = await summary.locator(tid('execution-skipped')).textContent();
  if (skipped !== `${target} skipped`) throw new Error(`summary says ${JSON.stringify(skipped)}, want "${target} skipped"`);
  const seg = summary.locator(`${tid('progress')} .seg.skipped`);
  const [barW, segW] = [(await summary.locator(tid('progress')).boundingBox()).width, (await seg.boundingBox()).width];
  if (Math.abs(barW - segW) > 1) throw new Error(`skipped segment ${segW}px of a ${barW}px bar: want all of it`);
  await page.screenshot({ path: join(shotDir, 'execution-skipped-light.png') });
  // The list shows it too; executions with none skipped show no count.
  const execId = page.url().split('/').pop();
  await go(`/executions?job_id=${encodeURIComponent(SKIP_JOB)}`);
  const row = page.locator(`${tid('execution-row')}[data-exec-id="${execId}"]`);
  await row.waitFor();
  const listed = await row.locator(tid('execution-skipped')).textContent();
  if (listed !== `${target} skipped`) throw new Error(`list says ${JSON.stringify(listed)}`);
  await go(`/executions?job_id=${encodeURIComponent(FAIL_JOB)}`);
  await page.locator(tid('execution-row')).first().waitFor();
  if (await page.locator(tid('execution-skipped')).count()) throw new Error('a skipped count shown on an execution with none skipped');
});

await step('filter Activity to failures and see only failed rows', async () => {
  await go('/activity');
  await page.locator(tid('status-tab-failure')).click();
  await page.waitForURL(/status=failure/);
  await poll('failed rows', async () => {
    const statuses = await page.locator(tid('result-row')).evaluateAll((rs) => rs.map((r) => r.dataset.status));
    return statuses.length > 0 && statuses.every((s) => s === 'failure') && statuses;
  });
  // Narrow to the test's job with a regex; every row still failed, exit 3.
  await page.locator(tid('filter-job_id')).fill(`^${FAIL_JOB}$`);
  await page.waitForURL(new RegExp(`job_id=%5E${FAIL_JOB}`));
  await poll('only the test job', async () => {
    const badges = await page.locator(`${tid('result-row')} ${tid('exit-badge')}`).allTextContents();
    return badges.length > 0 && badges.every((b) => b === 'exit 3');
  });
  // A bad regex shows the server's message next to its field, and the
  // message does not push the table down (its line is reserved).
  const tableTop = async () => (await page.locator(tid('results-table')).boundingBox()).y;
  const before = await tableTop();
  await page.locator(tid('filter-pc_id')).fill('(');
  await poll('regex error', async () => /invalid regex/.test(await page.locator(tid('error-pc_id')).textContent()));
  const after = await tableTop();
  if (after !== before) throw new Error(`the error moved the table from y=${before} to y=${after}`);
  await page.locator(tid('filter-pc_id')).fill('');
  await poll('error cleared', async () => (await page.locator(tid('error-pc_id')).textContent()) === '');
  // The error quotes the pattern, not the field (upstream's text): the page
  // finds the field by the pattern it sent, even one holding "`: ".
  await page.locator(tid('filter-stderr')).fill('x`: (');
  await poll('regex error on stderr', async () => (await page.locator(tid('error-stderr')).textContent()).startsWith('invalid regex `x`: (`: ')
    && (await page.locator(tid('error-pc_id')).textContent()) === '');
  await page.locator(tid('filter-stderr')).fill('');
  await poll('stderr error cleared', async () => (await page.locator(tid('error-stderr')).textContent()) === '');
  // The URL alone reproduces the view.
  await page.reload();
  await poll('filters restored from the URL', async () => (await page.locator(tid('filter-job_id')).inputValue()) === `^${FAIL_JOB}$`
    && (await page.locator(tid('status-tab-failure')).getAttribute('aria-pressed')) === 'true');
});

await step('keyboard alone reaches and uses the status tabs', async () => {
  await go('/activity');
  await page.locator(tid('activity-page')).waitFor();
  await page.locator('body').click({ position: { x: 5, y: 300 } });
  await poll('focus on the failure tab', async () => {
    await page.keyboard.press('Tab');
    return page.evaluate(() => document.activeElement?.dataset.testid === 'status-tab-failure');
  }, 10000);
  await page.keyboard.press('Enter');
  await page.waitForURL(/status=failure/);
});

await step('open a running result and see its live output change', async () => {
  await runJob(SLOW_JOB, async (d) => {
    await d.locator(tid('target-pcs')).check();
    await d.locator(tid('target-pcs-input')).fill(pcs[0]);
  });
  await go(`/?status=running&job_id=${encodeURIComponent('^' + SLOW_JOB + '$')}`);
  const row = await firstRunningRow();
  await row.locator('a.row-link').click();
  await page.locator(tid('result-page')).waitFor();
  const out = page.locator(tid('stdout'));
  const first = await poll('live output', async () => {
    const live = await page.locator(tid('live-state')).getAttribute('data-state');
    const text = await out.textContent();
    return live === 'live' && text.length > 0 && text;
  });
  await poll('the output to grow', async () => {
    const text = await out.textContent();
    return text !== first && text.length > 0;
  }, 20000);
});

await step('kill it', async () => {
  await page.locator(tid('kill-button')).click();
  await page.locator(`${tid('confirm-dialog')} ${tid('dialog-submit')}`).click();
  await poll('kill sent', async () => (await page.locator(tid('kill-state')).textContent()) === 'kill sent');
  await poll('the run to end killed', async () => (await page.locator(`${tid('result-status')} ${tid('exit-badge')}`).textContent()) === 'exit -1', 60000);
  if (await page.locator(tid('kill-button')).isVisible()) throw new Error('kill button still shown on a finished run');
});

await step('Jobs shows a job\'s live executions, and nothing once none is', async () => {
  const pc = pcs[2];
  await api(`/api/exec/${SLOW_JOB}`, { method: 'POST', data: { target: { pcs: [pc] } } });
  await go('/jobs');
  const jobRow = page.locator(`${tid('job-row')}[data-job-id="${SLOW_JOB}"]`);
  const badge = jobRow.locator(tid('job-live'));
  // The Jobs page does not refresh itself: read it again until the run shows.
  await poll('a running badge', async () => {
    if (await badge.count() && Number(await badge.getAttribute('data-running')) >= 1) return true;
    await page.reload();
    await jobRow.waitFor();
    return false;
  }, 40000);
  const text = await badge.textContent();
  if (!/^\d+ running( · \d+ pending)?$/.test(text)) throw new Error(`badge reads ${JSON.stringify(text)}`);
  // A job with nothing under way shows no badge.
  if (await page.locator(`${tid('job-row')}[data-job-id="${FAIL_JOB}"] ${tid('job-live')}`).count()) throw new Error(`${FAIL_JOB} shows a live badge`);
  await page.screenshot({ path: join(shotDir, 'jobs-live-light.png') });
  // The badge leads to that job's running executions.
  await badge.click();
  await page.waitForURL(/#\/executions\?/);
  const u = new URL(page.url().replace('#/', ''));
  if (u.searchParams.get('job_id') !== SLOW_JOB || u.searchParams.get('status') !== 'running') throw new Error(`badge led to ${page.url()}`);
  await poll('the running execution listed', async () => {
    const rows = await page.locator(tid('execution-row')).evaluateAll((rs) => rs.map((r) => [r.dataset.jobId, r.dataset.status]));
    return rows.length > 0 && rows.every(([j, st]) => j === SLOW_JOB && st === 'running');
  });
  // An older backend sends no "live": the list still renders, without badges.
  await page.route('**/api/jobs', async (route) => {
    const res = await route.fetch();
    const jobs = (await res.json()).map(({ live, ...j }) => j);
    await route.fulfill({ response: res, json: jobs });
  });
  await go('/jobs');
  await jobRow.waitFor();
  if (await page.locator(tid('job-live')).count()) throw new Error('a badge shown without "live" in the list');
  await page.unrouteAll();
  // Once the run ends the badge goes.
  await api(`/api/jobs/${SLOW_JOB}/kill`, { method: 'POST' });
  await poll('the badge to go', async () => {
    await page.reload();
    await jobRow.waitFor();
    return (await badge.count()) === 0;
  }, 40000);
});

await step('Activity refreshes itself while a run is in flight', async () => {
  await go(`/?job_id=${encodeURIComponent('^' + SLOW_JOB + '$')}&pc_id=${encodeURIComponent('^' + pcs[1] + '$')}`);
  await page.locator(tid('results-table')).waitFor();
  await api(`/api/exec/${SLOW_JOB}`, { method: 'POST', data: { target: { pcs: [pcs[1]] } } });
  const row = await firstRunningRow();
  const id = await row.getAttribute('data-result-id');
  await api(`/api/jobs/${SLOW_JOB}/kill`, { method: 'POST' });
  // No click, no reload from here: the page must notice the end by itself.
  await poll('the row to end', async () => (await page.locator(`${tid('result-row')}[data-result-id="${id}"]`).getAttribute('data-status')) === 'failure', 30000);
});

await step('disable a schedule', async () => {
  await go('/schedules');
  const row = page.locator(`${tid('schedule-row')}[data-enabled="true"]`).first();
  await row.waitFor();
  const id = await row.getAttribute('data-schedule-id');
  await saveUnchanged(`/api/schedules/${id}`, row.locator(tid('edit-schedule')));
  // Upstream answers enable/disable with 204 and no body: the page must
  // show the new state from the list it reads again, not from the reply.
  await page.route('**/api/schedules/*/disable', async (route) => {
    const res = await route.fetch();
    if (res.ok()) await route.fulfill({ status: 204, body: '' });
    else await route.fulfill({ response: res });
  });
  await row.locator(tid('toggle-schedule')).click();
  const same = page.locator(`${tid('schedule-row')}[data-schedule-id="${id}"]`);
  await poll('schedule disabled', async () => (await same.getAttribute('data-enabled')) === 'false');
  await page.unrouteAll();
  const stored = (await api('/api/schedules')).find((s) => s.id === id);
  if (stored.enabled !== false) throw new Error(`API still has ${id} enabled`);
  await same.locator(tid('preview-schedule')).click();
  await page.locator(`${tid('schedule-preview')}[data-schedule-id="${id}"]`).waitFor();
});

await step('delete a schedule someone else deleted first', async () => {
  const id = `e2e-gone-${suffix}`;
  await api('/api/schedules', { method: 'POST', data: { id, job_id: SLOW_JOB, cron: '0 0 3 1 1 *', target: { all: true } } });
  await go('/schedules');
  await page.reload(); // already on /schedules: read the list again now
  const row = page.locator(`${tid('schedule-row')}[data-schedule-id="${id}"]`);
  await row.waitFor();
  await api(`/api/schedules/${id}`, { method: 'DELETE' });
  // Deleting an unknown schedule answers 204 upstream (not 404): the page
  // must settle on the list it reads again, with no error shown.
  await page.route(`**/api/schedules/${id}`, async (route) => {
    if (route.request().method() !== 'DELETE') return route.continue();
    const res = await route.fetch();
    if (res.status() === 404) await route.fulfill({ status: 204, body: '' });
    else await route.fulfill({ response: res });
  });
  await row.locator(tid('delete-schedule')).click();
  await page.locator(`${tid('confirm-dialog')} ${tid('dialog-submit')}`).click();
  await poll('the row to go', async () => (await row.count()) === 0);
  const banner = await page.locator(tid('schedules-error')).textContent();
  if (banner) throw new Error(`error shown after a 204 delete: ${banner}`);
  await page.unrouteAll();
});

await step('a stored schedule the engine cannot use shows its error', async () => {
  if (!BROKEN_SCHEDULE) throw new Error('E2E_BROKEN_SCHEDULE not set (web/e2e_test.go writes that schedule)');
  const reason = (await api('/api/schedules')).find((s) => s.id === BROKEN_SCHEDULE)?.error;
  if (!reason) throw new Error(`the API lists no error for ${BROKEN_SCHEDULE}`);
  await go('/schedules');
  const row = page.locator(`${tid('schedule-row')}[data-schedule-id="${BROKEN_SCHEDULE}"]`);
  await row.waitFor();
  const marker = row.locator(`${tid('next-run')} ${tid('schedule-error')}`);
  if ((await marker.getAttribute('title')) !== reason) throw new Error(`marker title ${JSON.stringify(await marker.getAttribute('title'))}, want ${JSON.stringify(reason)}`);
  if (!(await marker.textContent()).includes(reason)) throw new Error(`marker reads ${JSON.stringify(await marker.textContent())}`);
  // A usable schedule keeps its next run, with no error marker.
  if (await page.locator(`${tid('schedule-row')}:not([data-schedule-id="${BROKEN_SCHEDULE}"]) ${tid('schedule-error')}`).count()) {
    throw new Error('an error marker on a usable schedule');
  }
  await page.screenshot({ path: join(shotDir, 'schedules-error-light.png') });
});

await homeSteps({ step, page, base, go, tid, poll, api, addJob, runJob, pcs: () => pcs, shotDir, join, suffix });
await fleetSteps({ page, step, api, poll, tid, go, shotDir, base, token });
await scheduleSteps({ step, page, api, go, tid, poll, job: SLOW_JOB, suffix });
if (token) await authSteps({ page, step, poll, tid, go, ranJob: SLOW_JOB, token });

// Every page in both themes, at desktop and phone width.
await outputSteps({ step, page, go, tid, poll, shotDir });

await step('screenshots of every page, light and dark', async () => {
  const resultId = (await api(`/api/results?job_id=${encodeURIComponent('^' + SLOW_JOB + '$')}&limit=1`))[0].result_id;
  const execId = (await api('/api/executions?limit=1'))[0].exec_id;
  const pages = [
    ['home', '/', 'home-page', tid('version-row')],
    ['activity', '/activity', 'activity-page', tid('result-row')],
    ['activity-failures', '/?status=failure', 'activity-page', tid('result-row')],
    ['result', `/results/${resultId}`, 'result-page', tid('result-meta') + ' dt'],
    ['executions', '/executions', 'executions-page', tid('execution-row')],
    ['execution', `/executions/${execId}`, 'execution-page', tid('execution-summary') + ' ' + tid('progress')],
    ['jobs', '/jobs', 'jobs-page', tid('job-row')],
    ['schedules', '/schedules', 'schedules-page', tid('schedule-row')],
    ['agents', '/agents', 'agents-page', tid('agent-row')],
    ['agent', `/agents/${encodeURIComponent(pcs[0])}`, 'agent-page', tid('agent-state')],
    ['groups', '/groups', 'groups-page', tid('group-row')],
    ['audit', '/audit', 'audit-page', tid('audit-row')],
    ['accounts', '/accounts', 'accounts-page', tid('account-row')],
  ];
  for (const [width, tag] of [[1280, ''], [390, '-phone']]) {
    await page.setViewportSize({ width, height: width > 500 ? 800 : 844 });
    for (const scheme of ['light', 'dark']) {
      await page.emulateMedia({ colorScheme: scheme });
      for (const [name, hash, testid, ready] of pages) {
        await go(hash);
        await page.locator(tid(testid)).waitFor();
        await page.locator(ready).first().waitFor();
        await page.screenshot({ path: join(shotDir, `${name}-${scheme}${tag}.png`) });
      }
    }
  }
  // The toggle overrides the system preference and survives a reload.
  await page.setViewportSize({ width: 1280, height: 800 });
  await page.emulateMedia({ colorScheme: 'light' });
  await go('/');
  const toggle = page.locator(tid('theme-toggle'));
  await poll('dark theme chosen', async () => {
    await toggle.click();
    return (await page.evaluate(() => document.documentElement.dataset.theme)) === 'dark';
  }, 5000);
  await page.reload();
  const bg = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
  if (bg !== 'rgb(18, 21, 27)') throw new Error(`dark theme not kept across reload: body ${bg}`);
});

console.log(`${passed} passed, 0 failed`);
await browser.close();
