// An output pane: monospace, scrollable, selectable, with a copy button. It
// follows the end of the output while new lines arrive, unless the reader
// has scrolled up to look at something. An output too big to show whole
// shows its head and its tail, and a link downloads all of it.

import { h } from './dom.3dd86e8f14.js';
import { apiBlob } from './api.21ab11d035.js';
import { bytes } from './format.dc80c323ac.js';

export function outputPane(name) {
  const pre = h('pre', { class: 'output mono', tabindex: '0', testid: name, 'aria-label': name });
  const note = h('span', { class: 'note', testid: `${name}-note` });
  const copy = h('button', { type: 'button', class: 'small', testid: `copy-${name}`, onclick: doCopy }, 'Copy');
  const download = h('a', { class: 'small download', testid: `download-${name}`, onclick: doDownload }, 'Download full output');
  download.hidden = true;
  const el = h('section', { class: 'output-pane' },
    h('header', {}, h('h2', {}, name), note, h('span', { class: 'spacer' }), download, copy),
    pre);

  // The link works as it is without a token; with one, the file is fetched
  // with it and handed to the browser as a download.
  async function doDownload(ev) {
    ev.preventDefault();
    const label = download.textContent;
    download.textContent = 'Downloading…';
    try {
      const blob = await apiBlob(download.getAttribute('href'));
      const url = URL.createObjectURL(blob);
      const a = h('a', { href: url, download: download.getAttribute('download') });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 60000);
      download.textContent = label;
    } catch (err) {
      download.textContent = `download failed: ${err.message}`;
    }
  }

  // showWhole sets the pane to a stored output: whole, or its head and tail
  // with the whole size and the download link (url, file name).
  function showWhole(head, tail, { truncated, size, url, file }) {
    if (truncated) {
      const shown = new Blob([head]).size + new Blob([tail || '']).size;
      set(`${head}\n\n… ${bytes(size - shown)} not shown: download the full output …\n\n${tail || ''}`, { final: true });
      note.textContent = `${bytes(size)}: head and tail shown`;
    } else {
      set(head, { final: true });
    }
    download.hidden = !size;
    if (size) {
      download.setAttribute('href', url);
      download.setAttribute('download', file);
    }
  }

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

  return { el, set, showWhole };
}
