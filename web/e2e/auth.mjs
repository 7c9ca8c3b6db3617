// Browser steps for accounts, roles and the audit trail (called from
// dashboard.mjs, after the runs): the bootstrap admin logs in and must
// change its password, adds a viewer on the Accounts page; the viewer's
// pages offer no Run, Kill, Add, Edit or Delete, nor the Accounts page; the
// viewer finds the earlier run on the Audit page, and the chain verifies.
// The admin also turns on two-factor authentication from the Change password
// page, logs in again with a code computed here (RFC 6238), and turns it off.
// Needs E2E_ADMIN_PASSWORD (the server's KANADE_BOOTSTRAP_ADMIN_PASSWORD).

import { createHmac } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

// totp is the RFC 6238 code (HMAC-SHA1, 30 s step, 6 digits) of a base32
// (RFC 4648, unpadded) secret at time ms.
export function totp(secret, ms = Date.now()) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = 0, value = 0;
  const bytes = [];
  for (const c of secret.replace(/=+$/, '').toUpperCase()) {
    const i = alphabet.indexOf(c);
    if (i < 0) throw new Error(`not base32: ${c}`);
    value = (value << 5) | i;
    bits += 5;
    if (bits >= 8) {
      bytes.push((value >>> (bits - 8)) & 0xff);
      bits -= 8;
    }
  }
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(Math.floor(ms / 1000 / 30)));
  const mac = createHmac('sha1', Buffer.from(bytes)).update(counter).digest();
  const off = mac[mac.length - 1] & 0x0f;
  const n = (mac.readUInt32BE(off) & 0x7fffffff) % 1000000;
  return String(n).padStart(6, '0');
}

export async function authSteps({ page, step, poll, tid, go, ranJob, token }) {
  const adminPassword = process.env.E2E_ADMIN_PASSWORD;
  const newPassword = 'changed-' + Date.now().toString(36);
  const viewer = { name: 'e2e-viewer', password: 'viewer-pass-1' };

  async function logout() {
    await page.locator(tid('logout')).click();
    await page.locator(tid('login-page')).waitFor();
  }
  async function login(user, password) {
    await page.locator(tid('login-username')).fill(user);
    await page.locator(tid('login-password')).fill(password);
    await page.locator(tid('login-submit')).click();
  }

  await step('the bootstrap admin logs in and must change its password', async () => {
    if (!adminPassword) throw new Error('E2E_ADMIN_PASSWORD not set (web/e2e_test.go sets it)');
    await go('/');
    await logout();
    await login('admin', 'wrong-password');
    await poll('the refusal shown', async () => /invalid credentials/.test(await page.locator(tid('login-error')).textContent()));
    await login('admin', adminPassword);
    await page.locator(tid('password-page')).waitFor();
    await page.locator(tid('must-change')).waitFor();
    await page.locator(tid('old-password')).fill(adminPassword);
    await page.locator(tid('new-password')).fill(newPassword);
    await page.locator(tid('new-password-again')).fill(newPassword);
    await page.locator(tid('password-submit')).click();
    await page.locator(tid('home-page')).waitFor();
    await poll('who am I', async () => (await page.locator(tid('whoami-name')).textContent()) === 'admin'
      && (await page.locator(tid('whoami-role')).textContent()) === 'admin');
  });

  // wrongCode is a code the server refuses now (it accepts one step either side).
  const wrongCode = (secret) => {
    const near = [-30000, 0, 30000].map((d) => totp(secret, Date.now() + d));
    return ['000000', '111111', '222222', '333333'].find((c) => !near.includes(c));
  };

  await step('the admin turns on two-factor authentication, logs in with a code, and turns it off', async () => {
    await go('/change-password');
    await page.locator(tid('password-page')).waitFor();
    const box = page.locator(tid('mfa'));
    await box.locator(tid('mfa-setup')).click();
    const secret = (await box.locator(tid('mfa-secret')).textContent()).trim();
    const url = await box.locator(tid('mfa-otpauth')).getAttribute('href');
    if (!url.startsWith('otpauth://totp/') || new URL(url).searchParams.get('secret') !== secret) {
      throw new Error(`otpauth URL ${url} does not carry the secret ${secret}`);
    }
    await box.locator(tid('mfa-code')).fill(wrongCode(secret));
    await box.locator(tid('mfa-verify')).click();
    await poll('a wrong code refused', async () => /invalid code/.test(await box.locator(tid('mfa-error')).textContent()));
    await box.locator(tid('mfa-code')).fill(totp(secret));
    await box.locator(tid('mfa-verify')).click();
    await page.locator(tid('home-page')).waitFor();

    await logout();
    await login('admin', newPassword);
    await page.locator(tid('login-totp')).waitFor({ state: 'visible' });
    await page.locator(tid('login-totp')).fill(wrongCode(secret));
    await page.locator(tid('login-submit')).click();
    await poll('a wrong code refused at login', async () => /invalid credentials/.test(await page.locator(tid('login-error')).textContent()));
    await page.locator(tid('login-totp')).fill(totp(secret));
    await page.locator(tid('login-submit')).click();
    await page.locator(tid('home-page')).waitFor();
    await poll('who am I, with MFA', async () => (await page.locator(tid('whoami-name')).textContent()) === 'admin');

    await go('/change-password');
    await page.locator(tid('mfa-disable')).waitFor();
    await page.locator(tid('mfa-code')).fill(totp(secret));
    await page.locator(tid('mfa-disable')).click();
    await page.locator(tid('home-page')).waitFor();
    await go('/change-password');
    await page.locator(tid('mfa-setup')).waitFor();
  });

  await step('the admin adds a viewer on the Accounts page', async () => {
    await page.locator(tid('nav-accounts')).click();
    await page.locator(tid('accounts-page')).waitFor();
    await page.locator(tid('add-account')).click();
    const dialog = page.locator(tid('account-dialog'));
    await dialog.locator(tid('account-username')).fill(viewer.name);
    await dialog.locator(tid('account-password')).fill(viewer.password);
    await dialog.locator(tid('account-role')).selectOption('viewer');
    await dialog.locator(tid('dialog-submit')).click();
    await dialog.waitFor({ state: 'detached' });
    await page.locator(`${tid('account-row')}[data-username="${viewer.name}"][data-role="viewer"]`).waitFor();
  });

  // The server mails through the test's SMTP relay, which leaves each
  // message in E2E_MAIL_DIR; links start with E2E_PUBLIC_URL.
  async function mailedLink(to) {
    const dir = process.env.E2E_MAIL_DIR;
    if (!dir) throw new Error('E2E_MAIL_DIR not set (web/e2e_test.go sets it)');
    let link;
    await poll(`a mail to ${to}`, async () => {
      for (const f of readdirSync(dir).filter((f) => f.endsWith('.eml'))) {
        const text = readFileSync(join(dir, f), 'utf8');
        const m = text.match(/\/password-setup\/([0-9a-f-]{36})/);
        if (text.includes(`To: ${to}`) && m && text.includes(process.env.E2E_PUBLIC_URL + m[0])) link = m[0];
      }
      return link;
    });
    return new URL(page.url()).origin + link;
  }

  await step('an account made with an email only sets its password from the mailed link, once', async () => {
    const mailed = { name: 'e2e-mailed', email: 'mailed@e2e.invalid', password: 'mailed-pass-1' };
    await page.locator(tid('add-account')).click();
    const dialog = page.locator(tid('account-dialog'));
    await dialog.locator(tid('account-username')).fill(mailed.name);
    await dialog.locator(tid('account-email')).fill(mailed.email);
    await dialog.locator(tid('account-role')).selectOption('viewer');
    await dialog.locator(tid('dialog-submit')).click();
    await dialog.waitFor({ state: 'detached' });
    await poll('the setup link said sent', async () => /setup link was mailed/.test(await page.locator(tid('accounts-note')).textContent()));
    const link = await mailedLink(mailed.email);

    await logout();
    await page.goto(link);
    await page.locator(tid('setup-page')).waitFor();
    await poll('the link names the account', async () => (await page.locator(tid('setup-username')).textContent().catch(() => '')) === mailed.name);
    await page.locator(tid('setup-password')).fill('short');
    await page.locator(tid('setup-password-again')).fill('short');
    await page.locator(tid('setup-submit')).click();
    await poll('a short password refused', async () => /too short/.test(await page.locator(tid('setup-error')).textContent()));
    await page.locator(tid('setup-password')).fill(mailed.password);
    await page.locator(tid('setup-password-again')).fill(mailed.password);
    await page.locator(tid('setup-submit')).click();
    await page.locator(tid('login-page')).waitFor();
    await login(mailed.name, mailed.password);
    await page.locator(tid('home-page')).waitFor();
    await poll('logged in as the mailed account', async () => (await page.locator(tid('whoami-name')).textContent()) === mailed.name);

    await page.goto(link);
    await page.locator(tid('setup-page')).waitFor();
    await poll('a spent link refused', async () => /already used/.test(await page.locator(tid('setup-error')).textContent()));
  });

  await step('a viewer is offered no mutating control', async () => {
    await logout();
    await login(viewer.name, viewer.password);
    await page.locator(tid('home-page')).waitFor();
    await poll('viewer role shown', async () => (await page.locator(tid('whoami-role')).textContent()) === 'viewer');
    const none = async (where, ids) => {
      for (const id of ids) {
        const shown = await page.locator(tid(id)).filter({ visible: true }).count();
        if (shown) throw new Error(`${where}: a viewer sees ${shown} × ${id}`);
      }
    };
    if (await page.locator(tid('nav-accounts')).isVisible()) throw new Error('a viewer sees the Accounts link');
    await go('/jobs');
    await page.locator(tid('job-row')).first().waitFor();
    await none('jobs', ['add-job', 'run-job', 'edit-job', 'revoke-job', 'unrevoke-job', 'delete-job']);
    await go('/schedules');
    await page.locator(tid('schedule-row')).first().waitFor();
    await none('schedules', ['add-schedule', 'edit-schedule', 'delete-schedule']);
    for (const t of await page.locator(tid('toggle-schedule')).all()) {
      if (await t.isEnabled()) throw new Error('a viewer can flip a schedule');
    }
    await go('/executions');
    await page.locator(tid('execution-row')).first().click();
    await page.locator(tid('execution-page')).waitFor();
    await page.waitForTimeout(500);
    await none('execution', ['kill-button']);
    await go('/agents');
    const pc = await page.locator(tid('agent-row')).first().getAttribute('data-pc-id');
    await go(`/agents/${encodeURIComponent(pc)}`);
    await page.locator(tid('agent-page')).waitFor();
    await page.waitForTimeout(300);
    await none('agent', ['agent-group-form', 'agent-meta-form', 'agent-ping', 'agent-config-edit', 'run-form', 'agent-group-remove']);
    await go('/groups');
    await page.locator(tid('groups-page')).waitFor();
    await page.waitForTimeout(300);
    await none('groups', ['global-config', 'groups-add-form', 'add-group-def', 'edit-group-def', 'delete-group-def', 'group-config']);
    await go('/activity');
    await page.locator(`${tid('result-row')} a.row-link`).first().click();
    await page.locator(tid('result-page')).waitFor();
    await page.waitForTimeout(300);
    await none('result', ['kill-button']);
  });

  await step(`the viewer finds the run of ${ranJob} on the Audit page`, async () => {
    await page.locator(tid('nav-audit')).click();
    await page.locator(tid('audit-page')).waitFor();
    await page.locator(tid('audit-action')).fill('^exec$');
    await page.locator(tid('audit-target')).fill(`^${ranJob}$`);
    const row = page.locator(`${tid('audit-row')}[data-action="exec"][data-target="${ranJob}"]`);
    await row.first().waitFor();
    await page.locator(tid('audit-verify')).click();
    await poll('the chain verified', async () => /chain intact/.test(await page.locator(tid('audit-verify-result')).textContent()));
  });

  // Back to the API token for the steps after these.
  await step('log out, and back in with the API token', async () => {
    await logout();
    await page.locator(tid('use-token')).click();
    await page.locator(`${tid('token-dialog')} ${tid('token-input')}`).fill(token);
    await page.locator(`${tid('token-dialog')} ${tid('dialog-submit')}`).click();
    await page.locator(tid('home-page')).waitFor();
    await poll('the token is an admin', async () => (await page.locator(tid('whoami-name')).textContent()) === 'service-token');
  });
}
