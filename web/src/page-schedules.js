// Schedules: cron entries that fire jobs, with their next run; enable or
// disable one, preview its next fires, add or edit one as YAML.

import { h, replace } from './dom.js';
import { api } from './api.js';
import { hasRole } from './auth.js';
import { Latest } from './lifecycle.js';
import { timeEl, agoEl, tickAgo, errorText } from './format.js';
import { confirmDialog, yamlDialog } from './dialog.js';
import { toYAML } from './yaml.js';

export const title = 'Schedules';

const TEMPLATE = `id: my-schedule
cron: "0 0 * * * *"   # sec min hour day month weekday
enabled: true
job_id: my-job
target: {all: true}   # or {groups: [g1]} / {pcs: [PC1, PC2]}
`;
const PREVIEW_COUNT = 5;
const REFRESH_MS = 15000;

export function targetText(t) {
  if (!t) return '—';
  if (t.all) return 'all agents';
  if (t.groups?.length) return `group${t.groups.length > 1 ? 's' : ''} ${t.groups.join(', ')}`;
  if (t.pcs?.length) return t.pcs.length > 3 ? `${t.pcs.length} PCs` : t.pcs.join(', ');
  return '—';
}

// nextCell: the next run, or, for a stored schedule the engine cannot use
// (the API's "error": written by something that did not validate it), the
// reason in its place, since it will not fire.
function nextCell(sc, enabled, next) {
  if (sc.error) {
    return h('span', { class: 'badge failure schedule-error', testid: 'schedule-error', title: String(sc.error) },
      h('span', { 'aria-hidden': 'true' }, '⚠ '), h('span', { class: 'sr-only' }, 'error: '), String(sc.error));
  }
  if (enabled && next) return [timeEl(next), agoEl(next)];
  return h('span', { class: 'muted' }, enabled ? '—' : 'disabled');
}

export function mount(main, { life }) {
  const latest = new Latest(life);
  const banner = h('p', { class: 'banner', role: 'alert', testid: 'schedules-error' });
  const tbody = h('tbody', { testid: 'schedules-body' }, h('tr', { class: 'empty' }, h('td', { colspan: 6 }, 'Loading…')));
  const previews = new Map(); // schedule id -> fires, kept across refreshes
  let cancelRefresh = () => {};

  replace(main, h('section', { class: 'page schedules', testid: 'schedules-page' },
    h('div', { class: 'page-head' }, h('h1', {}, 'Schedules'), h('span', { class: 'spacer' }),
      h('button', { type: 'button', class: 'primary', testid: 'add-schedule', 'data-min-role': 'operator', onclick: () => edit(null) }, 'Add schedule')),
    banner,
    h('div', { class: 'table-wrap' }, h('table', { class: 'schedules', testid: 'schedules-table' },
      h('thead', {}, h('tr', {},
        h('th', { scope: 'col', class: 'c-id' }, 'Schedule'), h('th', { scope: 'col', class: 'c-job opt' }, 'Job'),
        h('th', { scope: 'col', class: 'c-cron opt' }, 'Cron'), h('th', { scope: 'col', class: 'c-target opt' }, 'Target'),
        h('th', { scope: 'col', class: 'c-next' }, 'Next run'),
        h('th', { scope: 'col', class: 'c-actions' }, h('span', { class: 'sr-only' }, 'Actions')))),
      tbody))));

  function scheduleRows(sc, next) {
    const enabled = sc.enabled !== false;
    const toggle = h('button', {
      type: 'button', role: 'switch', 'aria-checked': String(enabled), class: `toggle small ${enabled ? 'on' : 'off'}`,
      testid: 'toggle-schedule', title: enabled ? 'enabled: click to disable' : 'disabled: click to enable',
      disabled: !hasRole('operator'), // a viewer sees the state, cannot change it
      onclick: () => setEnabled(sc, !enabled, toggle),
    }, enabled ? 'Enabled' : 'Disabled');
    const row = h('tr', { testid: 'schedule-row', class: sc.error ? 'broken' : null, dataset: { scheduleId: sc.id, enabled: String(enabled), error: sc.error ? 'true' : null } },
      h('td', { class: 'mono ellipsis', title: sc.id }, sc.id),
      h('td', { class: 'mono ellipsis opt', title: sc.job_id }, sc.job_id),
      h('td', { class: 'mono opt ellipsis', title: sc.tz ? `${sc.cron} (${sc.tz})` : sc.cron }, sc.cron, sc.tz ? h('span', { class: 'muted' }, ` ${sc.tz}`) : null),
      h('td', { class: 'opt ellipsis' }, targetText(sc.target)),
      h('td', { class: 'num', testid: 'next-run' }, nextCell(sc, enabled, next)),
      h('td', {}, h('div', { class: 'actions' },
        toggle,
        h('button', { type: 'button', class: 'small', testid: 'preview-schedule', 'aria-expanded': String(previews.has(sc.id)), onclick: () => togglePreview(sc) }, 'Preview'),
        h('button', { type: 'button', class: 'small', testid: 'edit-schedule', 'data-min-role': 'operator', onclick: () => edit(sc) }, 'Edit'),
        h('button', { type: 'button', class: 'small danger-text', testid: 'delete-schedule', 'data-min-role': 'operator', onclick: () => remove(sc) }, 'Delete'))));
    if (!previews.has(sc.id)) return [row];
    const fires = previews.get(sc.id);
    return [row, h('tr', { class: 'preview-row' }, h('td', { colspan: 6 },
      h('div', { class: 'preview', testid: 'schedule-preview', dataset: { scheduleId: sc.id } },
        h('span', { class: 'label' }, `Next ${PREVIEW_COUNT} fires:`),
        Array.isArray(fires)
          ? h('ol', {}, fires.map((f) => h('li', { class: 'num' }, timeEl(f))))
          : h('span', { class: 'form-error' }, fires))))];
  }

  async function load() {
    cancelRefresh();
    const res = await latest.run(async (signal) => {
      const [list, upcoming] = await Promise.all([
        api('GET', '/api/schedules', { signal }),
        api('GET', '/api/schedules/upcoming', { query: { limit: 1000 }, signal }).catch(() => []),
      ]);
      return { list: list || [], upcoming: upcoming || [] };
    });
    if (!res) return;
    cancelRefresh = life.after(REFRESH_MS, load);
    if (!res.ok) {
      banner.textContent = errorText(res.error);
      return;
    }
    banner.textContent = '';
    const next = new Map(res.value.upcoming.map((u) => [u.id, u.next_run]));
    const list = [...res.value.list].sort((a, b) => a.id.localeCompare(b.id));
    replace(tbody, list.length
      ? list.flatMap((sc) => scheduleRows(sc, sc.next_run ?? next.get(sc.id)))
      : h('tr', { class: 'empty' }, h('td', { colspan: 6 }, 'No schedules yet: add one.')));
  }

  async function setEnabled(sc, enabled, button) {
    button.disabled = true;
    const err = await api('POST', `/api/schedules/${encodeURIComponent(sc.id)}/${enabled ? 'enable' : 'disable'}`).then(() => null, (e) => e);
    await load();
    if (err) banner.textContent = errorText(err); // after the reload, which clears the banner
  }

  async function togglePreview(sc) {
    if (previews.has(sc.id)) {
      previews.delete(sc.id);
    } else {
      try {
        const p = await api('GET', `/api/schedules/${encodeURIComponent(sc.id)}/preview`, { query: { count: PREVIEW_COUNT } });
        previews.set(sc.id, p?.fires || []);
      } catch (err) {
        previews.set(sc.id, errorText(err));
      }
    }
    await load();
  }

  async function edit(sc) {
    let text = TEMPLATE;
    if (sc) {
      const full = await api('GET', `/api/schedules/${encodeURIComponent(sc.id)}`).catch(() => sc);
      const { next_run, error, ...stored } = full; // derived, not part of the schedule
      text = toYAML(stored);
    }
    const saved = await yamlDialog({
      title: sc ? `Edit schedule ${sc.id}` : 'Add schedule',
      text,
      save: (t) => api('POST', '/api/schedules', { body: t, contentType: 'application/yaml' }),
    });
    if (saved) load();
  }

  async function remove(sc) {
    const ok = await confirmDialog({ title: 'Delete schedule', message: `Delete schedule ${sc.id}? It stops firing.`, confirmLabel: 'Delete', danger: true });
    if (!ok) return;
    const err = await api('DELETE', `/api/schedules/${encodeURIComponent(sc.id)}`).then(() => null, (e) => e);
    await load();
    if (err) banner.textContent = errorText(err);
  }

  life.every(1000, () => tickAgo(tbody));
  load();
}
