// Schedules: when each job fires (upstream's when, in words), how far each
// schedule has covered its target, the next run; enable or disable one,
// preview its next fires, add or edit one as YAML; freeze the fleet.

import { h, replace } from './dom.3dd86e8f14.js';
import { api } from './api.21ab11d035.js';
import { hasRole } from './auth.4b529e8847.js';
import { Latest } from './lifecycle.cf1e604c6c.js';
import { timeEl, agoEl, tickAgo, errorText } from './format.dc80c323ac.js';
import { confirmDialog, yamlDialog, modal } from './dialog.2b0c444602.js';
import { toYAML } from './yaml.124ddd447c.js';

export const title = 'Schedules';

const TEMPLATE = `id: my-schedule
when: {per_pc: once}  # or {per_pc: {every: 6h}}, {per_target: once},
                      # {calendar: {at: "09:00", days: [mon-fri]}} (also tue#2, friL),
                      # {calendar: {at: "2026-06-10 09:00"}} (one shot)
job_id: my-job
target: {all: true}   # or {groups: [g1]} / {pcs: [PC1, PC2]}
tz: local             # or utc
enabled: true
# constraints: {window: "22:00-05:00", skip_dates: [2026-12-25], max_concurrent: 50}
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

const DAYS = { sun: 'Sun', mon: 'Mon', tue: 'Tue', wed: 'Wed', thu: 'Thu', fri: 'Fri', sat: 'Sat',
  0: 'Sun', 1: 'Mon', 2: 'Tue', 3: 'Wed', 4: 'Thu', 5: 'Fri', 6: 'Sat', 7: 'Sun' };
const NTH = { 1: '1st', 2: '2nd', 3: '3rd', 4: '4th', 5: '5th' };

function dayWord(d) {
  return DAYS[String(d).toLowerCase()] || String(d);
}

function daysText(tok) {
  const t = String(tok);
  if (t === '*') return 'every day';
  let m = t.match(/^(\w+)#([1-5])$/);
  if (m) return `${NTH[m[2]]} ${dayWord(m[1])}`;
  m = t.match(/^(\w+)[lL]$/);
  if (m) return `last ${dayWord(m[1])}`;
  m = t.match(/^(\w+)-(\w+)$/);
  if (m) return `${dayWord(m[1])}-${dayWord(m[2])}`;
  return dayWord(t);
}

// "6h" -> "6 h", "1h30m" -> "1 h 30 m".
function durText(d) {
  return String(d).replace(/(\d+)\s*([a-zA-Z]+)/g, '$1 $2 ').trim();
}

// whenText is a schedule's cadence in words: "each PC once", "every 6 h
// per PC", "Mon-Fri 09:00 local"; the cron extension shows its expression.
export function whenText(sc) {
  const w = sc.when;
  const tz = sc.tz || 'local';
  const agents = sc.runs_on === 'agent' ? ' (ticked by the agents)' : '';
  if (!w) return sc.cron ? `cron ${sc.cron} ${sc.tz || 'utc'}` : '—';
  const per = (p, unit) => {
    if (p === 'once') return unit === 'PC' ? 'each PC once' : 'the target once';
    if (p === 'once_per_version') return 'each PC once per job version';
    return `every ${durText(p?.every)} per ${unit}`;
  };
  if (w.per_pc !== undefined) return per(w.per_pc, 'PC') + agents;
  if (w.per_target !== undefined) return per(w.per_target, 'target') + agents;
  if (w.calendar) {
    const { at, days } = w.calendar;
    if (/^\d{4}[-/]/.test(at)) return `once at ${at} ${tz}${agents}`;
    const on = days?.length ? days.map(daysText).join(', ') : 'daily';
    return `${on} ${at} ${tz}${agents}`;
  }
  if (w.on) return `on ${w.on.join(', ')} (agents)`;
  return '—';
}

const CADENCES = [
  ['per_pc_once', 'Each PC once'], ['per_pc_every', 'Each PC, every…'],
  ['per_target_once', 'The target once'], ['per_target_every', 'The target, every…'],
  ['calendar', 'At a time, on some days'], ['oneshot', 'Once, at a date and time'],
];

function splitList(v) {
  return v.split(/[\s,]+/).map((x) => x.trim()).filter(Boolean);
}

// whenOf builds upstream's when from the form's cadence fields.
export function whenOf({ cadence, every, at, days, date }) {
  switch (cadence) {
    case 'per_pc_once': return { per_pc: 'once' };
    case 'per_pc_every': return { per_pc: { every } };
    case 'per_target_once': return { per_target: 'once' };
    case 'per_target_every': return { per_target: { every } };
    case 'calendar': return days.length ? { calendar: { at, days } } : { calendar: { at } };
    default: return { calendar: { at: date } };
  }
}

// wordsDialog adds a schedule from a form that says its cadence in words as
// it is filled in; the server validates it as it does the YAML.
async function wordsDialog(jobs) {
  const field = (label, input) => h('label', { class: 'field' }, h('span', { class: 'label' }, label), input);
  const id = h('input', { type: 'text', name: 'id', required: true, testid: 'words-id', autocomplete: 'off' });
  const job = h('select', { name: 'job', testid: 'words-job' }, jobs.map((j) => h('option', { value: j }, j)));
  const cadence = h('select', { name: 'cadence', testid: 'words-cadence' }, CADENCES.map(([v, t]) => h('option', { value: v }, t)));
  const every = h('input', { type: 'text', name: 'every', value: '6h', testid: 'words-every', autocomplete: 'off', 'aria-label': 'every' });
  const at = h('input', { type: 'text', name: 'at', value: '09:00', testid: 'words-at', autocomplete: 'off', 'aria-label': 'at' });
  const days = h('input', { type: 'text', name: 'days', value: 'mon-fri', testid: 'words-days', autocomplete: 'off', placeholder: 'mon-fri, tue#2, friL (empty: daily)' });
  const date = h('input', { type: 'text', name: 'date', value: '2026-12-31 09:00', testid: 'words-date', autocomplete: 'off', 'aria-label': 'date and time' });
  const target = h('input', { type: 'text', name: 'target', value: 'all', testid: 'words-target', autocomplete: 'off', placeholder: 'all, group:lab, or PC names' });
  const tz = h('select', { name: 'tz', testid: 'words-tz' }, h('option', { value: 'local' }, 'local'), h('option', { value: 'utc' }, 'utc'));
  const words = h('p', { class: 'muted', testid: 'words-preview', 'aria-live': 'polite' });
  const parts = { every: field('Every', every), at: field('At', at), days: field('Days', days), date: field('Date and time', date) };
  const doc = () => {
    const t = target.value.trim();
    const tgt = t === '' || t === 'all' ? { all: true }
      : t.startsWith('group:') ? { groups: splitList(t.slice(6)) } : { pcs: splitList(t) };
    return {
      id: id.value.trim(), job_id: job.value, target: tgt, tz: tz.value,
      when: whenOf({ cadence: cadence.value, every: every.value.trim(), at: at.value.trim(), days: splitList(days.value), date: date.value.trim() }),
    };
  };
  const update = () => {
    const c = cadence.value;
    parts.every.hidden = !c.endsWith('_every');
    parts.at.hidden = parts.days.hidden = c !== 'calendar';
    parts.date.hidden = c !== 'oneshot';
    words.textContent = `Fires: ${whenText(doc())}`;
  };
  for (const el of [cadence, every, at, days, date, tz]) el.addEventListener('input', update);
  update();
  return modal({
    title: 'Add schedule', testid: 'words-dialog', submitLabel: 'Save',
    body: [field('Id', id), field('Job', job), field('When', cadence), parts.every, parts.at, parts.days, parts.date,
      field('Target', target), field('Time zone', tz), words],
    onSubmit: () => api('POST', '/api/schedules', { body: doc() }),
  });
}

// coverageCell: PCs done, due and in flight for the schedule's job.
function coverageCell(cov) {
  if (!cov) return h('span', { class: 'muted' }, '—');
  const due = cov.pending + cov.fail;
  return h('span', { testid: 'schedule-coverage', title: `${cov.ok} ok, ${cov.fail} failed, ${cov.pending} never run, ${cov.running} running, of ${cov.total}` },
    `${cov.ok}/${cov.total} done`,
    due ? h('span', { class: 'muted' }, ` · ${due} due`) : null,
    cov.running ? h('span', { class: 'muted' }, ` · ${cov.running} in flight`) : null);
}

// freezeText describes a stored freeze.
function freezeText(f) {
  const bounds = f.from && f.until ? ` from ${f.from} until ${f.until}` : f.until ? ` until ${f.until}` : f.from ? ` from ${f.from}` : ' until it is lifted';
  return `Fleet frozen${bounds} (${f.tz || 'local'}): no schedule fires${f.reason ? ` — ${f.reason}` : ''}.`;
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
  if (!enabled) return h('span', { class: 'muted' }, 'disabled');
  if (sc.runs_on === 'agent' || sc.when?.on) return h('span', { class: 'muted' }, 'on the agents');
  if (sc.when?.per_pc !== undefined || sc.when?.per_target !== undefined) return h('span', { class: 'muted' }, 'polls every minute');
  return h('span', { class: 'muted' }, '—');
}

export function mount(main, { life }) {
  const latest = new Latest(life);
  const banner = h('p', { class: 'banner', role: 'alert', testid: 'schedules-error' });
  const freezeBanner = h('p', { class: 'banner freeze', role: 'status', testid: 'freeze-banner', hidden: true });
  const freezeButton = h('button', { type: 'button', testid: 'freeze-toggle', 'data-min-role': 'operator', onclick: () => toggleFreeze() }, 'Freeze fleet');
  let frozen = null;
  const tbody = h('tbody', { testid: 'schedules-body' }, h('tr', { class: 'empty' }, h('td', { colspan: 7 }, 'Loading…')));
  const previews = new Map(); // schedule id -> fires, kept across refreshes
  const notes = new Map(); // schedule id -> the preview's note (no discrete fires)
  let cancelRefresh = () => {};

  replace(main, h('section', { class: 'page schedules', testid: 'schedules-page' },
    h('div', { class: 'page-head' }, h('h1', {}, 'Schedules'), h('span', { class: 'spacer' }),
      freezeButton,
      h('button', { type: 'button', testid: 'add-schedule-words', 'data-min-role': 'operator', onclick: () => addInWords() }, 'Add in words'),
      h('button', { type: 'button', class: 'primary', testid: 'add-schedule', 'data-min-role': 'operator', onclick: () => edit(null) }, 'Add schedule')),
    freezeBanner,
    banner,
    h('div', { class: 'table-wrap' }, h('table', { class: 'schedules', testid: 'schedules-table' },
      h('thead', {}, h('tr', {},
        h('th', { scope: 'col', class: 'c-id' }, 'Schedule'), h('th', { scope: 'col', class: 'c-job opt' }, 'Job'),
        h('th', { scope: 'col', class: 'c-cron opt' }, 'When'), h('th', { scope: 'col', class: 'c-target opt' }, 'Target'),
        h('th', { scope: 'col', class: 'c-coverage opt' }, 'Coverage'),
        h('th', { scope: 'col', class: 'c-next' }, 'Next run'),
        h('th', { scope: 'col', class: 'c-actions' }, h('span', { class: 'sr-only' }, 'Actions')))),
      tbody))));

  function scheduleRows(sc, next, cov) {
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
      h('td', { class: 'opt ellipsis', testid: 'schedule-when', title: sc.when ? JSON.stringify(sc.when) : sc.cron }, whenText(sc)),
      h('td', { class: 'opt ellipsis' }, targetText(sc.target)),
      h('td', { class: 'opt wrap' }, coverageCell(cov)),
      h('td', { class: 'num', testid: 'next-run' }, nextCell(sc, enabled, next)),
      h('td', {}, h('div', { class: 'actions' },
        toggle,
        h('button', { type: 'button', class: 'small', testid: 'preview-schedule', 'aria-expanded': String(previews.has(sc.id)), onclick: () => togglePreview(sc) }, 'Preview'),
        h('button', { type: 'button', class: 'small', testid: 'edit-schedule', 'data-min-role': 'operator', onclick: () => edit(sc) }, 'Edit'),
        h('button', { type: 'button', class: 'small danger-text', testid: 'delete-schedule', 'data-min-role': 'operator', onclick: () => remove(sc) }, 'Delete'))));
    if (!previews.has(sc.id)) return [row];
    const fires = previews.get(sc.id);
    return [row, h('tr', { class: 'preview-row' }, h('td', { colspan: 7 },
      h('div', { class: 'preview', testid: 'schedule-preview', dataset: { scheduleId: sc.id } },
        h('span', { class: 'label' }, `Next ${PREVIEW_COUNT} fires:`),
        Array.isArray(fires)
          ? (fires.length ? h('ol', {}, fires.map((f) => h('li', { class: 'num' }, timeEl(f))))
            : h('span', { class: 'muted' }, notes.get(sc.id) || 'no upcoming fires'))
          : h('span', { class: 'form-error' }, fires))))];
  }

  async function load() {
    cancelRefresh();
    const res = await latest.run(async (signal) => {
      const [list, upcoming, coverage, freeze] = await Promise.all([
        api('GET', '/api/schedules', { signal }),
        api('GET', '/api/schedules/upcoming', { query: { limit: 1000 }, signal }).catch(() => []),
        api('GET', '/api/schedules/coverage', { signal }).catch(() => []),
        api('GET', '/api/freeze', { signal }).catch(() => null),
      ]);
      return { list: list || [], upcoming: upcoming || [], coverage: coverage || [], freeze };
    });
    if (!res) return;
    cancelRefresh = life.after(REFRESH_MS, load);
    if (!res.ok) {
      banner.textContent = errorText(res.error);
      return;
    }
    banner.textContent = '';
    frozen = res.value.freeze;
    freezeBanner.hidden = !frozen;
    freezeBanner.textContent = frozen ? freezeText(frozen) : '';
    freezeButton.textContent = frozen ? 'Lift freeze' : 'Freeze fleet';
    freezeButton.setAttribute('aria-pressed', String(Boolean(frozen)));
    const cov = new Map(res.value.coverage.map((c) => [c.id, c]));
    const next = new Map(res.value.upcoming.map((u) => [u.id, u.next_run]));
    const list = [...res.value.list].sort((a, b) => a.id.localeCompare(b.id));
    replace(tbody, list.length
      ? list.flatMap((sc) => scheduleRows(sc, sc.next_run ?? next.get(sc.id), cov.get(sc.id)))
      : h('tr', { class: 'empty' }, h('td', { colspan: 7 }, 'No schedules yet: add one.')));
  }

  async function addInWords() {
    const jobs = await api('GET', '/api/jobs').then((l) => (l || []).map((j) => j.id).sort(), () => []);
    if (await wordsDialog(jobs)) load();
  }

  async function toggleFreeze() {
    const lifting = Boolean(frozen);
    const ok = await confirmDialog({
      title: lifting ? 'Lift the freeze' : 'Freeze the fleet',
      message: lifting ? 'Schedules fire again from their next tick.' : 'No schedule fires, on the backend or on the agents, until the freeze is lifted.',
      confirmLabel: lifting ? 'Lift freeze' : 'Freeze', danger: !lifting, testid: 'freeze-dialog',
    });
    if (!ok) return;
    const err = await (lifting
      ? api('DELETE', '/api/freeze')
      : api('PUT', '/api/freeze', { body: { reason: 'frozen from the dashboard', tz: 'local' } })).then(() => null, (e) => e);
    await load();
    if (err) banner.textContent = errorText(err);
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
        if (p?.note) notes.set(sc.id, p.note);
      } catch (err) {
        previews.set(sc.id, errorText(err));
      }
    }
    await load();
  }

  async function edit(sc) {
    let text = TEMPLATE;
    if (sc) {
      // The YAML as the operator wrote it (comments kept), when the
      // server has it; else the stored JSON as YAML.
      const mirrored = sc.error ? null : await api('GET', `/api/schedules/${encodeURIComponent(sc.id)}/yaml`, { text: true }).catch(() => null);
      if (mirrored) {
        text = mirrored;
      } else {
        const full = await api('GET', `/api/schedules/${encodeURIComponent(sc.id)}`).catch(() => sc);
        const { next_run, error, ...stored } = full; // derived, not part of the schedule
        text = toYAML(stored);
      }
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
