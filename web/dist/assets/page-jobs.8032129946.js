// Jobs: the catalog of manifests; run one now on every agent, some groups or
// listed PCs; add or edit one as YAML (the form operators already write).

import { h, replace } from './dom.3dd86e8f14.js';
import { api } from './api.21ab11d035.js';
import { href, navigate } from './router.475a737da2.js';
import { Latest } from './lifecycle.cf1e604c6c.js';
import { errorText } from './format.dc80c323ac.js';
import { modal, confirmDialog, yamlDialog } from './dialog.2b0c444602.js';
import { toYAML } from './yaml.124ddd447c.js';

export const title = 'Jobs';

const TEMPLATE = `id: my-job
version: 1.0.0
description: what this job does
execute:
  shell: powershell
  script: |
    Write-Output "hello"
  timeout: 5m
`;

// splitList accepts commas, spaces or new lines between names.
export function splitList(s) {
  return s.split(/[\s,]+/).map((x) => x.trim()).filter(Boolean);
}

export async function saveJob(text) {
  await api('POST', '/api/jobs', { body: text, contentType: 'application/yaml' });
}

// groupsKnown collects group names the schedules already target, to suggest.
async function groupsKnown() {
  try {
    const schedules = await api('GET', '/api/schedules');
    const groups = new Set();
    for (const s of schedules || []) for (const g of s.target?.groups || []) groups.add(g);
    return [...groups].sort();
  } catch {
    return [];
  }
}

export async function runDialog(job) {
  const radio = (value, label, checked) => h('label', { class: 'radio' },
    h('input', { type: 'radio', name: 'target', value, checked, testid: `target-${value}` }), ` ${label}`);
  const groups = h('input', { type: 'text', name: 'groups', list: 'known-groups', placeholder: 'group-a, group-b', testid: 'target-groups-input', 'aria-label': 'groups', autocomplete: 'off' });
  const pcs = h('textarea', { name: 'pcs', rows: 3, placeholder: 'PC001, PC002', testid: 'target-pcs-input', 'aria-label': 'PCs', class: 'mono' });
  const jitter = h('input', { type: 'text', name: 'jitter', placeholder: 'e.g. 30s (optional)', testid: 'jitter-input', 'aria-label': 'jitter', autocomplete: 'off' });
  const datalist = h('datalist', { id: 'known-groups' });
  groupsKnown().then((gs) => replace(datalist, gs.map((g) => h('option', { value: g }))));
  // Typing into a field selects its target kind.
  groups.addEventListener('input', () => (groups.form.elements.target.value = 'groups'));
  pcs.addEventListener('input', () => (pcs.form.elements.target.value = 'pcs'));

  const res = await modal({
    title: `Run ${job.id} now`,
    testid: 'run-dialog',
    submitLabel: 'Run',
    body: h('fieldset', { class: 'targets' },
      h('legend', {}, 'Target'),
      radio('all', 'All agents', true),
      radio('groups', 'Groups', false), groups, datalist,
      radio('pcs', 'These PCs', false), pcs,
      h('label', { class: 'field' }, h('span', { class: 'label' }, 'Jitter'), jitter)),
    onSubmit: async (form) => {
      const kind = form.elements.target.value;
      let target;
      if (kind === 'all') target = { all: true };
      else if (kind === 'groups') target = { groups: splitList(groups.value) };
      else target = { pcs: splitList(pcs.value) };
      if (kind !== 'all' && target[kind].length === 0) throw new Error(`name at least one ${kind === 'pcs' ? 'PC' : 'group'}`);
      const body = { target };
      if (jitter.value.trim()) body.jitter = jitter.value.trim();
      return api('POST', `/api/exec/${encodeURIComponent(job.id)}`, { body });
    },
  });
  if (res && res.exec_id) navigate(href('/executions/' + encodeURIComponent(res.exec_id)));
}

// liveBadge: how many executions of the job are under way ("2 running ·
// 1 pending"), linking to them; nothing when none is, or when the backend
// does not report it (an older one sends no "live").
export function liveBadge(j) {
  const running = Number(j.live?.running) || 0;
  const pending = Number(j.live?.pending) || 0;
  if (running <= 0 && pending <= 0) return null;
  const text = [running > 0 ? `${running} running` : null, pending > 0 ? `${pending} pending` : null].filter(Boolean).join(' · ');
  return h('a', {
    class: 'badge running live', testid: 'job-live', dataset: { running: String(running), pending: String(pending) },
    href: href('/executions', { job_id: j.id, status: running > 0 ? 'running' : 'pending' }),
    title: `executions of ${j.id} under way: ${text}`,
  }, text);
}

export function mount(main, { life }) {
  const latest = new Latest(life);
  const banner = h('p', { class: 'banner', role: 'alert', testid: 'jobs-error' });
  const tbody = h('tbody', { testid: 'jobs-body' }, h('tr', { class: 'empty' }, h('td', { colspan: 5 }, 'Loading…')));

  replace(main, h('section', { class: 'page jobs', testid: 'jobs-page' },
    h('div', { class: 'page-head' }, h('h1', {}, 'Jobs'), h('span', { class: 'spacer' }),
      h('button', { type: 'button', class: 'primary', testid: 'add-job', 'data-min-role': 'operator', onclick: () => edit(null) }, 'Add job')),
    banner,
    h('div', { class: 'table-wrap' }, h('table', { class: 'jobs', testid: 'jobs-table' },
      h('thead', {}, h('tr', {},
        h('th', { scope: 'col', class: 'c-id' }, 'Job'), h('th', { scope: 'col', class: 'c-ver' }, 'Version'),
        h('th', { scope: 'col', class: 'c-desc opt' }, 'Description'), h('th', { scope: 'col', class: 'c-shell opt' }, 'Shell · timeout'),
        h('th', { scope: 'col', class: 'c-actions' }, h('span', { class: 'sr-only' }, 'Actions')))),
      tbody))));

  function jobRow(j) {
    const ex = j.execute || {};
    return h('tr', { testid: 'job-row', dataset: { jobId: j.id } },
      h('td', { class: 'mono', title: j.id }, h('div', { class: 'job-cell' },
        h('a', { class: 'ellipsis', href: href('/executions', { job_id: j.id }), title: 'executions of this job' }, j.id), liveBadge(j),
        revoked.has(j.id) ? h('span', { class: 'badge revoked', testid: 'job-revoked', title: 'agents skip this job (exit 126) until it is unrevoked' }, 'revoked') : null)),
      h('td', { class: 'mono' }, j.version ?? '—'),
      h('td', { class: 'ellipsis opt', title: j.description || null }, j.description || h('span', { class: 'muted' }, '—')),
      h('td', { class: 'opt' }, [ex.shell, ex.timeout].filter(Boolean).join(' · ') || '—'),
      h('td', {}, h('div', { class: 'actions' },
        h('button', { type: 'button', class: 'primary small', testid: 'run-job', 'data-min-role': 'operator', onclick: () => runDialog(j) }, 'Run…'),
        h('button', { type: 'button', class: 'small', testid: 'edit-job', 'data-min-role': 'operator', onclick: () => edit(j) }, 'Edit'),
        revoked.has(j.id)
          ? h('button', { type: 'button', class: 'small', testid: 'unrevoke-job', 'data-min-role': 'operator', onclick: () => setRevoked(j, false) }, 'Unrevoke')
          : h('button', { type: 'button', class: 'small danger-text', testid: 'revoke-job', 'data-min-role': 'operator', onclick: () => setRevoked(j, true) }, 'Revoke'),
        h('button', { type: 'button', class: 'small danger-text', testid: 'delete-job', 'data-min-role': 'operator', onclick: () => remove(j) }, 'Delete'))));
  }

  // Job ids agents skip (script_status REVOKED); empty when the backend
  // has no scripts service.
  let revoked = new Set();

  async function load() {
    const res = await latest.run((signal) => Promise.all([
      api('GET', '/api/jobs', { signal }),
      api('GET', '/api/scripts/status', { signal }).catch(() => ({})),
    ]));
    if (!res) return;
    if (!res.ok) {
      banner.textContent = errorText(res.error);
      return;
    }
    banner.textContent = '';
    const [list, status] = res.value;
    revoked = new Set(Object.entries(status || {}).filter(([, v]) => v === 'REVOKED').map(([k]) => k));
    const jobs = [...(list || [])].sort((a, b) => a.id.localeCompare(b.id));
    replace(tbody, jobs.length ? jobs.map(jobRow) : h('tr', { class: 'empty' }, h('td', { colspan: 5 }, 'No jobs yet: add one.')));
  }

  async function edit(job) {
    let text = TEMPLATE;
    if (job) {
      // The list may be a summary: edit the stored manifest.
      const full = await api('GET', `/api/jobs/${encodeURIComponent(job.id)}`).catch(() => job);
      text = toYAML(full);
    }
    const saved = await yamlDialog({ title: job ? `Edit job ${job.id}` : 'Add job', text, save: saveJob });
    if (saved) load();
  }

  async function setRevoked(job, revoke) {
    if (revoke) {
      const ok = await confirmDialog({
        title: 'Revoke job', message: `Revoke ${job.id}? Agents skip its runs (exit 126), scheduled ones too, until you unrevoke it.`,
        confirmLabel: 'Revoke', danger: true,
      });
      if (!ok) return;
    }
    const err = await api('POST', `/api/scripts/${encodeURIComponent(job.id)}/${revoke ? 'revoke' : 'unrevoke'}`).then(() => null, (e) => e);
    await load();
    if (err) banner.textContent = errorText(err);
  }

  async function remove(job) {
    const ok = await confirmDialog({ title: 'Delete job', message: `Delete job ${job.id}? Its past results stay.`, confirmLabel: 'Delete', danger: true });
    if (!ok) return;
    const err = await api('DELETE', `/api/jobs/${encodeURIComponent(job.id)}`).then(() => null, (e) => e);
    await load();
    if (err) banner.textContent = errorText(err); // after the reload, which clears the banner
  }

  load();
}
