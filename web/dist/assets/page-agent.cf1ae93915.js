// Agent: one PC. Its last heartbeat, its groups (edit them), the config it
// resolves (global < groups < PC), its recent results, and three live
// questions: ping it, fetch its log, run a script on it now.

import { h, replace } from './dom.3dd86e8f14.js';
import { api, apiFull } from './api.21ab11d035.js';
import { href } from './router.475a737da2.js';
import { Latest } from './lifecycle.cf1e604c6c.js';
import { timeEl, agoEl, tickAgo, errorText, exitBadge, shortId } from './format.dc80c323ac.js';
import { configDialog } from './config-editor.2362a3b632.js';

export const title = 'Agent';

const REFRESH_MS = 10000;
const SHELLS = ['powershell', 'pwsh', 'cmd', 'sh'];

function row(label, value, testid) {
  return [h('dt', {}, label), h('dd', { testid }, value == null || value === '' ? '—' : value)];
}

export function mount(main, { args, life }) {
  const pc = args[0];
  const latest = new Latest(life);
  const path = `/api/agents/${encodeURIComponent(pc)}`;

  const banner = h('p', { class: 'banner', role: 'alert', testid: 'agent-error' });
  const meta = h('dl', { class: 'meta', testid: 'agent-meta' }, h('dt', {}, 'Loading…'));

  // Groups editor: chips with a remove button, an input to add one.
  const chips = h('div', { class: 'chips', testid: 'agent-group-chips' });
  const groupInput = h('input', { type: 'text', testid: 'agent-group-input', placeholder: 'group name', 'aria-label': 'add a group', autocomplete: 'off' });
  const groupError = h('p', { class: 'form-error', role: 'alert', testid: 'agent-group-error' });
  const groupForm = h('form', {
    class: 'inline-form', testid: 'agent-group-form', 'data-min-role': 'operator',
    onsubmit: async (e) => {
      e.preventDefault();
      const g = groupInput.value;
      groupError.textContent = '';
      try {
        renderGroups(await api('POST', `${path}/groups`, { body: { group: g } }));
        groupInput.value = '';
        loadConfig();
      } catch (err) {
        groupError.textContent = errorText(err);
      }
    },
  }, groupInput, h('button', { type: 'submit', class: 'small primary', testid: 'agent-group-add' }, 'Add'));

  // Metadata: free-form key/value pairs (KV agent_meta), one key at a time.
  const metaList = h('div', { class: 'chips', testid: 'agent-meta-entries' });
  const metaKey = h('input', { type: 'text', testid: 'agent-meta-key', placeholder: 'key', 'aria-label': 'metadata key', autocomplete: 'off' });
  const metaValue = h('input', { type: 'text', testid: 'agent-meta-value', placeholder: 'value', 'aria-label': 'metadata value', autocomplete: 'off' });
  const metaError = h('p', { class: 'form-error', role: 'alert', testid: 'agent-meta-error' });
  const metaForm = h('form', {
    class: 'inline-form', testid: 'agent-meta-form', 'data-min-role': 'operator',
    onsubmit: async (e) => {
      e.preventDefault();
      metaError.textContent = '';
      try {
        const r = await api('PUT', `${path}/meta/key`, { body: { key: metaKey.value, value: metaValue.value } });
        renderMeta(r.meta);
        metaKey.value = '';
        metaValue.value = '';
      } catch (err) {
        metaError.textContent = errorText(err);
      }
    },
  }, metaKey, metaValue, h('button', { type: 'submit', class: 'small primary', testid: 'agent-meta-set' }, 'Set'));

  const config = h('div', { testid: 'agent-config' }, 'Loading…');
  const results = h('tbody', { testid: 'agent-results' }, h('tr', { class: 'empty' }, h('td', { colspan: 4 }, 'Loading…')));

  const pingOut = h('span', { class: 'muted', testid: 'agent-ping-result', 'aria-live': 'polite' });
  const pingBtn = h('button', { type: 'button', testid: 'agent-ping', 'data-min-role': 'operator', onclick: ping }, 'Ping');

  const logsOut = h('pre', { class: 'output', testid: 'agent-logs', hidden: true });
  const logsBtn = h('button', { type: 'button', testid: 'agent-logs-fetch', onclick: logs }, 'Fetch log');
  const logsNote = h('span', { class: 'muted', testid: 'agent-logs-note' });

  const shell = h('select', { testid: 'run-shell', 'aria-label': 'shell' }, SHELLS.map((s) => h('option', { value: s, selected: s === 'sh' }, s)));
  const script = h('textarea', { class: 'mono', rows: 4, testid: 'run-script', 'aria-label': 'script', spellcheck: 'false', placeholder: 'hostname' });
  const timeout = h('input', { type: 'text', value: '60', size: 5, testid: 'run-timeout', 'aria-label': 'timeout in seconds', inputmode: 'numeric' });
  const runOut = h('div', { testid: 'run-result', 'aria-live': 'polite' });
  const runBtn = h('button', { type: 'submit', class: 'primary', testid: 'run-submit' }, 'Run');

  replace(main, h('section', { class: 'page agent', testid: 'agent-page', dataset: { pcId: pc } },
    h('div', { class: 'page-head' }, h('a', { class: 'back', href: '#/agents' }, '← Agents'), h('h1', { class: 'mono' }, pc),
      h('span', { class: 'spacer' }), pingOut, pingBtn),
    banner,
    meta,
    h('h2', {}, 'Groups'),
    chips, groupForm, groupError,
    h('h2', {}, 'Metadata'),
    metaList, metaForm, metaError,
    h('h2', {}, 'Effective config'),
    config,
    h('div', { class: 'actions left' }, h('button', {
      type: 'button', class: 'small', testid: 'agent-config-edit', 'data-min-role': 'operator',
      onclick: () => configDialog(`Config of ${pc} (its own layer)`, `/api/pcs/${encodeURIComponent(pc)}/config`)
        .then((ok) => ok && loadConfig(), (err) => { banner.textContent = errorText(err); }),
    }, 'Edit this PC\'s config')),
    h('h2', { 'data-min-role': 'operator' }, 'Run a script'),
    h('form', {
      class: 'run-form', testid: 'run-form', 'data-min-role': 'operator',
      onsubmit: (e) => { e.preventDefault(); run(); },
    },
    h('div', { class: 'filters' },
      h('label', { class: 'field' }, h('span', { class: 'label' }, 'Shell'), shell),
      h('label', { class: 'field' }, h('span', { class: 'label' }, 'Timeout (s)'), timeout)),
    script, h('div', { class: 'actions' }, runBtn)),
    runOut,
    h('h2', {}, 'Recent results'),
    h('div', { class: 'table-wrap' }, h('table', { class: 'agent-results' },
      h('thead', {}, h('tr', {}, h('th', { scope: 'col', class: 'c-status' }, 'Status'), h('th', { scope: 'col', class: 'c-job' }, 'Job'),
        h('th', { scope: 'col', class: 'c-time' }, 'Started'), h('th', { scope: 'col', class: 'c-exec opt' }, 'Result'))),
      results)),
    h('p', {}, h('a', { href: href('/activity', { pc_id: `^${pc}$` }), testid: 'agent-activity-link' }, 'All results of this PC →')),
    h('h2', {}, 'Agent log'),
    h('div', { class: 'actions left' }, logsBtn, logsNote),
    logsOut));

  function renderGroups(v) {
    const gs = v?.groups || [];
    replace(chips, gs.length ? gs.map((g) => h('span', { class: 'chip', testid: 'agent-group', dataset: { group: g } },
      h('a', { href: href('/groups', { name: g }) }, g),
      h('button', {
        type: 'button', class: 'chip-remove', 'data-min-role': 'operator', testid: 'agent-group-remove', 'aria-label': `remove from ${g}`, title: `remove from ${g}`,
        onclick: async () => {
          groupError.textContent = '';
          try {
            renderGroups(await api('DELETE', `${path}/groups/${encodeURIComponent(g)}`));
            loadConfig();
          } catch (err) {
            groupError.textContent = errorText(err);
          }
        },
      }, '×'))) : h('span', { class: 'muted' }, 'In no group (set by hand; groups from definitions show on the Groups page).'));
  }

  function renderMeta(m) {
    const es = m?.entries || [];
    replace(metaList, es.length ? es.map((e) => h('span', { class: 'chip', testid: 'agent-meta-entry', dataset: { key: e.key } },
      h('span', { class: 'mono' }, `${e.key} = ${e.value}`),
      h('button', {
        type: 'button', class: 'chip-remove', 'data-min-role': 'operator', 'aria-label': `remove ${e.key}`, title: `remove ${e.key}`,
        onclick: async () => {
          metaError.textContent = '';
          try {
            renderMeta((await api('DELETE', `${path}/meta/key`, { query: { key: e.key } })).meta);
          } catch (err) {
            metaError.textContent = errorText(err);
          }
        },
      }, '×'))) : h('span', { class: 'muted' }, 'No metadata.'));
  }

  function renderAgent(a) {
    replace(meta,
      row('State', h('span', { class: `badge ${a.alive ? 'success' : 'offline'}`, testid: 'agent-state' }, a.alive ? 'online' : 'offline')),
      row('Last heartbeat', a.last_heartbeat ? [timeEl(a.last_heartbeat), agoEl(a.last_heartbeat)] : null, 'agent-heartbeat'),
      row('Host', a.hostname), row('OS', a.os_family),
      row('Agent version', a.agent_version, 'agent-version'),
      row('Logged-on user', a.last_logon_display_name ? `${a.last_logon_display_name} (${a.last_logon_user})` : a.last_logon_user),
      row('Agent CPU', a.agent_cpu_pct == null ? null : `${a.agent_cpu_pct.toFixed(1)} %`),
      row('Agent memory', a.agent_rss_bytes == null ? null : `${(a.agent_rss_bytes / 1048576).toFixed(1)} MiB`),
      row('Signing', a.enforcing == null ? null : a.enforcing ? 'enforcing' : 'not enforcing'),
      row('Command keys', a.command_keys == null ? null : a.command_keys.length ? a.command_keys.join(', ') : 'none'),
      row('Quarantined', a.quarantined_versions?.join(', ')));
  }

  function renderConfig(ec) {
    const e = ec.effective || {};
    replace(config,
      h('dl', { class: 'meta', testid: 'agent-config-values' }, Object.keys(e).flatMap((k) =>
        row(k, e[k] == null ? null : String(e[k]), `config-${k}`))),
      (ec.warnings || []).map((w) => h('p', { class: 'banner', testid: 'agent-config-warning' }, w)),
      h('p', { class: 'muted' }, 'Resolved from global, then the groups ',
        ec.my_groups?.length ? ec.my_groups.join(', ') : '(none)', ' in alphabetical order, then this PC.'));
  }

  async function ping() {
    pingBtn.disabled = true;
    pingOut.textContent = 'pinging…';
    const t0 = performance.now();
    try {
      const r = await api('POST', `${path}/ping`, { query: { wait_secs: 5 } });
      const ms = Math.round(performance.now() - t0);
      pingOut.textContent = `answered in ${ms} ms · ${r.heartbeat?.agent_version || ''}`;
      pingOut.dataset.state = 'ok';
    } catch (err) {
      pingOut.textContent = errorText(err);
      pingOut.dataset.state = 'failed';
    } finally {
      pingBtn.disabled = false;
    }
  }

  async function logs() {
    logsBtn.disabled = true;
    logsNote.textContent = 'asking the agent…';
    try {
      const r = await apiFull('GET', `${path}/logs`, { query: { tail: 500 } });
      logsOut.hidden = false;
      logsOut.textContent = r.text;
      logsOut.scrollTop = logsOut.scrollHeight;
      logsNote.textContent = `${r.text.split('\n').filter(Boolean).length} lines`;
    } catch (err) {
      logsNote.textContent = errorText(err);
    } finally {
      logsBtn.disabled = false;
    }
  }

  async function run() {
    runBtn.disabled = true;
    replace(runOut, h('p', { class: 'muted' }, 'running… (waits for the result, up to the timeout + 10 s)'));
    try {
      const r = await api('POST', '/api/run', { body: { pc_id: pc, shell: shell.value, script: script.value, timeout_secs: Number(timeout.value) || 60 } });
      replace(runOut,
        h('p', {}, h('span', { testid: 'run-exit', dataset: { exitCode: String(r.exit_code) } }, exitBadge(r)),
          r.result_id ? [' · ', h('a', { href: href(`/results/${r.result_id}`) }, `result ${shortId(r.result_id)}`)] : null),
        r.stdout ? h('pre', { class: 'output', testid: 'run-stdout' }, r.stdout) : null,
        r.stderr ? h('pre', { class: 'output', testid: 'run-stderr' }, r.stderr) : null);
      loadResults();
    } catch (err) {
      replace(runOut, h('p', { class: 'form-error', testid: 'run-error' }, errorText(err)));
    } finally {
      runBtn.disabled = false;
    }
  }

  async function loadResults() {
    try {
      const rows = await api('GET', '/api/results', { query: { pc_id: `^${pc}$`, limit: 10 }, signal: life.signal });
      replace(results, rows?.length ? rows.map((r) => h('tr', { testid: 'agent-result-row' },
        h('td', {}, exitBadge(r)),
        h('td', { class: 'mono ellipsis' }, r.job_id || '—'),
        h('td', { class: 'num' }, timeEl(r.started_at), agoEl(r.started_at)),
        h('td', { class: 'mono opt' }, h('a', { href: href(`/results/${r.result_id}`) }, shortId(r.result_id)))))
        : h('tr', { class: 'empty' }, h('td', { colspan: 4 }, 'No results from this PC yet.')));
    } catch (err) {
      if (!life.disposed) replace(results, h('tr', { class: 'empty' }, h('td', { colspan: 4 }, errorText(err))));
    }
  }

  async function loadConfig() {
    try {
      renderConfig(await api('GET', `${path}/effective_config`, { signal: life.signal }));
    } catch (err) {
      if (!life.disposed) replace(config, h('p', { class: 'banner' }, errorText(err)));
    }
  }

  async function load() {
    const res = await latest.run((signal) => Promise.all([
      api('GET', path, { signal }),
      api('GET', `${path}/groups`, { signal }),
    ]));
    if (!res) return;
    life.after(REFRESH_MS, load);
    if (!res.ok) {
      banner.textContent = res.error?.status === 404 ? `No agent ${pc} is known (never heard from, or forgotten).` : errorText(res.error);
      return;
    }
    banner.textContent = '';
    renderAgent(res.value[0]);
    if (document.activeElement?.closest?.('[data-testid="agent-group-chips"]') == null) renderGroups(res.value[1]);
  }

  life.every(1000, () => tickAgo(meta));
  load();
  loadConfig();
  loadResults();
  api('GET', `${path}/meta`, { signal: life.signal }).then(renderMeta, (err) => {
    if (!life.disposed) metaError.textContent = errorText(err);
  });
}
