// Executions: each fan-out of a job to its targets, with its progress as a
// bar (succeeded, failed, skipped, not heard from yet), and a drill-down to the
// results of one execution.

import { h, replace } from './dom.3dd86e8f14.js';
import { api } from './api.21ab11d035.js';
import { href, navigate, setParams } from './router.475a737da2.js';
import { Latest } from './lifecycle.cf1e604c6c.js';
import { exitBadge, timeEl, resultDuration, shortId, errorText, tickElapsed } from './format.dc80c323ac.js';
import { confirmDialog } from './dialog.2b0c444602.js';

const ACTIVE = new Set(['pending', 'running']);
const REFRESH_MS = 2000;
const IDLE_REFRESH_MS = 10000;
const STATUSES = ['', 'pending', 'running', 'completed', 'expired'];

// counts: skipped results (an agent deliberately did not run: deadline
// passed, unsupported shell, …) count toward completion, as neither success
// nor failure. An older backend sends no skipped_count: 0.
function counts(e) {
  const success = e.success_count || 0;
  const failure = e.failure_count || 0;
  const skipped = e.skipped_count || 0;
  const target = Math.max(e.target_count || 0, success + failure + skipped);
  return { success, failure, skipped, target, waiting: target - success - failure - skipped };
}

function progressText(c) {
  return `${c.success} succeeded, ${c.failure} failed${c.skipped ? `, ${c.skipped} skipped` : ''}, ${c.waiting} not finished, of ${c.target}`;
}

// progressBar: widths are set through the CSSOM, which the page's CSP allows
// (it forbids inline style attributes, not script-set styles).
export function progressBar(e) {
  const c = counts(e);
  const seg = (cls, n) => {
    const el = h('span', { class: `seg ${cls}` });
    el.style.width = c.target ? `${(n / c.target) * 100}%` : '0';
    return el;
  };
  return h('div', {
    class: 'progress', role: 'img', testid: 'progress',
    'aria-label': progressText(c),
    title: progressText(c),
  }, seg('success', c.success), seg('failure', c.failure), c.skipped > 0 ? seg('skipped', c.skipped) : null);
}

function countsText(e) {
  const c = counts(e);
  return h('span', { class: 'counts num', testid: 'execution-counts' },
    h('span', { class: 'ok' }, String(c.success)), ' / ', h('span', { class: 'bad' }, String(c.failure)), ` / ${c.target}`);
}

// skippedText: "2 skipped" next to the counts, only when some were.
function skippedText(e) {
  const c = counts(e);
  if (c.skipped <= 0) return null;
  return h('span', { class: 'skipped num', testid: 'execution-skipped', title: 'results an agent deliberately did not run (deadline passed, unsupported shell, …)' },
    `${c.skipped} skipped`);
}

// countsCell: the counts, then the skipped ones when there are any.
function countsCell(e) {
  return h('span', { class: 'counts-cell' }, countsText(e), skippedText(e));
}

// resultsText: how far the targets got, from the rows an execution has.
function resultsText(results, target) {
  const running = results.filter((r) => r.finished_at == null).length;
  const finished = results.length - running;
  const silent = Math.max(0, target - results.length);
  return [`${finished} finished`, running ? `${running} running` : null, silent ? `${silent} not started` : null]
    .filter(Boolean).join(' · ') + ` of ${target}`;
}

function statusBadge(status) {
  return h('span', { class: `badge exec-${status}`, testid: 'execution-status' }, status);
}

export const list = {
  title: 'Executions',
  mount(main, { params, life }) {
    const latest = new Latest(life);
    let cancelRefresh = () => {};
    const s = { job_id: params.get('job_id') || '', status: params.get('status') || '', limit: params.get('limit') || '50' };
    if (!STATUSES.includes(s.status)) s.status = '';

    const banner = h('p', { class: 'banner', role: 'alert', testid: 'executions-error' });
    const tbody = h('tbody', { testid: 'executions-body' }, h('tr', { class: 'empty' }, h('td', { colspan: 6 }, 'Loading…')));
    let pending = () => {};
    const jobInput = h('input', { type: 'search', name: 'job_id', value: s.job_id, placeholder: 'job id', testid: 'executions-filter-job', autocomplete: 'off',
      oninput: () => {
        pending();
        pending = life.after(300, () => change({ job_id: jobInput.value.trim() }));
      } });
    const statusSelect = h('select', { name: 'status', testid: 'executions-filter-status', onchange: () => change({ status: statusSelect.value }) },
      STATUSES.map((v) => h('option', { value: v }, v || 'any')));
    statusSelect.value = s.status;

    tbody.addEventListener('click', (ev) => {
      if (ev.target.closest('a, button') || String(getSelection())) return;
      const tr = ev.target.closest('tr[data-exec-id]');
      if (tr) navigate(href('/executions/' + encodeURIComponent(tr.dataset.execId)));
    });

    replace(main, h('section', { class: 'page executions', testid: 'executions-page' },
      h('div', { class: 'page-head' }, h('h1', {}, 'Executions'), h('button', { type: 'button', onclick: () => load() }, 'Refresh')),
      h('form', { class: 'filters', onsubmit: (ev) => ev.preventDefault() },
        h('label', { class: 'field' }, h('span', { class: 'label' }, 'Job'), jobInput),
        h('label', { class: 'field narrow' }, h('span', { class: 'label' }, 'Status'), statusSelect)),
      banner,
      h('div', { class: 'table-wrap' }, h('table', { class: 'executions', testid: 'executions-table' },
        h('thead', {}, h('tr', {},
          h('th', { scope: 'col', class: 'c-job' }, 'Job'), h('th', { scope: 'col', class: 'c-time opt' }, 'Started'),
          h('th', { scope: 'col', class: 'c-state' }, 'Status'), h('th', { scope: 'col', class: 'c-bar' }, 'Progress'),
          h('th', { scope: 'col', class: 'c-counts', title: 'succeeded / failed / target' }, 'OK / failed / target'),
          h('th', { scope: 'col', class: 'c-exec opt' }, 'Execution'))),
        tbody))));

    function change(patch) {
      Object.assign(s, patch);
      const p = {};
      if (s.job_id) p.job_id = s.job_id;
      if (s.status) p.status = s.status;
      setParams('/executions', p);
      load();
    }

    async function load() {
      cancelRefresh();
      const res = await latest.run((signal) => api('GET', '/api/executions', { query: s, signal }));
      if (!res) return;
      if (!res.ok) {
        banner.textContent = errorText(res.error);
        cancelRefresh = life.after(IDLE_REFRESH_MS, load);
        return;
      }
      banner.textContent = '';
      const rows = res.value || [];
      replace(tbody, rows.length ? rows.map(execRow) : h('tr', { class: 'empty' }, h('td', { colspan: 6 }, 'No executions yet.')));
      cancelRefresh = life.after(rows.some((e) => ACTIVE.has(e.status)) ? REFRESH_MS : IDLE_REFRESH_MS, load);
    }
    load();
  },
};

function execRow(e) {
  return h('tr', { testid: 'execution-row', dataset: { execId: e.exec_id, status: e.status, jobId: e.job_id } },
    h('td', { class: 'ellipsis' }, h('a', { href: href('/executions/' + encodeURIComponent(e.exec_id)) }, e.job_id),
      e.version ? h('span', { class: 'muted' }, ` ${e.version}`) : null),
    h('td', { class: 'num opt' }, timeEl(e.initiated_at)),
    h('td', {}, statusBadge(e.status)),
    h('td', {}, progressBar(e)),
    h('td', {}, countsCell(e)),
    h('td', { class: 'mono opt', title: e.exec_id }, shortId(e.exec_id)));
}

export const detail = {
  title: 'Execution',
  mount(main, { args, life }) {
    const id = args[0];
    const latest = new Latest(life);
    let exec = null;

    const heading = h('h1', {}, 'Execution');
    const banner = h('p', { class: 'banner', role: 'alert', testid: 'execution-error' });
    const summary = h('div', { class: 'exec-summary', testid: 'execution-summary' });
    const meta = h('dl', { class: 'meta' });
    const killState = h('span', { class: 'kill-state', 'aria-live': 'polite', testid: 'kill-state' });
    const killButton = h('button', { type: 'button', class: 'danger', testid: 'kill-button', 'data-min-role': 'operator', hidden: true, onclick: kill }, 'Kill');
    const tbody = h('tbody', { testid: 'execution-results' }, h('tr', { class: 'empty' }, h('td', { colspan: 5 }, 'Loading…')));

    tbody.addEventListener('click', (ev) => {
      if (ev.target.closest('a, button') || String(getSelection())) return;
      const tr = ev.target.closest('tr[data-result-id]');
      if (tr) navigate(href('/results/' + encodeURIComponent(tr.dataset.resultId)));
    });

    replace(main, h('section', { class: 'page execution', testid: 'execution-page' },
      h('div', { class: 'page-head' }, h('a', { href: '#/executions', class: 'back' }, '← Executions'), heading,
        h('span', { class: 'spacer' }), killState, killButton),
      banner,
      summary,
      meta,
      h('h2', {}, 'Results'),
      h('div', { class: 'table-wrap' }, h('table', { class: 'exec-results' },
        h('thead', {}, h('tr', {},
          h('th', { scope: 'col', class: 'c-pc' }, 'PC'), h('th', { scope: 'col', class: 'c-status' }, 'Status'),
          h('th', { scope: 'col', class: 'c-time' }, 'Started'), h('th', { scope: 'col', class: 'c-time opt' }, 'Finished'),
          h('th', { scope: 'col', class: 'c-dur' }, 'Duration'))),
        tbody))));

    function render(v) {
      exec = v.execution;
      const results = [...(v.results || [])].sort((a, b) => a.pc_id.localeCompare(b.pc_id, undefined, { numeric: true }));
      heading.textContent = `${exec.job_id}${exec.version ? ' ' + exec.version : ''}`;
      const c = counts(exec);
      replace(summary, statusBadge(exec.status), progressBar(exec), countsCell(exec),
        h('span', { class: 'muted' }, c.waiting > 0 ? `${c.waiting} not finished` : 'all reported'));
      const item = (label, value) => [h('dt', {}, label), h('dd', {}, value)];
      replace(meta,
        item('Execution id', h('span', { class: 'mono' }, exec.exec_id)),
        item('Started', timeEl(exec.initiated_at)),
        item('Initiated by', exec.initiated_by || '—'),
        item('Results', v.results_truncated ? `${resultsText(results, c.target)} (the first ${results.length} runs shown)` : resultsText(results, c.target)),
        item('Activity', h('a', { href: href('/', { exec_id: `^${exec.exec_id}$`, window: 'all' }) }, 'these results with full output')));
      killButton.hidden = !ACTIVE.has(exec.status);
      replace(tbody, results.length
        ? results.map((r) => h('tr', { testid: 'result-row', dataset: { resultId: r.result_id, pcId: r.pc_id } },
          h('td', { class: 'mono' }, h('a', { href: href('/results/' + encodeURIComponent(r.result_id)) }, r.pc_id)),
          h('td', {}, exitBadge(r)),
          h('td', { class: 'num' }, timeEl(r.started_at)),
          h('td', { class: 'num opt' }, timeEl(r.finished_at)),
          h('td', { class: 'num' }, resultDuration(r))))
        : h('tr', { class: 'empty' }, h('td', { colspan: 5 }, 'No agent has reported yet.')));
    }

    async function load() {
      const res = await latest.run((signal) => api('GET', `/api/executions/${encodeURIComponent(id)}`, { signal }));
      if (!res) return;
      if (!res.ok) {
        banner.textContent = res.error.status === 404 ? `No execution with id ${id} (yet).` : errorText(res.error);
        // A just-started execution may not be projected yet: keep asking.
        life.after(REFRESH_MS, load);
        return;
      }
      banner.textContent = '';
      render(res.value);
      const running = (res.value.results || []).some((r) => r.finished_at == null);
      if (ACTIVE.has(exec.status) || running) life.after(REFRESH_MS, load);
    }

    async function kill() {
      const ok = await confirmDialog({
        title: 'Kill job',
        message: `Stop every in-flight run of job ${exec.job_id}? Each stops with exit code -1.`,
        confirmLabel: 'Kill',
        danger: true,
      });
      if (!ok) return;
      try {
        await api('POST', `/api/jobs/${encodeURIComponent(exec.job_id)}/kill`, { signal: life.signal });
        killState.textContent = 'kill sent';
      } catch (err) {
        killState.textContent = `kill failed: ${errorText(err)}`;
      }
    }

    life.every(1000, () => tickElapsed(tbody));
    load();
  },
};
