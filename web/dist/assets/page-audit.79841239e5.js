// Audit: who changed what, from where, newest first; filters as upstream's
// (actor exact; action, target and payload as regular expressions; since a
// preset), pages through older records, and checks the hash chain.

import { h, replace } from './dom.3dd86e8f14.js';
import { api } from './api.21ab11d035.js';
import { setParams } from './router.475a737da2.js';
import { Latest } from './lifecycle.cf1e604c6c.js';
import { errorText, timeEl } from './format.dc80c323ac.js';

export const title = 'Audit';

const SINCE = { '1h': 3600e3, '24h': 86400e3, '7d': 7 * 86400e3, '30d': 30 * 86400e3, all: 0 };
const FIELDS = ['actor', 'action', 'target', 'payload'];

export function mount(main, { params, life }) {
  const latest = new Latest(life);
  const banner = h('p', { class: 'banner', role: 'alert', testid: 'audit-error' });
  const verdict = h('span', { class: 'summary', testid: 'audit-verify-result', 'aria-live': 'polite' });
  const inputs = {};
  for (const f of FIELDS) {
    inputs[f] = h('input', { type: 'search', name: f, placeholder: f === 'actor' ? 'actor (exact)' : `${f} (regex)`, testid: `audit-${f}`, 'aria-label': f, autocomplete: 'off', value: params.get(f) || '' });
  }
  const since = h('select', { name: 'since', testid: 'audit-since', 'aria-label': 'since' },
    Object.keys(SINCE).map((k) => h('option', { value: k, selected: k === (params.get('since') || '24h') }, k === 'all' ? 'all time' : `last ${k}`)));
  const limit = h('select', { name: 'limit', testid: 'audit-limit', 'aria-label': 'rows per page' },
    [50, 200, 1000].map((n) => h('option', { value: n, selected: String(n) === (params.get('limit') || '50') }, `${n} rows`)));
  const tbody = h('tbody', { testid: 'audit-body' }, h('tr', { class: 'empty' }, h('td', { colspan: 6 }, 'Loading…')));
  const older = h('button', { type: 'button', testid: 'audit-older', hidden: true, onclick: () => load(true) }, 'Older');
  let rows = [];
  let timer = null;

  function query(before) {
    const q = { limit: limit.value };
    for (const f of FIELDS) q[f] = inputs[f].value.trim();
    const ms = SINCE[since.value];
    if (ms) q.since = new Date(Date.now() - ms).toISOString();
    if (before) q.before = before;
    return q;
  }

  function row(r) {
    return h('tr', { testid: 'audit-row', dataset: { action: r.action, actor: r.actor, target: r.target ?? '' } },
      h('td', { class: 'num' }, timeEl(r.occurred_at)),
      h('td', { class: 'mono' }, r.actor),
      h('td', { class: 'mono' }, r.action, r.error ? h('span', { class: 'badge failure', title: r.error }, 'failed') : null),
      h('td', { class: 'mono ellipsis' }, r.target ?? '—'),
      h('td', { class: 'mono opt' }, r.addr ?? '—'),
      h('td', { class: 'mono ellipsis opt', title: JSON.stringify(r.payload) }, r.payload ? JSON.stringify(r.payload) : ''));
  }

  async function load(more = false) {
    const before = more && rows.length ? rows[rows.length - 1].id : null;
    const q = query(before);
    if (!more) {
      const state = {};
      for (const f of FIELDS) if (q[f]) state[f] = q[f];
      if (since.value !== '24h') state.since = since.value;
      if (limit.value !== '50') state.limit = limit.value;
      setParams('/audit', state);
    }
    const res = await latest.run((signal) => api('GET', '/api/audit', { query: q, signal }));
    if (!res) return;
    if (!res.ok) {
      banner.textContent = errorText(res.error);
      return;
    }
    banner.textContent = '';
    const page = res.value || [];
    rows = more ? rows.concat(page) : page;
    older.hidden = page.length === 0;
    replace(tbody, rows.length ? rows.map(row) : h('tr', { class: 'empty' }, h('td', { colspan: 6 }, 'No record matches.')));
  }

  async function verify() {
    verdict.textContent = 'checking…';
    try {
      const v = await api('GET', '/api/audit/verify');
      verdict.dataset.ok = String(v.ok);
      verdict.textContent = v.ok
        ? `chain intact: ${v.records} records`
        : `chain broken: ${v.problems.map((p) => `#${p.seq} ${p.problem}`).join('; ')}`;
    } catch (err) {
      verdict.textContent = errorText(err);
    }
  }

  const soon = () => {
    clearTimeout(timer);
    timer = setTimeout(() => load(), 300);
  };
  for (const f of FIELDS) inputs[f].addEventListener('input', soon);
  since.addEventListener('change', () => load());
  limit.addEventListener('change', () => load());
  life.signal.addEventListener('abort', () => clearTimeout(timer));

  replace(main, h('section', { class: 'page audit', testid: 'audit-page' },
    h('div', { class: 'page-head' }, h('h1', {}, 'Audit'), verdict, h('span', { class: 'spacer' }),
      h('button', { type: 'button', testid: 'audit-verify', onclick: verify }, 'Verify chain'),
      h('button', { type: 'button', onclick: () => load() }, 'Refresh')),
    h('div', { class: 'filters' }, FIELDS.map((f) => inputs[f]), since, limit),
    banner,
    h('div', { class: 'table-wrap' }, h('table', { class: 'audit', testid: 'audit-table' },
      h('thead', {}, h('tr', {},
        h('th', { scope: 'col' }, 'When'), h('th', { scope: 'col' }, 'Actor'), h('th', { scope: 'col' }, 'Action'),
        h('th', { scope: 'col' }, 'Target'), h('th', { scope: 'col', class: 'opt' }, 'From'), h('th', { scope: 'col', class: 'opt' }, 'Details'))),
      tbody)),
    older));
  load();
}
