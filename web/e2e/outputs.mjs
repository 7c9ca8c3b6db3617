// Browser steps for outputs of any size and the layout at 1400 px: an
// 8 MiB stdout (seeded by web/e2e_test.go through the object store, as an
// agent sends it) shows in Activity with the list working, its Result page
// shows head and tail, and "Download full output" saves every byte; at
// 1400 px the Activity status pills and the Schedules columns are not
// clipped, and times show their zone.
// Env: E2E_BIG_RESULT, E2E_BIG_PC, E2E_BIG_BYTES.

import { statSync } from 'node:fs';
import { join } from 'node:path';

export async function outputSteps({ step, page, go, tid, poll, shotDir }) {
  const resultId = process.env.E2E_BIG_RESULT || '';
  const pc = process.env.E2E_BIG_PC || '';
  const size = Number(process.env.E2E_BIG_BYTES || 0);

  await step('an 8 MiB output: Activity lists it, the Result page shows head and tail, the download has every byte', async () => {
    if (!resultId || !pc || !size) throw new Error('E2E_BIG_RESULT, E2E_BIG_PC and E2E_BIG_BYTES are required (web/e2e_test.go sets them)');
    await go('/activity');
    await page.locator(tid('filter-pc_id')).fill(`^${pc}$`);
    await page.locator(tid('filter-pc_id')).press('Enter');
    const row = page.locator(`${tid('result-row')}[data-result-id="${resultId}"]`);
    await poll('the big result in Activity', async () => {
      if (await row.count()) return true;
      await page.locator(tid('refresh')).click();
      return false;
    }, 30000);
    // The whole list works beside it: the unfiltered newest page loads.
    await page.locator(tid('clear-filters')).click();
    await poll('the unfiltered list', async () => (await page.locator(tid('result-row')).count()) > 1, 15000);
    if (await page.locator(tid('activity-error')).textContent()) throw new Error('Activity shows an error');

    await go(`/results/${encodeURIComponent(resultId)}`);
    const out = page.locator(tid('stdout'));
    await poll('head and tail', async () => /not shown: download the full output/.test(await out.textContent()), 15000);
    const text = await out.textContent();
    if (!text.startsWith('kanade ö 日本語 row 0000000\n') || !text.trimEnd().endsWith('row 0262143')) {
      throw new Error(`stdout pane: ${text.slice(0, 40)} … ${text.slice(-40)}`);
    }
    const note = await page.locator(tid('stdout-note')).textContent();
    if (!/8\.0 MiB/.test(note)) throw new Error(`stdout note: ${note}`);
    const [download] = await Promise.all([page.waitForEvent('download'), page.locator(tid('download-stdout')).click()]);
    const file = join(shotDir, 'big-stdout.txt');
    await download.saveAs(file);
    if (statSync(file).size !== size) throw new Error(`downloaded ${statSync(file).size} bytes, want ${size}`);
    await page.screenshot({ path: join(shotDir, 'result-large-output.png') });
  });

  await step('at 1400 px: status pills and Schedules columns are not clipped; times show their zone', async () => {
    await page.setViewportSize({ width: 1400, height: 900 });
    const clipped = (selector) => page.evaluate((sel) => [...document.querySelectorAll(sel)]
      .filter((el) => el.scrollWidth > el.clientWidth + 1).map((el) => el.textContent.trim()), selector);
    await go('/activity');
    await page.locator(tid('result-row')).first().waitFor();
    const pills = await clipped(`${tid('result-row')} td:first-child`);
    if (pills.length) throw new Error(`clipped status cells: ${pills.slice(0, 3).join(' | ')}`);
    const started = await page.locator(`${tid('result-row')} time`).first().textContent();
    if (!/ (UTC|[+-]\d\d:\d\d)$/.test(started)) throw new Error(`time without its zone: ${started}`);
    const times = await clipped(`${tid('result-row')} td.num`);
    if (times.length) throw new Error(`clipped times: ${times.slice(0, 3).join(' | ')}`);
    await go('/schedules');
    await page.locator(tid('schedule-row')).first().waitFor();
    const cells = await clipped(`${tid('schedule-row')} td:not(.ellipsis)`);
    if (cells.length) throw new Error(`clipped schedule cells: ${cells.slice(0, 3).join(' | ')}`);
    await page.screenshot({ path: join(shotDir, 'schedules-1400.png') });
    await page.setViewportSize({ width: 1280, height: 800 });
  });
}
