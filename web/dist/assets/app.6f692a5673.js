// The dashboard's entry: routes each #/path to its page, owns the page's
// lifecycle (timers and requests stop when you leave), and wires the header.

import { start, parseHash, href, navigate } from './router.475a737da2.js';
import { api, setUnauthorized, forgetToken } from './api.21ab11d035.js';
import { loadMe, clearMe } from './auth.4b529e8847.js';
import { initThemeToggle } from './theme.9bc285ecbb.js';
import { Lifecycle } from './lifecycle.cf1e604c6c.js';
import { h, replace } from './dom.3dd86e8f14.js';
import * as activity from './page-activity.f18fd73ae6.js';
import * as result from './page-result.73f858b686.js';
import * as executions from './page-executions.6af734d37d.js';
import * as jobs from './page-jobs.8032129946.js';
import * as schedules from './page-schedules.4c018e82ad.js';
import * as agents from './page-agents.2741d2e3b1.js';
import * as login from './page-login.5bfd191224.js';
import * as password from './page-password.bf69382a72.js';
import * as setup from './page-setup.ce09595091.js';
import * as accounts from './page-accounts.75cdf5e15a.js';
import * as audit from './page-audit.79841239e5.js';
import * as home from './page-home.3ef7091d34.js';
import * as agent from './page-agent.cf1ae93915.js';
import * as groupsPage from './page-groups.837dd9cdfb.js';

const routes = [
  // Home is the landing page; '/' with a query is an Activity link made
  // before Activity had its own path, and still opens it.
  { re: /^\/$/, page: home, nav: 'home', when: (params) => [...params.keys()].length === 0 },
  { re: /^\/$/, page: activity, nav: 'activity' },
  { re: /^\/activity$/, page: activity, nav: 'activity' },
  { re: /^\/results\/([^/]+)$/, page: result, nav: 'activity' },
  { re: /^\/executions$/, page: executions.list, nav: 'executions' },
  { re: /^\/executions\/([^/]+)$/, page: executions.detail, nav: 'executions' },
  { re: /^\/jobs$/, page: jobs, nav: 'jobs' },
  { re: /^\/schedules$/, page: schedules, nav: 'schedules' },
  { re: /^\/agents$/, page: agents, nav: 'agents' },
  { re: /^\/agents\/([^/]+)$/, page: agent, nav: 'agents' },
  { re: /^\/groups$/, page: groupsPage, nav: 'groups' },
  { re: /^\/login$/, page: login, nav: null },
  { re: /^\/change-password$/, page: password, nav: null },
  { re: /^\/password-setup\/([^/]+)$/, page: setup, nav: null },
  { re: /^\/accounts$/, page: accounts, nav: 'accounts' },
  { re: /^\/audit$/, page: audit, nav: 'audit' },
];

// Mailed links are paths (/password-setup/{token}, as upstream's): turn one
// into this dashboard's hash route before anything asks who is logged in.
{
  const m = location.pathname.match(/^\/password-setup\/([^/]+)$/);
  if (m) history.replaceState(null, '', `/#/password-setup/${m[1]}`);
}

const notFound = {
  title: 'Not found',
  mount(main) {
    replace(main, h('section', { class: 'page', testid: 'not-found' },
      h('h1', {}, 'Not found'), h('p', {}, 'No such page. ', h('a', { href: '#/' }, 'Go home'))));
  },
};

const main = document.getElementById('main');
let current = null;

function show({ path, params }) {
  let match = null;
  let route = null;
  for (const r of routes) {
    match = path.match(r.re);
    if (match && (!r.when || r.when(params))) {
      route = r;
      break;
    }
  }
  const page = route ? route.page : notFound;
  const args = match ? match.slice(1).map(decodeURIComponent) : [];
  const key = `${path}:${route ? routes.indexOf(route) : -1}`;
  // Same page, other query (Back/Forward between filters): let it adapt.
  if (current && current.key === key && current.handle && current.handle.update) {
    current.handle.update(params);
    return;
  }
  if (current) current.life.dispose();
  const life = new Lifecycle();
  const handle = page.mount(main, { args, params, life });
  current = { key, life, handle };
  document.title = `${page.title} · kanade`;
  for (const a of document.querySelectorAll('[data-nav]')) {
    if (route && a.dataset.nav === route.nav) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
}

// A 401 anywhere: the session is gone (or there never was one); log in and
// come back here.
setUnauthorized((reason, hadToken) => {
  clearMe();
  const { path } = parseHash();
  if (path === '/login' || path.startsWith('/password-setup/')) return;
  const from = location.hash.replace(/^#/, '') || '/';
  // A first visit just needs a login; a session that ended says why.
  const why = hadToken ? `Your session ended (${reason || 'the server refused the token'}). Log in again.` : 'Log in to go on.';
  navigate(href('/login', { from, reason: why }));
});

document.querySelector('[data-testid="logout"]').addEventListener('click', () => {
  forgetToken();
  clearMe();
  navigate('/login');
});

document.querySelector('[data-testid="skip-link"]').addEventListener('click', () => main.focus());

initThemeToggle(document.querySelector('[data-testid="theme-toggle"]'));

api('GET', '/api/version').then(
  (v) => (document.querySelector('[data-testid="version"]').textContent = v && v.version ? `v${v.version}` : ''),
  () => {},
);

// The projection's health, in the header: results shown can only be as fresh
// as the projector that writes them. Hidden when no projector answers.
const projector = document.querySelector('[data-testid="projector-status"]');
async function pollProjector() {
  try {
    const st = await api('GET', '/api/projector/status');
    const lag = (st.streams || []).reduce((n, s) => n + (s.lag || 0), 0);
    projector.hidden = false;
    projector.dataset.state = st.caught_up ? 'ok' : 'behind';
    projector.textContent = st.caught_up ? '● in sync' : `● ${lag.toLocaleString()} behind`;
    projector.title = (st.streams || []).map((s) => `${s.stream}: lag ${s.lag}, ${s.rate_per_sec?.toFixed?.(1) ?? 0}/s`).join('\n');
  } catch {
    projector.hidden = true;
  }
  setTimeout(pollProjector, 15000);
}
pollProjector();

loadMe().finally(() => start(show));
