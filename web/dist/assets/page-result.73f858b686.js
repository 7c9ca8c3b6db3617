// Result detail: the output of one run (whole, or its head and tail with a
// link to download all of it), its metadata, and while it is in flight a
// live view of the agent's tail that gives way to the final, stored output
// as soon as it lands.

import { h, replace } from './dom.3dd86e8f14.js';
import { api } from './api.21ab11d035.js';
import { href } from './router.475a737da2.js';
import { Latest } from './lifecycle.cf1e604c6c.js';
import { exitBadge, timeEl, resultDuration, resultStatus, exitMeaning, tickElapsed, errorText } from './format.dc80c323ac.js';
import { confirmDialog } from './dialog.2b0c444602.js';
import { outputPane } from './output.7505417550.js';

export const title = 'Result';

const TAIL_MS = 2000;
const DETAIL_MS = 5000;

export function mount(main, { args, life }) {
  const id = args[0];
  const latest = new Latest(life);
  let row = null;
  let cancelTick = () => {};

  const heading = h('h1', {}, 'Result');
  const badge = h('span', { testid: 'result-status' });
  const meta = h('dl', { class: 'meta', testid: 'result-meta' });
  const banner = h('p', { class: 'banner', role: 'alert', testid: 'result-error' });
  const liveToggle = h('input', { type: 'checkbox', testid: 'live-toggle', checked: true, onchange: () => schedule(0) });
  const liveState = h('span', { class: 'live-state', testid: 'live-state', 'aria-live': 'polite' });
  const killState = h('span', { class: 'kill-state', testid: 'kill-state', 'aria-live': 'polite' });
  const killButton = h('button', { type: 'button', class: 'danger', testid: 'kill-button', 'data-min-role': 'operator', onclick: kill }, 'Kill');
  const liveBar = h('div', { class: 'live-bar', testid: 'live-bar' },
    h('label', { class: 'switch' }, liveToggle, ' Live output'), liveState, h('span', { class: 'spacer' }), killState, killButton);
  const stdout = outputPane('stdout');
  const stderr = outputPane('stderr');

  replace(main, h('section', { class: 'page result', testid: 'result-page' },
    h('div', { class: 'page-head' }, h('a', { href: '#/activity', class: 'back' }, '← Activity'), heading, badge),
    banner,
    meta,
    liveBar,
    h('div', { class: 'outputs' }, stdout.el, stderr.el)));
  liveBar.hidden = true;

  function renderMeta(r) {
    const status = resultStatus(r);
    heading.textContent = `${r.job_id ?? 'ad hoc'} on ${r.pc_id}`;
    replace(badge, exitBadge(r));
    const item = (label, value, testid) => [h('dt', {}, label), h('dd', { testid }, value)];
    const meaning = exitMeaning(r.exit_code);
    replace(meta,
      item('Status', status, 'meta-status'),
      item('Exit code', r.exit_code == null ? '—' : `${r.exit_code}${meaning ? ` (${meaning})` : ''}`),
      item('PC', r.pc_id),
      item('Job', r.job_id ? `${r.job_id}${r.version ? ' ' + r.version : ''}` : 'ad hoc'),
      item('Execution', r.exec_id ? h('a', { href: href('/executions/' + encodeURIComponent(r.exec_id)), class: 'mono' }, r.exec_id) : '—'),
      item('Started', timeEl(r.started_at)),
      item('Finished', status === 'running' ? 'still running' : timeEl(r.finished_at)),
      item('Duration', status === 'running' ? h('span', { class: 'elapsed', dataset: { since: String(Date.parse(r.started_at)) } }) : resultDuration(r)),
      item('Result id', h('span', { class: 'mono' }, r.result_id)),
      item('Request id', h('span', { class: 'mono' }, r.request_id ?? '—')));
    tickElapsed(meta);
  }

  function renderRow(r) {
    row = r;
    renderMeta(r);
    const running = resultStatus(r) === 'running';
    liveBar.hidden = !running;
    killButton.hidden = !running || !r.job_id;
    if (!running) {
      cancelTick();
      for (const [pane, stream] of [[stdout, 'stdout'], [stderr, 'stderr']]) {
        pane.showWhole(r[stream], r[`${stream}_tail`], {
          truncated: r[`${stream}_truncated`], size: r[`${stream}_bytes`],
          url: `/api/results/${encodeURIComponent(r.result_id)}/output/${stream}?download`, file: `${r.result_id}-${stream}.txt`,
        });
      }
      liveState.textContent = '';
    } else if (!liveToggle.checked) {
      stdout.set(r.stdout);
      stderr.set(r.stderr);
    }
  }

  async function loadDetail() {
    const res = await latest.run((signal) => api('GET', `/api/results/${encodeURIComponent(id)}`, { signal }));
    if (!res) return false;
    if (!res.ok) {
      banner.textContent = res.error.status === 404 ? `No result with id ${id}.` : errorText(res.error);
      return false;
    }
    banner.textContent = '';
    renderRow(res.value);
    return true;
  }

  async function tick() {
    if (!row || resultStatus(row) !== 'running') return;
    if (!liveToggle.checked) {
      liveState.textContent = 'paused: showing stored output';
      await loadDetail();
      schedule(DETAIL_MS);
      return;
    }
    const res = await latest.run((signal) => api('GET', `/api/results/${encodeURIComponent(id)}/tail`, { signal }));
    if (!res) return;
    if (!res.ok) {
      liveState.textContent = `tail unavailable: ${errorText(res.error)}`;
      schedule(TAIL_MS);
      return;
    }
    const t = res.value;
    if (t.live) {
      stdout.set(t.stdout, { truncated: t.stdout_truncated, live: true });
      stderr.set(t.stderr, { truncated: t.stderr_truncated, live: true });
      liveState.textContent = t.running ? '● live' : 'finished on the agent, waiting for the result…';
      liveState.dataset.state = t.running ? 'live' : 'finishing';
    } else if (t.running) {
      liveState.textContent = 'waiting for the agent to answer…';
      liveState.dataset.state = 'waiting';
    }
    // The run is over (per the agent or the store): fetch the final row.
    if (!t.running) await loadDetail();
    schedule(TAIL_MS);
  }

  function schedule(ms) {
    cancelTick();
    if (row && resultStatus(row) === 'running') cancelTick = life.after(ms, tick);
  }

  async function kill() {
    if (!row || !row.job_id) return;
    const ok = await confirmDialog({
      title: 'Kill job',
      message: `Stop every in-flight run of job ${row.job_id}? Each stops with exit code -1.`,
      confirmLabel: 'Kill',
      danger: true,
    });
    if (!ok) return;
    killButton.disabled = true;
    try {
      await api('POST', `/api/jobs/${encodeURIComponent(row.job_id)}/kill`, { signal: life.signal });
      killState.textContent = 'kill sent';
    } catch (err) {
      killState.textContent = `kill failed: ${errorText(err)}`;
      killButton.disabled = false;
    }
  }

  life.every(1000, () => tickElapsed(meta));
  loadDetail().then((ok) => ok && schedule(0));
}
