// Log in: username and password (then a TOTP code if the account has MFA),
// or the server's API token. A first login that must change its password
// goes to Change password.

import { h, replace } from './dom.3dd86e8f14.js';
import { api, storeToken } from './api.21ab11d035.js';
import { navigate } from './router.475a737da2.js';
import { errorText } from './format.dc80c323ac.js';
import { tokenDialog } from './dialog.2b0c444602.js';
import { loadMe } from './auth.4b529e8847.js';

export const title = 'Log in';

export function mount(main, { params }) {
  const from = params.get('from') || '/';
  const user = h('input', { type: 'text', name: 'username', required: true, autocomplete: 'username', testid: 'login-username', 'aria-label': 'username' });
  const pass = h('input', { type: 'password', name: 'password', required: true, autocomplete: 'current-password', testid: 'login-password', 'aria-label': 'password' });
  const code = h('input', { type: 'text', name: 'totp', inputmode: 'numeric', autocomplete: 'one-time-code', testid: 'login-totp', 'aria-label': 'authentication code' });
  const codeRow = h('label', { class: 'field', hidden: true }, h('span', { class: 'label' }, 'Authentication code'), code);
  const error = h('p', { class: 'form-error', role: 'alert', testid: 'login-error' });
  const submit = h('button', { type: 'submit', class: 'primary', testid: 'login-submit' }, 'Log in');
  const reason = params.get('reason');

  async function done(mustChange) {
    await loadMe();
    navigate(mustChange ? '/change-password' : from);
  }

  const form = h('form', { class: 'login-form', testid: 'login-form' },
    h('label', { class: 'field' }, h('span', { class: 'label' }, 'Username'), user),
    h('label', { class: 'field' }, h('span', { class: 'label' }, 'Password'), pass),
    codeRow, error, submit);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    submit.disabled = true;
    error.textContent = '';
    try {
      const body = { username: user.value.trim(), password: pass.value };
      if (!codeRow.hidden) body.totp_code = code.value.trim();
      const res = await api('POST', '/api/auth/login', { body, login: true });
      if (res && res.mfa_required) {
        codeRow.hidden = false;
        code.focus();
        return;
      }
      storeToken(res.token);
      await done(res.must_change_pw);
    } catch (err) {
      error.textContent = errorText(err);
    } finally {
      submit.disabled = false;
    }
  });
  const useToken = h('button', { type: 'button', class: 'small', testid: 'use-token', onclick: async () => {
    for (let rejected = false; ; rejected = true) {
      const token = await tokenDialog(rejected);
      if (!token) return;
      storeToken(token);
      if (await loadMe()) {
        navigate(from);
        return;
      }
    }
  } }, 'Use an API token…');

  // Always the same answer: whether the name exists is not told.
  const forgotNote = h('p', { class: 'muted', role: 'status', testid: 'forgot-note' });
  const forgot = h('button', { type: 'button', class: 'small', testid: 'forgot-password', onclick: async () => {
    forgotNote.textContent = '';
    if (!user.value.trim()) {
      forgotNote.textContent = 'Enter your username first.';
      user.focus();
      return;
    }
    try {
      await api('POST', '/api/auth/forgot-password', { body: { username: user.value.trim() }, login: true });
      forgotNote.textContent = 'If the account has an email address (and the server sends mail), a reset link is on its way.';
    } catch (err) {
      forgotNote.textContent = errorText(err);
    }
  } }, 'Forgot password?');

  replace(main, h('section', { class: 'page login', testid: 'login-page' },
    h('h1', {}, 'Log in to kanade'),
    reason ? h('p', { class: 'muted', testid: 'login-reason' }, reason) : null,
    form,
    h('p', {}, forgot), forgotNote,
    h('p', { class: 'muted' }, 'Or, with the token the server was started with (--api-token): ', useToken)));
  user.focus();
}
