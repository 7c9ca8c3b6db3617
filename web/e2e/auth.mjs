// Browser steps for accounts, roles and the audit trail (called from
// dashboard.mjs, after the runs): the bootstrap admin logs in and must
// change its password, adds a viewer on the Accounts page; the viewer's
// pages offer no Run, Kill, Add, Edit or Delete, nor the Accounts page; the
// viewer finds the earlier run on the Audit page, and the chain verifies.
// Needs E2E_ADMIN_PASSWORD (the server's KANADE_BOOTSTRAP_ADMIN_PASSWORD).

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
