// Change password: the caller's own (a first login must).

import { h, replace } from './dom.3dd86e8f14.js';
import { api } from './api.32c083245e.js';
import { navigate } from './router.475a737da2.js';
import { errorText } from './format.913d19cc04.js';
import { currentUser, loadMe } from './auth.16f174c5c7.js';

export const title = 'Change password';

export function mount(main) {
  const input = (name, testid, label, auto) => h('input', { type: 'password', name, required: true, autocomplete: auto, testid, 'aria-label': label });
  const old = input('old', 'old-password', 'current password', 'current-password');
  const pw = input('new', 'new-password', 'new password', 'new-password');
  const again = input('again', 'new-password-again', 'new password again', 'new-password');
  const error = h('p', { class: 'form-error', role: 'alert', testid: 'password-error' });
  const submit = h('button', { type: 'submit', class: 'primary', testid: 'password-submit' }, 'Change password');
  const me = currentUser();
  const form = h('form', { class: 'login-form' },
    h('label', { class: 'field' }, h('span', { class: 'label' }, 'Current password'), old),
    h('label', { class: 'field' }, h('span', { class: 'label' }, 'New password (at least 8 characters)'), pw),
    h('label', { class: 'field' }, h('span', { class: 'label' }, 'New password again'), again),
    error, submit);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    error.textContent = '';
    if (pw.value !== again.value) {
      error.textContent = 'The new passwords differ.';
      return;
    }
    submit.disabled = true;
    try {
      // A wrong current password is a 401 here, not a lost session.
      await api('POST', '/api/auth/change-password', { body: { old_password: old.value, new_password: pw.value }, login: true });
      await loadMe();
      navigate('/');
    } catch (err) {
      error.textContent = errorText(err);
    } finally {
      submit.disabled = false;
    }
  });
  replace(main, h('section', { class: 'page login', testid: 'password-page' },
    h('h1', {}, 'Change password'),
    me && me.must_change_pw ? h('p', { class: 'banner', testid: 'must-change' }, 'This password was set for you: choose your own before going on.') : null,
    form));
  old.focus();
}
