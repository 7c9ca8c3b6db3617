// Modal dialogs on the native <dialog>: focus is trapped and restored, Escape
// cancels, and nothing behind them reacts to the keyboard.

import { h } from './dom.3dd86e8f14.js';
import { errorText } from './format.dc80c323ac.js';

// modal shows a dialog whose form submits to onSubmit(form); returning
// normally closes it with that value, throwing shows the error inside it.
// Resolves with the value, or null when cancelled.
export function modal({ title, testid, body, submitLabel = 'Save', danger = false, onSubmit, wide = false }) {
  return new Promise((resolve) => {
    const error = h('p', { class: 'form-error', role: 'alert', testid: 'dialog-error' });
    const submit = h('button', { type: 'submit', class: danger ? 'danger' : 'primary', testid: 'dialog-submit' }, submitLabel);
    const cancel = h('button', { type: 'button', testid: 'dialog-cancel' }, 'Cancel');
    const form = h('form', { method: 'dialog' },
      h('h2', {}, title),
      body,
      error,
      h('div', { class: 'dialog-actions' }, cancel, submit));
    const dialog = h('dialog', { class: wide ? 'wide' : null, testid, 'aria-label': title }, form);
    let result = null;
    let busy = false;
    cancel.addEventListener('click', () => dialog.close());
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      if (busy) return;
      busy = true;
      submit.disabled = true;
      error.textContent = '';
      try {
        result = await onSubmit(form);
        if (result == null) result = true; // done, with nothing to hand back (204)
        dialog.close();
      } catch (err) {
        error.textContent = errorText(err);
      } finally {
        busy = false;
        submit.disabled = false;
      }
    });
    dialog.addEventListener('close', () => {
      dialog.remove();
      resolve(result);
    });
    document.body.append(dialog);
    dialog.showModal();
  });
}

export function confirmDialog({ title, message, confirmLabel = 'OK', danger = false, testid = 'confirm-dialog' }) {
  return modal({ title, testid, body: h('p', {}, message), submitLabel: confirmLabel, danger, onSubmit: async () => true })
    .then((v) => v === true);
}

// tokenDialog asks for the API token; resolves with it or null.
export function tokenDialog(rejected) {
  const input = h('input', { type: 'password', name: 'token', required: true, autocomplete: 'current-password', testid: 'token-input', 'aria-label': 'API token' });
  return modal({
    title: 'API token',
    testid: 'token-dialog',
    submitLabel: 'Use token',
    body: [
      h('p', {}, rejected
        ? 'The server rejected the stored token. Enter the token the server was started with (--api-token).'
        : 'This server requires a token (--api-token). It is kept in this browser only.'),
      h('label', {}, 'Token ', input),
    ],
    onSubmit: async () => input.value.trim() || Promise.reject(new Error('enter a token')),
  });
}

// yamlDialog edits a document as YAML; save(text) sends it and throws the
// server's message when it refuses it.
export function yamlDialog({ title, text, save }) {
  const area = h('textarea', {
    name: 'yaml', rows: 18, spellcheck: 'false', autocapitalize: 'off', testid: 'yaml-input',
    'aria-label': 'YAML', class: 'mono yaml',
  });
  area.value = text;
  return modal({
    title, testid: 'yaml-dialog', wide: true, submitLabel: 'Save',
    body: area,
    onSubmit: () => save(area.value),
  });
}
