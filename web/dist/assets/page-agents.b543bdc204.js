// Agents: who is alive by heartbeat, and when each was last heard from.

import { h, replace } from './dom.3dd86e8f14.js';
import { api } from './api.30c3893504.js';
import { href } from './router.475a737da2.js';
import { Latest } from './lifecycle.cf1e604c6c.js';
import { timeEl, agoEl, tickAgo, errorText } from './format.913d19cc04.js';

export const title = 'Agents';

const REFRESH_MS = 5000;

export function mount(main, { life }) {
  const latest = new Latest(life);
  let agents = [];
  const banner = h('p', { class: 'banner', role: 'alert', testid: 'agents-error' });
  const summary = h('span', { class: 'summary', testid: 'agents-summary', 'aria-live': 'polite' });
  const filter = h('input', { type: 'search', placeholder: 'filter by PC, host, version', testid: 'agents-filter', 'aria-label': 'filter agents', autocomplete: 'off', oninput: render });
  const tbody = h('tbody', { testid: 'agents-body' }, h('tr', { class: 'empty' }, h('td', { colspan: 6 }, 'Loading…')));

  replace(main, h('section', { class: 'page agents', testid: 'agents-page' },
    h('div', { class: 'page-head' }, h('h1', {}, 'Agents'), summary, h('span', { class: 'spacer' }), filter),
    banner,
    h('div', { class: 'table-wrap' }, h('table', { class: 'agents', testid: 'agents-table' },
      h('thead', {}, h('tr', {},
        h('th', { scope: 'col', class: 'c-alive' }, 'State'), h('th', { scope: 'col', class: 'c-pc' }, 'PC'),
        h('th', { scope: 'col', class: 'c-host opt' }, 'Host'), h('th', { scope: 'col', class: 'c-os opt' }, 'OS'),
        h('th', { scope: 'col', class: 'c-ver opt' }, 'Agent'), h('th', { scope: 'col', class: 'c-seen' }, 'Last seen'))),
      tbody))));

  function render() {
    const q = filter.value.trim().toLowerCase();
    const shown = agents.filter((a) => !q || [a.pc_id, a.hostname, a.os_family, a.agent_version].some((v) => v && String(v).toLowerCase().includes(q)));
    const alive = agents.filter((a) => a.alive).length;
    summary.textContent = `${alive} of ${agents.length} alive`;
    replace(tbody, shown.length
      ? shown.map((a) => h('tr', { testid: 'agent-row', dataset: { pcId: a.pc_id, alive: String(Boolean(a.alive)) } },
        h('td', {}, h('span', { class: `badge ${a.alive ? 'success' : 'offline'}` }, a.alive ? 'alive' : 'offline')),
        h('td', { class: 'mono' }, h('a', { href: href('/', { pc_id: `^${a.pc_id}$` }), title: 'results of this PC' }, a.pc_id)),
        h('td', { class: 'ellipsis opt' }, a.hostname || '—'),
        h('td', { class: 'opt' }, a.os_family || '—'),
        h('td', { class: 'mono opt' }, a.agent_version || '—'),
        h('td', { class: 'num' }, timeEl(a.last_heartbeat), agoEl(a.last_heartbeat))))
      : h('tr', { class: 'empty' }, h('td', { colspan: 6 }, agents.length ? 'No agent matches.' : 'No agent has sent a heartbeat yet.')));
  }

  async function load() {
    const res = await latest.run((signal) => api('GET', '/api/agents', { signal }));
    if (!res) return;
    life.after(REFRESH_MS, load);
    if (!res.ok) {
      banner.textContent = errorText(res.error);
      return;
    }
    banner.textContent = '';
    agents = [...(res.value || [])].sort((a, b) => a.pc_id.localeCompare(b.pc_id, undefined, { numeric: true }));
    render();
  }

  life.every(1000, () => tickAgo(tbody));
  load();
}
