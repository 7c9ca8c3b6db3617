// Agents: the fleet roster from heartbeats, filtered, sorted and paged by the
// server (GET /api/agents with its X-Total-Count and online/offline counts,
// each row with its groups). Every filter is kept in the URL.

import { h, replace } from './dom.3dd86e8f14.js';
import { apiFull } from './api.21ab11d035.js';
import { href, setParams } from './router.475a737da2.js';
import { Latest } from './lifecycle.cf1e604c6c.js';
import { timeEl, agoEl, tickAgo, errorText } from './format.dc80c323ac.js';

export const title = 'Agents';

const REFRESH_MS = 5000;
const PAGE_SIZES = [50, 200, 1000];
const SORTS = [
  ['pc_id', 'PC'], ['hostname', 'Host'], ['agent_version', 'Agent version'],
  ['last_heartbeat', 'Last seen'], ['updated_at', 'Last written'], ['os_family', 'OS'],
];

export function mount(main, { params, life }) {
  const latest = new Latest(life);
  const state = {
    q: params.get('q') || '',
    status: params.get('status') || '',
    version: params.get('version') || '',
    user: params.get('user') || '',
    sort: params.get('sort') || 'pc_id',
    dir: params.get('dir') || '',
    limit: Number(params.get('limit')) || PAGE_SIZES[0],
    offset: Number(params.get('offset')) || 0,
  };
  let debounce = () => {};

  const banner = h('p', { class: 'banner', role: 'alert', testid: 'agents-error' });
  const summary = h('span', { class: 'summary', testid: 'agents-summary', 'aria-live': 'polite' });
  const tabs = h('div', { class: 'tabs', role: 'group', 'aria-label': 'status' });
  const input = (key, label, placeholder) => h('label', { class: 'field' }, h('span', { class: 'label' }, label),
    h('input', {
      type: 'search', value: state[key], placeholder, testid: `agents-${key}`, autocomplete: 'off', spellcheck: 'false',
      oninput: (e) => {
        state[key] = e.target.value;
        state.offset = 0;
        debounce();
        debounce = life.after(300, () => load());
      },
    }));
  const sortSel = h('select', { testid: 'agents-sort', 'aria-label': 'sort by', onchange: (e) => { state.sort = e.target.value; state.offset = 0; load(); } },
    SORTS.map(([v, l]) => h('option', { value: v, selected: state.sort === v }, l)));
  const dirBtn = h('button', { type: 'button', class: 'small', testid: 'agents-dir', onclick: () => { state.dir = effectiveDir() === 'desc' ? 'asc' : 'desc'; load(); } });
  const sizeSel = h('select', { testid: 'agents-limit', 'aria-label': 'page size', onchange: (e) => { state.limit = Number(e.target.value); state.offset = 0; load(); } },
    PAGE_SIZES.map((n) => h('option', { value: String(n), selected: state.limit === n }, `${n} per page`)));
  const prev = h('button', { type: 'button', class: 'small', testid: 'agents-prev', onclick: () => { state.offset = Math.max(0, state.offset - state.limit); load(); } }, '← Previous');
  const next = h('button', { type: 'button', class: 'small', testid: 'agents-next', onclick: () => { state.offset += state.limit; load(); } }, 'Next →');
  const pageInfo = h('span', { class: 'muted num', testid: 'agents-page-info' });
  const tbody = h('tbody', { testid: 'agents-body' }, h('tr', { class: 'empty' }, h('td', { colspan: 7 }, 'Loading…')));

  replace(main, h('section', { class: 'page agents', testid: 'agents-page' },
    h('div', { class: 'page-head' }, h('h1', {}, 'Agents'), summary,
      h('a', { href: '#/groups', testid: 'agents-groups-link' }, 'Groups')),
    tabs,
    h('div', { class: 'filters' },
      input('q', 'PC or host', 'regex, e.g. ^LAB'), input('version', 'Agent version', 'regex'), input('user', 'Logged-on user', 'regex'),
      h('label', { class: 'field' }, h('span', { class: 'label' }, 'Sort'), h('span', { class: 'actions' }, sortSel, dirBtn)),
      h('label', { class: 'field' }, h('span', { class: 'label' }, 'Page'), sizeSel)),
    banner,
    h('div', { class: 'table-wrap' }, h('table', { class: 'agents', testid: 'agents-table' },
      h('thead', {}, h('tr', {},
        h('th', { scope: 'col', class: 'c-alive' }, 'State'), h('th', { scope: 'col', class: 'c-pc' }, 'PC'),
        h('th', { scope: 'col', class: 'c-host opt' }, 'Host'), h('th', { scope: 'col', class: 'c-os opt' }, 'OS'),
        h('th', { scope: 'col', class: 'c-ver opt' }, 'Agent'), h('th', { scope: 'col', class: 'c-groups' }, 'Groups'),
        h('th', { scope: 'col', class: 'c-seen' }, 'Last seen'))),
      tbody)),
    h('div', { class: 'pager' }, pageInfo, prev, next)));

  function effectiveDir() {
    return state.dir || (state.sort === 'updated_at' ? 'desc' : 'asc');
  }

  function renderTabs(online, offline) {
    const tab = (value, label, n) => h('button', {
      type: 'button', class: 'tab', 'aria-pressed': String(state.status === value), testid: `agents-status-${value || 'all'}`,
      onclick: () => { state.status = value; state.offset = 0; load(); },
    }, label, n == null ? null : h('span', { class: 'muted' }, ` ${n}`));
    const all = online != null && offline != null ? online + offline : null;
    replace(tabs, tab('', 'All', all), tab('online', 'Online', online), tab('offline', 'Offline', offline));
  }

  function render(rows, total, online, offline) {
    renderTabs(online, offline);
    dirBtn.textContent = effectiveDir() === 'desc' ? '↓ desc' : '↑ asc';
    summary.textContent = `${online} online · ${offline} offline`;
    const first = total ? state.offset + 1 : 0;
    pageInfo.textContent = `${first}–${state.offset + rows.length} of ${total}`;
    prev.disabled = state.offset === 0;
    next.disabled = state.offset + rows.length >= total;
    replace(tbody, rows.length
      ? rows.map((a) => h('tr', { testid: 'agent-row', dataset: { pcId: a.pc_id, alive: String(Boolean(a.alive)) } },
        h('td', {}, h('span', { class: `badge ${a.alive ? 'success' : 'offline'}` }, a.alive ? 'online' : 'offline')),
        h('td', { class: 'mono ellipsis' }, h('a', { href: href(`/agents/${encodeURIComponent(a.pc_id)}`), testid: 'agent-link', title: a.pc_id }, a.pc_id)),
        h('td', { class: 'ellipsis opt' }, a.hostname || '—'),
        h('td', { class: 'opt' }, a.os_family || '—'),
        h('td', { class: 'mono opt' }, a.agent_version || '—'),
        h('td', { class: 'ellipsis', testid: 'agent-groups' }, (a.groups || []).map((g) =>
          h('a', { class: 'chip', href: href('/groups', { name: g }) }, g))),
        h('td', { class: 'num' }, timeEl(a.last_heartbeat), agoEl(a.last_heartbeat))))
      : h('tr', { class: 'empty' }, h('td', { colspan: 7 }, total || state.q || state.version || state.user || state.status ? 'No agent matches.' : 'No agent has sent a heartbeat yet.')));
  }

  async function load() {
    debounce();
    const query = { q: state.q, status: state.status, version: state.version, user: state.user, sort: state.sort, dir: state.dir, limit: state.limit, offset: state.offset };
    setParams('/agents', Object.fromEntries(Object.entries(query).filter(([k, v]) => v !== '' && !(k === 'offset' && v === 0) && !(k === 'limit' && v === PAGE_SIZES[0]) && !(k === 'sort' && v === 'pc_id'))));
    const res = await latest.run((signal) => apiFull('GET', '/api/agents', { query, signal }));
    if (!res) return;
    life.after(REFRESH_MS, load);
    if (!res.ok) {
      banner.textContent = errorText(res.error);
      return;
    }
    banner.textContent = '';
    const list = res.value;
    const n = (k) => Number(list.headers.get(k) || 0);
    render(list.value || [], n('X-Total-Count'), n('X-Online-Count'), n('X-Offline-Count'));
  }

  life.every(1000, () => tickAgo(tbody));
  load();

}
