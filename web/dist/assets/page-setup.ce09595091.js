// Password setup or reset from a mailed link (/password-setup/{token}):
// the link names the account; a new password is set once, and the link is
// spent. Needs no login.

import { h, replace } from './dom.3dd86e8f14.js';
import { api } from './api.21ab11d035.js';
import { navigate } from './router.475a737da2.js';
import { errorText } from './format.dc80c323ac.js';

export const title = 'Set password';

export function mount(main, { args }) {
  const token = args[0];
  const section = h('section', { class: 'page login', testid: 'setup-page' }, h('h1', {}, 'Set password'), h('p', { class: 'muted' }, 'Checking the link…'));
  replace(main, section);
  api('GET', `/api/auth/password-setup/${encodeURIComponent(token)}`, { login: true }).then((info) => {
    const pw = h('input', { type: 'password', name: 'new', required: true, autocomplete: 'new-password', testid: 'setup-password', 'aria-label': 'new password' });
    const again = h('input', { type: 'password', name: 'again', required: true, autocomplete: 'new-password', testid: 'setup-password-again', 'aria-label': 'new password again' });
    const error = h('p', { class: 'form-error', role: 'alert', testid: 'setup-error' });
    const submit = h('button', { type: 'submit', class: 'primary', testid: 'setup-submit' }, 'Set password');
    const form = h('form', { class: 'login-form' },
      h('label', { class: 'field' }, h('span', { class: 'label' }, 'New password (at least 8 characters)'), pw),
      h('label', { class: 'field' }, h('span', { class: 'label' }, 'New password again'), again),
      error, submit);
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      error.textContent = '';
      if (pw.value !== again.value) {
        error.textContent = 'The passwords differ.';
        return;
      }
      submit.disabled = true;
      try {
        await api('POST', `/api/auth/password-setup/${encodeURIComponent(token)}`, { body: { password: pw.value }, login: true });
        navigate('/login?reason=' + encodeURIComponent('Password set. Log in with it.'));
      } catch (err) {
        error.textContent = errorText(err);
      } finally {
        submit.disabled = false;
      }
    });
    replace(section, h('h1', {}, info.purpose === 'reset' ? 'Reset password' : 'Set up your password'),
      h('p', {}, 'Account ', h('strong', { class: 'mono', testid: 'setup-username' }, info.username)),
      form);
    pw.focus();
  }, (err) => {
    replace(section, h('h1', {}, 'Set password'),
      h('p', { class: 'banner', role: 'alert', testid: 'setup-error' }, errorText(err)),
      h('p', {}, h('a', { href: '#/login' }, 'Log in'), ' (or ask an admin for a new link).'));
  });
}
