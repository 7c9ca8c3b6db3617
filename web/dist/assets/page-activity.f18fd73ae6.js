// Activity: every filter of GET /api/results, kept in the URL
// so a link reproduces the view, with cursor paging and auto-refresh while
// any shown run is still in flight.

import { h, replace } from './dom.3dd86e8f14.js';
import { api } from './api.21ab11d035.js';
import { href, setParams, navigate } from './router.475a737da2.js';
import { Latest } from './lifecycle.cf1e604c6c.js';
import { exitBadge, timeEl, resultDuration, firstLine, tickElapsed, shortId, resultStatus, errorText } from './format.dc80c323ac.js';

export const title = 'Activity';

const FIELDS = [
  ['pc_id', 'PC'],
  ['job_id', 'Job'],
  ['exec_id', 'Execution'],
  ['stdout', 'stdout'],
  ['stderr', 'stderr'],
];
const STATUSES = [['', 'All'], ['running', 'Running'], ['success', 'Success'], ['failure', 'Failure']];
const WINDOWS = [['1h', 'Last hour', 3600e3], ['24h', 'Last 24 h', 86400e3], ['7d', 'Last 7 days', 7 * 86400e3], ['30d', 'Last 30 days', 30 * 86400e3], ['all', 'All time', null]];
const LIMITS = ['50', '200', '1000'];
const DEFAULTS = { window: '24h', limit: '50' };
const DEBOUNCE_MS = 300;
const REFRESH_MS = 3000;
const COLUMNS = 7;

function readState(params) {
  const s = {
    status: params.get('status') || '',
    window: params.get('window') || DEFAULTS.window,
    limit: params.get('limit') || DEFAULTS.limit,
    before: params.get('before') || '',
  };
  if (!STATUSES.some(([v]) => v === s.status)) s.status = '';
  if (!WINDOWS.some(([v]) => v === s.window)) s.window = DEFAULTS.window;
  if (!LIMITS.includes(s.limit)) s.limit = DEFAULTS.limit;
  for (const [k] of FIELDS) s[k] = params.get(k) || '';
  return s;
}

// Only what differs from the defaults goes into the URL.
function toParams(s) {
  const p = {};
  if (s.status) p.status = s.status;
  for (const [k] of FIELDS) if (s[k]) p[k] = s[k];
  if (s.window !== DEFAULTS.window) p.window = s.window;
  if (s.limit !== DEFAULTS.limit) p.limit = s.limit;
  if (s.before) p.before = s.before;
  return p;
}

function query(s) {
  const q = { limit: s.limit, status: s.status, before: s.before };
  for (const [k] of FIELDS) q[k] = s[k];
  const ms = WINDOWS.find(([v]) => v === s.window)[2];
  // "since" is computed at every fetch so "last hour" stays the last hour.
  if (ms != null) q.since = new Date(Date.now() - ms).toISOString();
  return q;
}

// Which filter fields a 400 message is about. A bad regex answers
// upstream's ``invalid regex `PATTERN`: REASON``, which names the pattern,
// not the field: the fields whose sent value is that pattern are the ones
// (the longest, should one pattern also prefix the message for another).
// Other messages name their parameter ("parameter since: …").
function fieldsOf(message, sent) {
  const keys = FIELDS.map(([k]) => k);
  const bad = keys.filter((k) => sent[k] && message.startsWith(`invalid regex \`${sent[k]}\`: `));
  if (bad.length) {
    const longest = Math.max(...bad.map((k) => sent[k].length));
    return bad.filter((k) => sent[k].length === longest);
  }
  const named = /\bparameter ([a-z_]+)\b/.exec(message);
  if (named && keys.includes(named[1])) return [named[1]];
  return keys.filter((k) => new RegExp(`(^|[^a-z_])${k}([^a-z_]|$)`).test(message));
}

export function mount(main, { params, life }) {
  let s = readState(params);
  const latest = new Latest(life);
  let cancelRefresh = () => {};
  let rows = [];

  const tabs = STATUSES.map(([v, label]) =>
    h('button', { type: 'button', class: 'tab', testid: `status-tab-${v || 'all'}`, onclick: () => change({ status: v }) }, label));

  const inputs = {};
  const fieldErrors = {};
  const fields = FIELDS.map(([k, label]) => {
    let pending = () => {};
    inputs[k] = h('input', {
      type: 'search', name: k, testid: `filter-${k}`, placeholder: 'regex', autocomplete: 'off', spellcheck: 'false',
      'aria-describedby': `err-${k}`,
      oninput: () => {
        pending();
        pending = life.after(DEBOUNCE_MS, () => change({ [k]: inputs[k].value }));
      },
      onkeydown: (ev) => {
        if (ev.key === 'Enter') {
          ev.preventDefault();
          pending();
          change({ [k]: inputs[k].value });
        }
      },
    });
    fieldErrors[k] = h('span', { class: 'field-error', id: `err-${k}`, testid: `error-${k}`, 'aria-live': 'polite' });
    return h('label', { class: 'field' }, h('span', { class: 'label' }, label), inputs[k], fieldErrors[k]);
  });
  const windowSelect = h('select', { name: 'window', testid: 'filter-window', onchange: () => change({ window: windowSelect.value }) },
    WINDOWS.map(([v, label]) => h('option', { value: v }, label)));
  const limitSelect = h('select', { name: 'limit', testid: 'filter-limit', onchange: () => change({ limit: limitSelect.value }) },
    LIMITS.map((v) => h('option', { value: v }, v)));
  const clearButton = h('button', { type: 'button', testid: 'clear-filters', onclick: () => {
    const blank = { status: '', window: DEFAULTS.window, limit: DEFAULTS.limit };
    for (const [k] of FIELDS) blank[k] = '';
    change(blank);
  } }, 'Clear filters');

  const banner = h('p', { class: 'banner', role: 'alert', testid: 'activity-error' });
  const summary = h('span', { class: 'summary', testid: 'results-summary', 'aria-live': 'polite' });
  const tbody = h('tbody', { testid: 'results-body' });
  const table = h('table', { class: 'results', testid: 'results-table' },
    h('thead', {}, h('tr', {},
      h('th', { scope: 'col', class: 'c-status' }, 'Status'), h('th', { scope: 'col', class: 'c-pc' }, 'PC'),
      h('th', { scope: 'col', class: 'c-job' }, 'Job'), h('th', { scope: 'col', class: 'c-time' }, 'Started'),
      h('th', { scope: 'col', class: 'c-dur' }, 'Duration'), h('th', { scope: 'col', class: 'c-exec opt' }, 'Execution'),
      h('th', { scope: 'col', class: 'c-out opt' }, 'Output'))),
    tbody);
  const newest = h('button', { type: 'button', testid: 'first-page', onclick: () => change({ before: '' }, { push: true }) }, '⇤ Newest');
  const older = h('button', { type: 'button', testid: 'next-page', onclick: () => {
    const last = rows[rows.length - 1];
    change({ before: `${last.started_at ?? ''},${last.result_id}` }, { push: true });
  } }, 'Older →');
  const refresh = h('button', { type: 'button', testid: 'refresh', onclick: () => load() }, 'Refresh');

  // A click anywhere on a row opens it (the status cell holds the real,
  // keyboard-reachable link); selecting text does not.
  tbody.addEventListener('click', (ev) => {
    if (ev.target.closest('a, button') || String(getSelection())) return;
    const tr = ev.target.closest('tr[data-result-id]');
    if (tr) navigate(href('/results/' + encodeURIComponent(tr.dataset.resultId)));
  });

  replace(main, h('section', { class: 'page activity', testid: 'activity-page' },
    h('div', { class: 'page-head' }, h('h1', {}, 'Activity'), summary, refresh),
    h('div', { class: 'tabs', role: 'group', 'aria-label': 'Status' }, tabs),
    h('form', { class: 'filters', onsubmit: (ev) => ev.preventDefault() },
      fields,
      h('label', { class: 'field narrow' }, h('span', { class: 'label' }, 'Window'), windowSelect, h('span', { class: 'field-error' })),
      h('label', { class: 'field narrow' }, h('span', { class: 'label' }, 'Per page'), limitSelect, h('span', { class: 'field-error' })),
      h('div', { class: 'field narrow' }, h('span', { class: 'label' }, '\u00a0'), clearButton, h('span', { class: 'field-error' }))),
    banner,
    h('div', { class: 'table-wrap' }, table),
    h('div', { class: 'pager' }, newest, older)));

  function syncControls() {
    for (const t of tabs) t.setAttribute('aria-pressed', String(t.dataset.testid === `status-tab-${s.status || 'all'}`));
    for (const [k] of FIELDS) if (inputs[k].value !== s[k] && document.activeElement !== inputs[k]) inputs[k].value = s[k];
    windowSelect.value = s.window;
    limitSelect.value = s.limit;
    newest.disabled = !s.before;
  }

  function change(patch, { push = false } = {}) {
    const next = { ...s, ...patch };
    if (!('before' in patch)) next.before = ''; // a new filter starts from the newest row
    s = next;
    setParams('/activity', toParams(s), { push });
    syncControls();
    load();
  }

  function clearErrors() {
    banner.textContent = '';
    for (const [k] of FIELDS) {
      fieldErrors[k].textContent = '';
      inputs[k].removeAttribute('aria-invalid');
    }
  }

  function showError(err, sent) {
    clearErrors();
    const hit = err.status === 400 ? fieldsOf(err.message, sent) : [];
    for (const k of hit) {
      fieldErrors[k].textContent = err.message;
      inputs[k].setAttribute('aria-invalid', 'true');
    }
    banner.textContent = hit.length ? 'Fix the highlighted filter to see results.' : errorText(err);
  }

  function render(list) {
    rows = list;
    const running = list.filter((r) => resultStatus(r) === 'running').length;
    const page = s.before ? 'older page' : 'newest first';
    summary.textContent = `${list.length} result${list.length === 1 ? '' : 's'} · ${page}${running ? ` · ${running} running` : ''}`;
    if (list.length === 0) {
      replace(tbody, h('tr', { class: 'empty' }, h('td', { colspan: COLUMNS }, 'No results match these filters.')));
    } else {
      replace(tbody, list.map(row));
    }
    older.disabled = list.length < Number(s.limit);
  }

  async function load() {
    cancelRefresh();
    table.classList.add('busy');
    const q = query(s);
    const res = await latest.run((signal) => api('GET', '/api/results', { query: q, signal }));
    if (!res) return;
    table.classList.remove('busy');
    if (!res.ok) {
      showError(res.error, q);
      if (!rows.length) replace(tbody, h('tr', { class: 'empty' }, h('td', { colspan: COLUMNS }, 'No results to show.')));
      table.classList.add('stale');
      older.disabled = true;
      return;
    }
    table.classList.remove('stale');
    clearErrors();
    render(Array.isArray(res.value) ? res.value : []);
    if (rows.some((r) => resultStatus(r) === 'running')) cancelRefresh = life.after(REFRESH_MS, load);
  }

  replace(tbody, h('tr', { class: 'empty' }, h('td', { colspan: COLUMNS }, 'Loading…')));
  syncControls();
  load();
  life.every(1000, () => tickElapsed(tbody));

  return {
    // Back/forward within Activity: adopt the URL's filters.
    update(p) {
      s = readState(p);
      syncControls();
      for (const [k] of FIELDS) inputs[k].value = s[k];
      load();
    },
  };
}

function row(r) {
  const status = resultStatus(r);
  const link = href('/results/' + encodeURIComponent(r.result_id));
  return h('tr', { class: `row-${status}`, testid: 'result-row', dataset: { status, resultId: r.result_id } },
    h('td', {}, h('a', { href: link, class: 'row-link', 'aria-label': `${status} on ${r.pc_id}, open result` }, exitBadge(r))),
    h('td', { class: 'mono', testid: 'cell-pc' }, r.pc_id),
    h('td', { class: 'ellipsis', title: r.version ? `${r.job_id} ${r.version}` : null }, r.job_id ?? h('span', { class: 'muted' }, 'ad hoc')),
    h('td', { class: 'num' }, timeEl(r.started_at)),
    h('td', { class: 'num' }, status === 'running' ? '' : resultDuration(r)),
    h('td', { class: 'mono opt' }, r.exec_id ? h('a', { href: href('/executions/' + encodeURIComponent(r.exec_id)), title: r.exec_id }, shortId(r.exec_id)) : h('span', { class: 'muted' }, '—')),
    h('td', { class: 'mono ellipsis out opt' }, firstLine(status === 'failure' && r.stderr ? r.stderr : r.stdout)));
}
