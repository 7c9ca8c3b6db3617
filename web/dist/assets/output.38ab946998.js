// An output pane: monospace, scrollable, selectable, with a copy button. It
// follows the end of the output while new lines arrive, unless the reader
// has scrolled up to look at something.

import { h } from './dom.3dd86e8f14.js';

export function outputPane(name) {
  const pre = h('pre', { class: 'output mono', tabindex: '0', testid: name, 'aria-label': name });
  const note = h('span', { class: 'note', testid: `${name}-note` });
  const copy = h('button', { type: 'button', class: 'small', testid: `copy-${name}`, onclick: doCopy }, 'Copy');
  const el = h('section', { class: 'output-pane' },
    h('header', {}, h('h2', {}, name), note, h('span', { class: 'spacer' }), copy),
    pre);

  async function doCopy() {
    const text = pre.textContent;
    try {
      await navigator.clipboard.writeText(text);
    } catch {
      // No clipboard API (plain http on another host): select it for Ctrl+C.
      const range = document.createRange();
      range.selectNodeContents(pre);
      const sel = getSelection();
      sel.removeAllRanges();
      sel.addRange(range);
      copy.textContent = 'Selected';
      setTimeout(() => (copy.textContent = 'Copy'), 1500);
      return;
    }
    copy.textContent = 'Copied';
    setTimeout(() => (copy.textContent = 'Copy'), 1500);
  }

  function set(text, { truncated = false, live = false, final = false } = {}) {
    text = text ?? '';
    const atEnd = pre.scrollHeight - pre.scrollTop - pre.clientHeight < 8;
    if (pre.textContent !== text) {
      pre.textContent = text;
      if (atEnd) pre.scrollTop = pre.scrollHeight;
    }
    pre.dataset.state = final ? 'final' : live ? 'live' : 'stored';
    note.textContent = truncated ? 'showing the latest part only' : final ? `${text.length.toLocaleString()} chars` : live ? 'live' : '';
  }

  return { el, set };
}
