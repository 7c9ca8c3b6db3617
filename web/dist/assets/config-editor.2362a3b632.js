// configDialog edits one layer of the agents' config (global, a group's or
// a PC's scope in KV agent_config) as JSON; an empty object clears it.

import { h } from './dom.3dd86e8f14.js';
import { api } from './api.21ab11d035.js';
import { modal } from './dialog.2b0c444602.js';

const FIELDS = 'max_local_concurrent, target_version, target_version_jitter, heartbeat_interval, host_perf_interval, process_perf_enabled, process_perf_expires_at, process_perf_top_n, client_display_name';

// path is the scope's route: /api/config, /api/groups/{name}/config or
// /api/pcs/{pc_id}/config. Resolves true once saved, null when cancelled.
export async function configDialog(title, path) {
  const current = (await api('GET', path)) || {};
  const area = h('textarea', {
    rows: 10, spellcheck: 'false', autocapitalize: 'off', class: 'mono yaml', testid: 'config-input', 'aria-label': 'config scope as JSON',
  });
  area.value = JSON.stringify(current, null, 2);
  return modal({
    title, testid: 'config-dialog', wide: true, submitLabel: 'Save',
    body: [h('p', { class: 'muted' }, `Fields: ${FIELDS}. Durations as 30s, 10m, 1h. Unset fields inherit.`), area],
    onSubmit: async () => {
      let v;
      try {
        v = JSON.parse(area.value.trim() || '{}');
      } catch (err) {
        throw new Error(`not JSON: ${err.message}`);
      }
      if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new Error('the scope must be a JSON object');
      if (Object.keys(v).length === 0) await api('DELETE', path);
      else await api('PUT', path, { body: v });
      return true;
    },
  });
}
