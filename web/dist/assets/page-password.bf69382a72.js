// Change password: the caller's own (a first login must); and two-factor
// authentication (TOTP): set up with a new secret and a code from the app,
// or turned off with a current code.

import { h, replace } from './dom.3dd86e8f14.js';
import { api } from './api.21ab11d035.js';
import { navigate } from './router.475a737da2.js';
import { errorText } from './format.dc80c323ac.js';
import { currentUser, loadMe } from './auth.4b529e8847.js';

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
    form,
    me && !me.must_change_pw ? mfaSection(me) : null));
  old.focus();
}

// mfaSection sets up or turns off TOTP for the caller.
function mfaSection(me) {
  const box = h('div', { class: 'login-form', testid: 'mfa' });
  const error = h('p', { class: 'form-error', role: 'alert', testid: 'mfa-error' });
  const code = h('input', { type: 'text', inputmode: 'numeric', autocomplete: 'one-time-code', testid: 'mfa-code', 'aria-label': 'authentication code' });
  const run = (fn) => async () => {
    error.textContent = '';
    try {
      await fn();
    } catch (err) {
      error.textContent = errorText(err);
    }
  };
  if (me.mfa_enabled) {
    replace(box, h('h2', {}, 'Two-factor authentication: on'),
      h('label', { class: 'field' }, h('span', { class: 'label' }, 'Current code'), code), error,
      h('button', { type: 'button', testid: 'mfa-disable', onclick: run(async () => {
        await api('POST', '/api/auth/mfa/disable', { body: { code: code.value.trim() } });
        await loadMe();
        navigate('/');
      }) }, 'Turn off'));
    return box;
  }
  const setup = h('button', { type: 'button', testid: 'mfa-setup', onclick: run(async () => {
    const offer = await api('POST', '/api/auth/mfa/init');
    replace(box, h('h2', {}, 'Two-factor authentication'),
      h('p', {}, 'Add this secret to an authenticator app (or open the link on the phone), then enter the code it shows.'),
      h('p', { class: 'mono', testid: 'mfa-secret' }, offer.secret),
      h('p', { class: 'mono ellipsis' }, h('a', { href: offer.otpauth_url, testid: 'mfa-otpauth' }, offer.otpauth_url)),
      h('label', { class: 'field' }, h('span', { class: 'label' }, 'Code'), code), error,
      h('button', { type: 'button', class: 'primary', testid: 'mfa-verify', onclick: run(async () => {
        await api('POST', '/api/auth/mfa/verify', { body: { secret: offer.secret, code: code.value.trim() } });
        await loadMe();
        navigate('/');
      }) }, 'Turn on'));
  }) }, 'Set up…');
  replace(box, h('h2', {}, 'Two-factor authentication: off'), error, setup);
  return box;
}
