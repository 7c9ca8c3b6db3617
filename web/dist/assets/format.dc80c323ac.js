// Presenting API values: times in the browser's zone, shown with it, with
// a fixed width, so columns do not shift as values change; result status
// and exit codes.

import { h } from './dom.3dd86e8f14.js';

const pad = (n, w = 2) => String(n).padStart(w, '0');

export function parseTime(iso) {
  if (!iso) return null;
  const t = Date.parse(iso);
  return Number.isNaN(t) ? null : t;
}

// time('2026-05-16T00:00:00Z') -> '2026-05-16 02:00:00 +02:00' (local,
// with its offset from UTC)
export function time(iso) {
  const t = parseTime(iso);
  if (t == null) return '—';
  const d = new Date(t);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())} ${zone(d)}`;
}

// zone is d's offset from UTC: '+02:00', '-05:30', 'UTC' when none.
function zone(d) {
  const off = -d.getTimezoneOffset();
  if (off === 0) return 'UTC';
  const a = Math.abs(off);
  return `${off < 0 ? '-' : '+'}${pad(Math.floor(a / 60))}:${pad(a % 60)}`;
}

// bytes(8388608) -> '8.0 MiB'
export function bytes(n) {
  if (n == null) return '—';
  if (n < 1024) return `${n} B`;
  if (n < 1 << 20) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / (1 << 20)).toFixed(1)} MiB`;
}

// timeEl is a <time> with the exact instant as tooltip.
export function timeEl(iso) {
  return h('time', { datetime: iso || null, title: iso || null }, time(iso));
}

export function duration(ms) {
  if (ms == null || ms < 0) return '—';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${(ms / 1000).toFixed(1)} s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${pad(s % 60)}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ${pad(Math.floor(s / 60) % 60)}m`;
  return `${Math.floor(s / 86400)}d ${pad(Math.floor(s / 3600) % 24)}h`;
}

function roughly(s) {
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min`;
  if (s < 86400) return `${Math.floor(s / 3600)} h`;
  return `${Math.floor(s / 86400)} d`;
}

// ago('…') -> '3 min ago', or 'in 12 s' for a time to come
export function ago(iso, now = Date.now()) {
  const t = parseTime(iso);
  if (t == null) return 'never';
  const s = Math.round((now - t) / 1000);
  if (s < 0) return `in ${roughly(-s)}`;
  if (s < 5) return 'just now';
  return `${roughly(s)} ago`;
}

// agoEl is ago() in parentheses that tickAgo keeps current.
export function agoEl(iso) {
  return h('span', { class: 'muted ago', dataset: iso ? { at: iso } : null }, ` (${ago(iso)})`);
}

export function tickAgo(root) {
  const now = Date.now();
  for (const el of root.querySelectorAll('.ago[data-at]')) el.textContent = ` (${ago(el.dataset.at, now)})`;
}

export function shortId(id) {
  return id ? String(id).slice(0, 8) : '—';
}

// resultStatus follows the API's status filter: running = not finished,
// success = exit code 0, failure = finished with any other code.
export function resultStatus(r) {
  if (r.finished_at == null) return 'running';
  return r.exit_code === 0 ? 'success' : 'failure';
}

// Exit codes with a meaning of their own (wire contract).
const EXIT_MEANING = {
  '-1': 'killed or timed out',
  122: 'unsupported',
  123: 'refused (signature)',
  124: 'version pin',
  125: 'deadline passed',
  126: 'revoked',
  127: 'staleness',
};

export function exitMeaning(code) {
  return EXIT_MEANING[code] || null;
}

// exitBadge: green 0, red failure, amber killed/timed out, grey synthetic
// refusals, blue running with elapsed time (data-elapsed is ticked live).
export function exitBadge(r) {
  const status = resultStatus(r);
  if (status === 'running') {
    const started = parseTime(r.started_at);
    return h('span', { class: 'badge running', testid: 'exit-badge', title: 'running' },
      h('span', { class: 'pulse', 'aria-hidden': 'true' }),
      'running ',
      h('span', { class: 'elapsed', dataset: started != null ? { since: String(started) } : null },
        started != null ? duration(Date.now() - started) : ''));
  }
  const code = r.exit_code;
  let kind = status;
  if (code === -1) kind = 'killed';
  else if (code >= 122 && code <= 127) kind = 'synthetic';
  const meaning = exitMeaning(code);
  return h('span', { class: `badge ${kind}`, testid: 'exit-badge', title: meaning ? `exit ${code}: ${meaning}` : `exit ${code}` },
    `exit ${code ?? '?'}`);
}

// tickElapsed refreshes every running badge's elapsed time under root.
export function tickElapsed(root) {
  const now = Date.now();
  for (const el of root.querySelectorAll('.elapsed[data-since]')) {
    el.textContent = duration(now - Number(el.dataset.since));
  }
}

export function resultDuration(r) {
  const a = parseTime(r.started_at);
  const b = parseTime(r.finished_at);
  if (a == null || b == null) return '—';
  return duration(b - a);
}

export function firstLine(s, max = 200) {
  if (!s) return '';
  const line = s.split('\n').find((l) => l.trim() !== '') || '';
  return line.length > max ? line.slice(0, max) + '…' : line;
}

export function errorText(err) {
  if (!err) return '';
  if (err.status) return `${err.message} (HTTP ${err.status})`;
  return err.message || String(err);
}
