import { chromium } from 'playwright-core';
const [url, out, ...routes] = process.argv.slice(2);
const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', headless: true, args: ['--no-sandbox', '--disable-gpu'] });
for (const scheme of ['light', 'dark']) {
  for (const width of [1280, 390]) {
    const page = await browser.newPage({ viewport: { width, height: 800 }, colorScheme: scheme });
    page.on('console', (m) => { if (m.type() === 'error' || m.type() === 'warning') console.log('console', m.type(), m.text()); });
    page.on('pageerror', (e) => console.log('pageerror', e.message));
    for (const r of routes) {
      await page.goto(url + '/#' + r);
      await page.waitForTimeout(1200);
      const name = `${out}/${r.replace(/[^a-z0-9]+/gi, '_') || 'home'}-${scheme}-${width}.png`;
      await page.screenshot({ path: name, fullPage: false });
    }
    await page.close();
  }
}
await browser.close();
