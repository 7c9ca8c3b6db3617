// Browser steps for the Home page and script revoke on the Jobs page;
// dashboard.mjs calls homeSteps with its helpers once the demo is up.

export async function homeSteps({ step, page, base, go, tid, poll, api, addJob, runJob, pcs, shotDir, join, suffix }) {
  await step('Home is the landing page: health, last 24 h, agents, versions, schedules, JetStream', async () => {
    await page.goto(base + '/');
    await page.locator(tid('home-page')).waitFor();
    if ((await page.locator('[data-nav="home"]').getAttribute('aria-current')) !== 'page') throw new Error('Home is not the current nav item');
    // The demo's agents heartbeat: the rollup is ok and counts them online.
    await poll('health ok', async () => (await page.locator(tid('health-status')).getAttribute('data-status')) === 'ok', 30000);
    const online = Number(await page.locator(`${tid('agents-online')} .value`).textContent());
    if (!(online >= 2)) throw new Error(`${online} agents online`);
    await poll('a version row', async () => (await page.locator(tid('version-row')).count()) > 0);
    // Earlier steps disable and delete schedules: the card shows what the
    // engine has, up to five.
    const upcoming = (await api('/api/schedules/upcoming?limit=5')).length;
    await poll(`${upcoming} upcoming schedules`, async () => {
      const rows = await page.locator(tid('upcoming-row')).count();
      return rows === upcoming && (rows > 0 || /No enabled schedule/.test(await page.locator(tid('home-upcoming')).textContent()));
    });
    await poll('RESULTS usage', async () => (await page.locator(`${tid('jetstream-row')}[data-name="RESULTS"]`).count()) === 1);
    if (!/all \d+ resources present/.test(await page.locator(tid('health-jetstream')).textContent())) {
      throw new Error(`JetStream line: ${await page.locator(tid('health-jetstream')).textContent()}`);
    }
    await page.screenshot({ path: join(shotDir, 'home-loaded-light.png') });
    // The 24 h failure count links to those failures in Activity.
    await page.locator(`${tid('recent-failed')} a`).click();
    await page.locator(tid('activity-page')).waitFor();
    if (!/#\/activity\?.*status=failure/.test(page.url())) throw new Error(`failures link went to ${page.url()}`);
  });

  await step('revoke a job on the Jobs page: agents skip its next run (126); unrevoke lifts it', async () => {
    const job = `e2e-revoke-${suffix}`;
    await addJob(`id: ${job}
version: 1.0.0
description: revoked by the browser test
execute:
  shell: sh
  script: |
    # sim: outcome=success duration=200ms
    echo ran
  timeout: 1m
`);
    const row = () => page.locator(`${tid('job-row')}[data-job-id="${job}"]`);
    await row().locator(tid('revoke-job')).click();
    await page.locator(`${tid('confirm-dialog')} ${tid('dialog-submit')}`).click();
    await row().locator(tid('job-revoked')).waitFor();
    await row().locator(tid('unrevoke-job')).waitFor();

    await runJob(job, async (d) => {
      await d.locator(tid('target-pcs')).check();
      await d.locator(tid('target-pcs-input')).fill(pcs()[0]);
    });
    const summary = page.locator(tid('execution-summary'));
    await poll('execution completed', async () => (await summary.locator(tid('execution-status')).textContent()) === 'completed', 60000);
    const skipped = await summary.locator(tid('execution-skipped')).textContent();
    if (skipped !== '1 skipped') throw new Error(`summary says ${JSON.stringify(skipped)}, want "1 skipped" (exit 126)`);

    await go('/jobs');
    await row().locator(tid('unrevoke-job')).click();
    await row().locator(tid('revoke-job')).waitFor();
    if (await row().locator(tid('job-revoked')).count()) throw new Error('still marked revoked after unrevoke');
    await runJob(job, async (d) => {
      await d.locator(tid('target-pcs')).check();
      await d.locator(tid('target-pcs-input')).fill(pcs()[0]);
    });
    await poll('execution completed', async () => (await summary.locator(tid('execution-status')).textContent()) === 'completed', 60000);
    if (await summary.locator(tid('execution-skipped')).count()) throw new Error('a run after unrevoke was skipped');
  });
}
