// Groups: every group with its members (set per PC, or derived from group
// definitions), whether it has a config scope, and a form to put a PC in a
// group. ?name=g highlights one group.

import { h, replace } from './dom.3dd86e8f14.js';
import { api, apiFull } from './api.21ab11d035.js';
import { href } from './router.475a737da2.js';
import { Latest } from './lifecycle.cf1e604c6c.js';
import { errorText } from './format.dc80c323ac.js';
import { configDialog } from './config-editor.2362a3b632.js';
import { yamlDialog, confirmDialog } from './dialog.2b0c444602.js';

const DEF_TEMPLATE = `id: my-group\ndescription: every Windows PC\n# either a static list:\n# members: [PC1, PC2]\n# or a read-only query over the agents projection returning pc_id:\nquery: SELECT pc_id FROM agents WHERE os_family = 'windows'\nrefresh: 10m\n`;

export const title = 'Groups';

const REFRESH_MS = 10000;
const SHOWN_MEMBERS = 40;

export function mount(main, { params, life }) {
  const latest = new Latest(life);
  const focus = params.get('name') || '';
  const banner = h('p', { class: 'banner', role: 'alert', testid: 'groups-error' });
  const summary = h('span', { class: 'summary', testid: 'groups-summary' });
  const tbody = h('tbody', { testid: 'groups-body' }, h('tr', { class: 'empty' }, h('td', { colspan: 4 }, 'Loading…')));
  const defs = h('tbody', { testid: 'group-defs-body' });
  const pcInput = h('input', { type: 'text', testid: 'groups-add-pc', placeholder: 'pc_id', 'aria-label': 'PC', autocomplete: 'off' });
  const groupInput = h('input', { type: 'text', testid: 'groups-add-group', placeholder: 'group', 'aria-label': 'group', autocomplete: 'off', value: focus });
  const formError = h('p', { class: 'form-error', role: 'alert', testid: 'groups-add-error' });

  replace(main, h('section', { class: 'page groups', testid: 'groups-page' },
    h('div', { class: 'page-head' }, h('a', { class: 'back', href: '#/agents' }, '← Agents'), h('h1', {}, 'Groups'), summary,
      h('button', {
        type: 'button', class: 'small', testid: 'global-config', 'data-min-role': 'operator',
        onclick: () => configDialog('Global config (every agent)', '/api/config').then(() => {}, (err) => { banner.textContent = errorText(err); }),
      }, 'Global config')),
    h('form', {
      class: 'inline-form', testid: 'groups-add-form', 'data-min-role': 'operator',
      onsubmit: async (e) => {
        e.preventDefault();
        formError.textContent = '';
        try {
          await api('POST', `/api/agents/${encodeURIComponent(pcInput.value.trim())}/groups`, { body: { group: groupInput.value } });
          pcInput.value = '';
          load();
        } catch (err) {
          formError.textContent = errorText(err);
        }
      },
    }, h('span', { class: 'label' }, 'Put'), pcInput, h('span', { class: 'label' }, 'in'), groupInput,
    h('button', { type: 'submit', class: 'small primary', testid: 'groups-add-submit' }, 'Add')),
    formError,
    banner,
    h('div', { class: 'table-wrap' }, h('table', { class: 'groups', testid: 'groups-table' },
      h('thead', {}, h('tr', {},
        h('th', { scope: 'col', class: 'c-id' }, 'Group'), h('th', { scope: 'col', class: 'c-counts' }, 'Members'),
        h('th', { scope: 'col', class: 'c-config opt' }, 'Config'), h('th', { scope: 'col' }, 'PCs'))),
      tbody)),
    h('div', { class: 'page-head' }, h('h2', {}, 'Group definitions'), h('span', { class: 'spacer' }),
      h('button', { type: 'button', class: 'small primary', testid: 'add-group-def', 'data-min-role': 'operator', onclick: () => editDef(null) }, 'Add definition')),
    h('p', { class: 'muted' }, 'Static lists and SQL queries over the agents projection (POST /api/group-defs); their members are written to agent_groups_derived, which agents follow beside their own groups.'),
    h('div', { class: 'table-wrap' }, h('table', { class: 'group-defs', testid: 'group-defs-table' },
      h('thead', {}, h('tr', {}, h('th', { scope: 'col', class: 'c-id' }, 'Definition'), h('th', { scope: 'col', class: 'c-state' }, 'Kind'),
        h('th', { scope: 'col' }, 'Members or query'), h('th', { scope: 'col', class: 'c-def-actions' }, h('span', { class: 'sr-only' }, 'Actions')))),
      defs))));

  function render(ov, list) {
    const groups = ov.groups || [];
    summary.textContent = `${groups.length} group${groups.length === 1 ? '' : 's'}`;
    replace(tbody, groups.length ? groups.map((g) => h('tr', {
      testid: 'group-row', class: g.name === focus ? 'focus' : null, dataset: { group: g.name, members: String(g.members.length) },
    },
    h('td', { class: 'mono ellipsis', title: g.name }, g.name),
    h('td', { class: 'num', testid: 'group-count' }, String(g.members.length)),
    h('td', { class: 'opt' }, h('button', {
      type: 'button', class: `small${g.has_config ? '' : ' muted'}`, testid: 'group-config', 'data-min-role': 'operator',
      title: g.has_config ? 'edit this group\'s config' : 'give this group a config',
      onclick: () => configDialog(`Config of group ${g.name}`, `/api/groups/${encodeURIComponent(g.name)}/config`).then((ok) => ok && load(), (err) => { banner.textContent = errorText(err); }),
    }, g.has_config ? 'Edit config' : 'Add config')),
    h('td', { class: 'members', testid: 'group-members' },
      g.members.slice(0, SHOWN_MEMBERS).map((pc) => h('a', { class: 'chip mono', href: href(`/agents/${encodeURIComponent(pc)}`) }, pc)),
      g.members.length > SHOWN_MEMBERS ? h('span', { class: 'muted' }, ` and ${g.members.length - SHOWN_MEMBERS} more`) : null)))
      : h('tr', { class: 'empty' }, h('td', { colspan: 4 }, 'No groups yet: put a PC in one above.')));
    replace(defs, list.length ? list.map((d) => h('tr', { testid: 'group-def-row', dataset: { id: d.id } },
      h('td', { class: 'mono ellipsis' }, d.id),
      h('td', {}, d.query ? 'dynamic' : 'static'),
      h('td', { class: 'mono ellipsis', title: d.query || (d.members || []).join(', ') }, d.query || (d.members || []).join(', ')),
      h('td', {}, h('div', { class: 'actions' },
        h('button', { type: 'button', class: 'small', testid: 'edit-group-def', 'data-min-role': 'operator', onclick: () => editDef(d) }, 'Edit'),
        h('button', { type: 'button', class: 'small danger-text', testid: 'delete-group-def', 'data-min-role': 'operator', onclick: () => removeDef(d) }, 'Delete')))))
      : h('tr', { class: 'empty' }, h('td', { colspan: 4 }, 'No definitions.')));
    if (focus) tbody.querySelector('tr.focus')?.scrollIntoView({ block: 'nearest' });
  }

  async function editDef(d) {
    let text = DEF_TEMPLATE;
    if (d) {
      try {
        text = (await apiFull('GET', `/api/group-defs/${encodeURIComponent(d.id)}/yaml`)).text;
      } catch (err) {
        banner.textContent = errorText(err);
        return;
      }
    }
    const saved = await yamlDialog({
      title: d ? `Edit group ${d.id}` : 'Add group definition', text,
      save: (t) => api('POST', '/api/group-defs', { body: t, contentType: 'application/yaml' }),
    });
    if (saved) load();
  }

  async function removeDef(d) {
    if (!(await confirmDialog({ title: `Delete group ${d.id}?`, message: 'Its PCs leave the group at the next materializer pass (at once on this node).', confirmLabel: 'Delete', danger: true }))) return;
    try {
      await api('DELETE', `/api/group-defs/${encodeURIComponent(d.id)}`);
      load();
    } catch (err) {
      banner.textContent = errorText(err);
    }
  }

  async function load() {
    const res = await latest.run((signal) => Promise.all([
      api('GET', '/api/groups', { signal }),
      api('GET', '/api/group-defs', { signal }).catch(() => []),
    ]));
    if (!res) return;
    life.after(REFRESH_MS, load);
    if (!res.ok) {
      banner.textContent = errorText(res.error);
      return;
    }
    banner.textContent = '';
    render(res.value[0], res.value[1] || []);
  }

  load();
}
