// Home, the landing page: the fleet at a glance. Health rollup, the last
// 24 h of results, agents online and offline, agent versions, the next
// schedules and JetStream usage, each card from its own feed, so one feed
// that fails (or a backend that lacks it) leaves the others standing.

import { h, replace } from './dom.3dd86e8f14.js';
import { api, ApiError } from './api.21ab11d035.js';
import { href } from './router.475a737da2.js';
import { Latest } from './lifecycle.cf1e604c6c.js';
import { timeEl, agoEl, tickAgo, errorText } from './format.dc80c323ac.js';

export const title = 'Home';

const REFRESH_MS = 10000;

// bytes(1536) -> '1.5 KiB'
export function bytes(n) {
  if (n == null) return '—';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = Number(n);
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i === 0 ? v : v.toFixed(1)} ${units[i]}`;
}

// versionsFrom derives upstream's /api/agents/versions from the agents
// list, for a backend without that route.
export function versionsFrom(agents) {
  const by = new Map();
  for (const a of agents || []) {
    const v = a.agent_version || null;
    const b = by.get(v) || { version: v, total: 0, active: 0 };
    b.total++;
    if (a.alive) b.active++;
    by.set(v, b);
  }
  return [...by.values()].sort((x, y) => y.total - x.total || String(x.version ?? '').localeCompare(String(y.version ?? '')));
}

// fleetHealth reads /api/health/fleet; a degraded fleet answers 503 with
// the same JSON, which is the answer, not an error.
async function fleetHealth(signal) {
  try {
    return await api('GET', '/api/health/fleet', { signal });
  } catch (err) {
    if (err instanceof ApiError && err.status === 503) {
      try {
        return JSON.parse(err.message);
      } catch {
        // not the rollup: a gateway 503
      }
    }
    throw err;
  }
}

// versionsFeed reads /api/agents/versions, or, on a backend without it,
// derives the same from the agents list (and stops asking for the route).
function versionsFeed() {
  let missing = false;
  return async (signal) => {
    if (!missing) {
      try {
        return { list: await api('GET', '/api/agents/versions', { signal }), derived: false };
      } catch (err) {
        if (!(err instanceof ApiError) || ![404, 405, 503].includes(err.status)) throw err;
        missing = err.status !== 503; // a stopped service may come back
      }
    }
    return { list: versionsFrom(await api('GET', '/api/agents', { signal })), derived: true };
  };
}

function card(testid, heading, ...body) {
  return h('section', { class: 'card', testid, 'aria-label': heading }, h('h2', {}, heading), ...body);
}

function wideCard(testid, heading, ...body) {
  const c = card(testid, heading, ...body);
  c.classList.add('wide');
  return c;
}

function stat(label, value, testid, link) {
  const v = link ? h('a', { href: link }, String(value)) : String(value);
  return h('div', { class: 'stat', testid }, h('span', { class: 'value num' }, v), h('span', { class: 'label' }, label));
}

export function mount(main, { life }) {
  const slots = {
    health: h('div', {}, 'Loading…'),
    recent: h('div', {}, 'Loading…'),
    agents: h('div', {}, 'Loading…'),
    versions: h('div', {}, 'Loading…'),
    upcoming: h('div', {}, 'Loading…'),
    jetstream: h('div', {}, 'Loading…'),
  };
  replace(main, h('section', { class: 'page home', testid: 'home-page' },
    h('div', { class: 'page-head' }, h('h1', {}, 'Home')),
    h('div', { class: 'cards' },
      card('home-health', 'Fleet health', slots.health),
      card('home-recent', 'Last 24 hours', slots.recent),
      card('home-agents', 'Agents', slots.agents),
      card('home-versions', 'Agent versions', slots.versions),
      card('home-upcoming', 'Next schedules', slots.upcoming),
      wideCard('home-jetstream', 'JetStream usage', slots.jetstream))));

  const versions = versionsFeed();
  const failed = (slot, err) => replace(slot, h('p', { class: 'banner', role: 'alert' }, errorText(err)));
  const feeds = {
    health: new Latest(life), versions: new Latest(life), upcoming: new Latest(life), jetstream: new Latest(life),
  };

  function showHealth(f) {
    const state = f.status || 'unknown';
    const badgeClass = { ok: 'success', degraded: 'failure', unknown: 'offline' }[state] || 'offline';
    const js = f.jetstream || {};
    replace(slots.health,
      h('p', {}, h('span', { class: `badge ${badgeClass}`, testid: 'health-status', dataset: { status: state } }, state),
        ' ', h('span', { class: 'muted' }, 'observed ', timeEl(f.observed_at))),
      h('p', { testid: 'health-jetstream' }, js.all_ok
        ? `JetStream: all ${js.total} resources present`
        : `JetStream: missing ${(js.missing || []).join(', ') || '?'} (${js.healthy} of ${js.total} present)`));
    const r = f.recent_results || {};
    replace(slots.recent, h('div', { class: 'stats' },
      stat('results', r.total ?? 0, 'recent-total', href('/activity', { window: '24h' })),
      stat('failed', r.failed ?? 0, 'recent-failed', href('/activity', { status: 'failure', window: '24h' })),
      stat('running', r.running ?? 0, 'recent-running', href('/activity', { status: 'running', window: '24h' })),
      r.skipped != null ? stat('skipped', r.skipped, 'recent-skipped') : null));
    const a = f.agents || {};
    replace(slots.agents, h('div', { class: 'stats' },
      stat('online', a.active ?? 0, 'agents-online', href('/agents')),
      stat('offline', a.stale ?? 0, 'agents-offline', href('/agents')),
      stat('known', a.known ?? 0, 'agents-known')));
  }

  function showVersions({ list, derived }) {
    const rows = (list || []).map((v) => h('tr', { testid: 'version-row', dataset: { version: v.version ?? '' } },
      h('td', { class: 'mono ellipsis', title: v.version ?? null }, v.version ?? h('span', { class: 'muted' }, 'unknown')),
      h('td', { class: 'num' }, String(v.active)), h('td', { class: 'num' }, String(v.total))));
    replace(slots.versions, rows.length
      ? h('table', { class: 'mini' }, h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Version'), h('th', { scope: 'col', class: 'num w-n' }, 'Online'), h('th', { scope: 'col', class: 'num w-n' }, 'Total'))), h('tbody', {}, rows))
      : h('p', { class: 'muted' }, 'No agent yet.'),
    derived ? h('p', { class: 'muted note' }, 'from the agents list') : null);
  }

  function showUpcoming(list) {
    const rows = (list || []).map((u) => h('tr', { testid: 'upcoming-row', dataset: { scheduleId: u.id } },
      h('td', { class: 'mono ellipsis', title: u.id }, h('a', { href: href('/schedules') }, u.id)),
      h('td', { class: 'mono ellipsis opt', title: u.job_id }, u.job_id),
      h('td', { class: 'num' }, timeEl(u.next_run), agoEl(u.next_run))));
    replace(slots.upcoming, rows.length
      ? h('table', { class: 'mini' }, h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Schedule'), h('th', { scope: 'col', class: 'opt' }, 'Job'), h('th', { scope: 'col', class: 'w-when' }, 'Next run'))), h('tbody', {}, rows))
      : h('p', { class: 'muted' }, 'No enabled schedule.'));
  }

  function showJetStream(st) {
    const all = [
      ...(st.streams || []).map((p) => ['stream', p]),
      ...(st.kv_buckets || []).map((p) => ['kv', p]),
      ...(st.object_stores || []).map((p) => ['object', p]),
    ].filter(([, p]) => p.exists);
    const rows = all.map(([kind, p]) => {
      const pct = p.max_bytes ? Math.min(100, (100 * (p.bytes || 0)) / p.max_bytes) : null;
      return h('tr', { testid: 'jetstream-row', dataset: { name: p.name, kind } },
        h('td', { class: 'mono ellipsis', title: `${kind} ${p.name}` }, p.name),
        h('td', { class: 'num opt' }, (p.messages ?? 0).toLocaleString()),
        h('td', { class: 'num' }, bytes(p.bytes), p.max_bytes ? h('span', { class: 'muted' }, ` / ${bytes(p.max_bytes)}`) : null),
        h('td', {}, pct == null ? h('span', { class: 'muted' }, '—')
          : h('meter', { min: 0, max: 100, value: pct.toFixed(1), title: `${pct.toFixed(1)} % of the limit`, 'aria-label': `${p.name} ${pct.toFixed(0)} % full` })));
    });
    replace(slots.jetstream, h('div', { class: 'scroll-x' }, h('table', { class: 'mini' },
      h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Resource'), h('th', { scope: 'col', class: 'num w-n opt' }, 'Messages'), h('th', { scope: 'col', class: 'num w-bytes' }, 'Bytes'), h('th', { scope: 'col', class: 'w-meter' }, 'Used'))),
      h('tbody', {}, rows))));
  }

  async function load() {
    const run = async (feed, cardSlots, fn, show) => {
      const res = await feeds[feed].run(fn);
      if (!res) return;
      if (res.ok) show(res.value);
      else for (const slot of cardSlots) failed(slot, res.error);
    };
    await Promise.all([
      // One feed fills three cards: its failure shows in each.
      run('health', [slots.health, slots.recent, slots.agents], fleetHealth, showHealth),
      run('versions', [slots.versions], versions, showVersions),
      run('upcoming', [slots.upcoming], (signal) => api('GET', '/api/schedules/upcoming', { query: { limit: 5 }, signal }), showUpcoming),
      run('jetstream', [slots.jetstream], (signal) => api('GET', '/api/jetstream/status', { signal }), showJetStream),
    ]);
    life.after(REFRESH_MS, load);
  }

  life.every(1000, () => tickAgo(main));
  load();
}
