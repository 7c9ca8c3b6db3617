// Browser steps of the Schedules page in upstream's when model: a schedule
// added in the editor shows its cadence in words and its coverage, and the
// fleet freeze is set and lifted with its toggle, its banner following.
// Called from dashboard.mjs with its helpers.

export async function scheduleSteps({ step, page, api, go, tid, poll, job, suffix }) {
  await step('a when schedule shows in words, with its coverage', async () => {
    const cal = `e2e-when-${suffix}`;
    const once = `e2e-once-${suffix}`;
    await api('/api/schedules', { method: 'POST', data: { id: once, when: { per_pc: 'once' }, job_id: job, target: { all: true }, enabled: false } });
    await go('/schedules');
    await page.locator(tid('add-schedule')).click();
    const dialog = page.locator(tid('yaml-dialog'));
    await dialog.locator(tid('yaml-input')).fill(
      `id: ${cal}\nwhen: {calendar: {at: "03:00", days: [tue#2, friL]}}  # patch days\njob_id: ${job}\ntarget: {all: true}\ntz: utc\nenabled: false\n`);
    await dialog.locator(tid('dialog-submit')).click();
    await dialog.waitFor({ state: 'detached' });
    const words = async (id) => (await page.locator(`${tid('schedule-row')}[data-schedule-id="${id}"] ${tid('schedule-when')}`).textContent()).trim();
    await poll('the new rows', async () => (await page.locator(`${tid('schedule-row')}[data-schedule-id="${cal}"]`).count()) === 1);
    if ((await words(cal)) !== '2nd Tue, last Fri 03:00 utc') throw new Error(`calendar reads ${JSON.stringify(await words(cal))}`);
    if ((await words(once)) !== 'each PC once') throw new Error(`per_pc once reads ${JSON.stringify(await words(once))}`);
    const cov = await page.locator(`${tid('schedule-row')}[data-schedule-id="${once}"] ${tid('schedule-coverage')}`).textContent();
    if (!/^\d+\/\d+ done/.test(cov)) throw new Error(`coverage reads ${JSON.stringify(cov)}`);
    // The editor opens the YAML as written, comment included.
    await page.locator(`${tid('schedule-row')}[data-schedule-id="${cal}"] ${tid('edit-schedule')}`).click();
    const text = await page.locator(`${tid('yaml-dialog')} ${tid('yaml-input')}`).inputValue();
    if (!text.includes('# patch days')) throw new Error(`editor shows ${JSON.stringify(text)}`);
    await page.locator(`${tid('yaml-dialog')} ${tid('dialog-cancel')}`).click();
    for (const id of [cal, once]) await api(`/api/schedules/${id}`, { method: 'DELETE' });
  });

  await step('add a schedule in words', async () => {
    const id = `e2e-words-${suffix}`;
    await go('/schedules');
    await page.locator(tid('add-schedule-words')).click();
    const dialog = page.locator(tid('words-dialog'));
    await dialog.locator(tid('words-id')).fill(id);
    await dialog.locator(tid('words-job')).selectOption(job);
    await dialog.locator(tid('words-cadence')).selectOption('per_pc_every');
    await dialog.locator(tid('words-every')).fill('6h');
    await dialog.locator(tid('words-target')).fill('group:lab');
    const said = await dialog.locator(tid('words-preview')).textContent();
    if (said !== 'Fires: every 6 h per PC') throw new Error(`the form says ${JSON.stringify(said)}`);
    await dialog.locator(tid('words-cadence')).selectOption('calendar');
    await dialog.locator(tid('words-days')).fill('mon-fri');
    await poll('the words to follow', async () => (await dialog.locator(tid('words-preview')).textContent()) === 'Fires: Mon-Fri 09:00 local');
    await dialog.locator(tid('dialog-submit')).click();
    await dialog.waitFor({ state: 'detached' });
    const stored = await api(`/api/schedules/${id}`);
    if (JSON.stringify(stored.when) !== '{"calendar":{"at":"09:00","days":["mon-fri"]}}' || stored.target.groups[0] !== 'lab' || stored.tz !== 'local') {
      throw new Error(`stored ${JSON.stringify(stored)}`);
    }
    await api(`/api/schedules/${id}`, { method: 'DELETE' });
  });

  await step('freeze the fleet and lift it', async () => {
    await go('/schedules');
    const banner = page.locator(tid('freeze-banner'));
    const toggle = page.locator(tid('freeze-toggle'));
    await toggle.waitFor();
    if (await api('/api/freeze')) throw new Error('the fleet is frozen before the test');
    await toggle.click();
    await page.locator(`${tid('freeze-dialog')} ${tid('dialog-submit')}`).click();
    await poll('the freeze banner', async () => (await banner.isVisible()) && (await banner.textContent()).includes('Fleet frozen'));
    if (!(await api('/api/freeze'))) throw new Error('no freeze stored');
    await toggle.click();
    await page.locator(`${tid('freeze-dialog')} ${tid('dialog-submit')}`).click();
    await poll('the banner to go', async () => !(await banner.isVisible()));
    if ((await api('/api/freeze')) !== null) throw new Error('freeze still stored');
  });
}
