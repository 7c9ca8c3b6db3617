// Who is logged in: GET /api/auth/me once per token, the role on <body> so
// that controls a role may not use are hidden (style.css: [data-min-role]),
// and the who-am-I menu in the header. The server enforces the tiers; this
// only keeps a viewer from being offered a Run or Kill it would be refused.

import { api } from './api.21ab11d035.js';

const RANK = { viewer: 1, operator: 2, admin: 3 };
let me = null;

export function currentUser() {
  return me;
}

// hasRole tells whether the caller has at least tier (unknown yet: no).
export function hasRole(tier) {
  return Boolean(me) && (RANK[me.role] || 0) >= RANK[tier];
}

// loadMe asks who the token is and shows it; null when logged out.
export async function loadMe() {
  try {
    me = await api('GET', '/api/auth/me');
  } catch {
    me = null;
  }
  show();
  return me;
}

export function clearMe() {
  me = null;
  show();
}

// canSee tells whether the caller's page features include feature (an
// unrestricted caller sees every page).
export function canSee(feature) {
  return !me || !Array.isArray(me.allowed_features) || me.allowed_features.includes(feature);
}

function show() {
  document.body.dataset.role = me ? me.role : 'none';
  for (const el of document.querySelectorAll('[data-feature]')) el.classList.toggle('no-feature', !canSee(el.dataset.feature));
  const who = document.querySelector('[data-testid="whoami"]');
  if (!who) return;
  who.hidden = !me;
  who.querySelector('[data-testid="whoami-name"]').textContent = me ? me.username : '';
  who.querySelector('[data-testid="whoami-role"]').textContent = me ? me.role : '';
  // Accounts without a password (the API token, an open first start) have
  // none to change.
  who.querySelector('[data-testid="change-password-link"]').hidden = !me || ['service-token', 'loopback'].includes(me.username);
}
