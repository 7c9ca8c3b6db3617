// Accounts (admins): who may use kanade and with which role; add one,
// change a role, disable, set a password (the account must then change it),
// delete. The server keeps the last enabled admin (409).

import { h, replace } from './dom.js';
import { api } from './api.js';
import { Latest } from './lifecycle.js';
import { errorText, timeEl } from './format.js';
import { modal, confirmDialog } from './dialog.js';

export const title = 'Accounts';

const ROLES = ['viewer', 'operator', 'admin'];

function roleSelect(value, testid) {
  return h('select', { name: 'role', testid, 'aria-label': 'role' },
    ROLES.map((r) => h('option', { value: r, selected: r === value }, r)));
}

export function mount(main, { life }) {
  const latest = new Latest(life);
  const banner = h('p', { class: 'banner', role: 'alert', testid: 'accounts-error' });
  const note = h('p', { class: 'muted', role: 'status', testid: 'accounts-note' });
  const tbody = h('tbody', { testid: 'accounts-body' }, h('tr', { class: 'empty' }, h('td', { colspan: 6 }, 'Loading…')));

  async function patch(user, body) {
    banner.textContent = '';
    try {
      await api('PATCH', `/api/accounts/${encodeURIComponent(user)}`, { body });
    } catch (err) {
      banner.textContent = errorText(err);
    }
    load();
  }

  async function add() {
    const user = h('input', { type: 'text', name: 'username', required: true, autocomplete: 'off', testid: 'account-username', 'aria-label': 'username' });
    const pass = h('input', { type: 'password', name: 'password', autocomplete: 'new-password', testid: 'account-password', 'aria-label': 'password' });
    const email = h('input', { type: 'email', name: 'email', autocomplete: 'off', testid: 'account-email', 'aria-label': 'email' });
    const role = roleSelect('viewer', 'account-role');
    const ok = await modal({
      title: 'Add account', testid: 'account-dialog', submitLabel: 'Add',
      body: [
        h('label', { class: 'field' }, h('span', { class: 'label' }, 'Username'), user),
        h('label', { class: 'field' }, h('span', { class: 'label' }, 'Password (at least 8 characters)'), pass),
        h('label', { class: 'field' }, h('span', { class: 'label' }, 'Email (without a password: a setup link is mailed)'), email),
        h('label', { class: 'field' }, h('span', { class: 'label' }, 'Role'), role),
      ],
      onSubmit: async () => {
        const body = { username: user.value.trim(), role: role.value };
        if (pass.value) body.password = pass.value;
        if (email.value.trim()) body.email = email.value.trim();
        const res = await api('POST', '/api/accounts', { body });
        note.textContent = res && res.setup_link_sent ? `A setup link was mailed to ${body.email}.`
          : (!body.password ? 'The account was made, but its setup link could not be mailed: send a reset link.' : '');
      },
    });
    if (ok) load();
  }

  async function setPassword(a) {
    const pass = h('input', { type: 'password', name: 'password', required: true, autocomplete: 'new-password', testid: 'account-new-password', 'aria-label': 'new password' });
    await modal({
      title: `Set the password of ${a.username}`, testid: 'account-password-dialog', submitLabel: 'Set password',
      body: [h('p', {}, 'The account must change it at its next login.'), h('label', { class: 'field' }, h('span', { class: 'label' }, 'New password'), pass)],
      onSubmit: () => api('PATCH', `/api/accounts/${encodeURIComponent(a.username)}`, { body: { password: pass.value } }),
    });
    load();
  }

  async function resetLink(a) {
    banner.textContent = '';
    note.textContent = '';
    try {
      await api('POST', `/api/accounts/${encodeURIComponent(a.username)}/reset-link`);
      note.textContent = `A reset link was mailed to ${a.email}.`;
    } catch (err) {
      banner.textContent = errorText(err);
    }
  }

  async function remove(a) {
    if (!(await confirmDialog({ title: 'Delete account', message: `Delete ${a.username}? Its tokens stop working at once.`, confirmLabel: 'Delete', danger: true }))) return;
    banner.textContent = '';
    try {
      await api('DELETE', `/api/accounts/${encodeURIComponent(a.username)}`);
    } catch (err) {
      banner.textContent = errorText(err);
    }
    load();
  }

  function row(a) {
    const role = roleSelect(a.role, 'account-row-role');
    role.addEventListener('change', () => patch(a.username, { role: role.value }));
    const disabled = Boolean(a.disabled);
    return h('tr', { testid: 'account-row', dataset: { username: a.username, role: a.role, disabled: String(disabled) } },
      h('td', { class: 'mono' }, a.username),
      h('td', {}, role),
      h('td', {}, h('span', { class: `badge ${disabled ? 'offline' : 'success'}` }, disabled ? 'disabled' : 'enabled'),
        a.must_change_pw ? h('span', { class: 'badge warn' }, 'must change password') : null,
        a.mfa_enabled ? h('span', { class: 'badge info' }, 'MFA') : null),
      h('td', { class: 'opt', testid: 'account-pages' }, a.permission_group ? `group ${a.permission_group}`
        : Array.isArray(a.allowed_features) ? (a.allowed_features.join(', ') || 'none') : 'all'),
      h('td', { class: 'opt' }, timeEl(a.updated_at)),
      h('td', { class: 'actions' },
        h('button', { type: 'button', class: 'small', testid: 'account-toggle', onclick: () => patch(a.username, { disabled: !disabled }) }, disabled ? 'Enable' : 'Disable'),
        h('button', { type: 'button', class: 'small', testid: 'account-set-password', onclick: () => setPassword(a) }, 'Set password…'),
        a.email ? h('button', { type: 'button', class: 'small', testid: 'account-reset-link', onclick: () => resetLink(a) }, 'Mail reset link') : null,
        h('button', { type: 'button', class: 'small danger-text', testid: 'account-delete', onclick: () => remove(a) }, 'Delete')));
  }

  async function load() {
    const res = await latest.run((signal) => api('GET', '/api/accounts', { signal }));
    if (!res) return;
    if (!res.ok) {
      banner.textContent = errorText(res.error);
      return;
    }
    const all = res.value || [];
    replace(tbody, all.length ? all.map(row) : h('tr', { class: 'empty' }, h('td', { colspan: 6 }, 'No account yet.')));
  }

  replace(main, h('section', { class: 'page accounts', testid: 'accounts-page' },
    h('div', { class: 'page-head' }, h('h1', {}, 'Accounts'), h('span', { class: 'spacer' }),
      h('button', { type: 'button', class: 'primary', testid: 'add-account', onclick: add }, 'Add account')),
    banner, note,
    h('div', { class: 'table-wrap' }, h('table', { class: 'accounts', testid: 'accounts-table' },
      h('thead', {}, h('tr', {},
        h('th', { scope: 'col' }, 'Username'), h('th', { scope: 'col' }, 'Role'), h('th', { scope: 'col' }, 'State'),
        h('th', { scope: 'col', class: 'opt' }, 'Pages'), h('th', { scope: 'col', class: 'opt' }, 'Updated'), h('th', { scope: 'col' }, ''))),
      tbody))));
  load();
}
