// Hash routing: #/path?query. A link to any view, filters included, works in
// any deployment (no server rewrite rules needed), and filter edits replace
// the URL without re-mounting the page.

let onChange = () => {};
let rendered = null;

export function parseHash(hash = location.hash) {
  const raw = hash.replace(/^#/, '') || '/';
  const i = raw.indexOf('?');
  const path = i < 0 ? raw : raw.slice(0, i);
  return { path: path || '/', params: new URLSearchParams(i < 0 ? '' : raw.slice(i + 1)) };
}

export function href(path, params) {
  const q = params ? new URLSearchParams(params).toString() : '';
  return '#' + path + (q ? '?' + q : '');
}

// start calls fn({path, params}) for the current URL and every change.
export function start(fn) {
  onChange = fn;
  const check = () => {
    const hash = location.hash || '#/';
    if (hash === rendered) return;
    rendered = hash;
    onChange(parseHash(hash));
  };
  addEventListener('hashchange', check);
  addEventListener('popstate', check);
  check();
}

// setParams records a view's state in the URL without re-rendering it.
// push adds a history entry (Back returns to the previous state).
export function setParams(path, params, { push = false } = {}) {
  const url = href(path, params);
  if (url === (location.hash || '#/')) return;
  if (push) history.pushState(null, '', url);
  else history.replaceState(null, '', url);
  rendered = url;
}

export function navigate(url) {
  location.hash = url.replace(/^#/, '');
}
