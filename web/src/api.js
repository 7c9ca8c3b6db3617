// The one way the dashboard talks to the backend: fetch under /api/, errors
// as ApiError carrying the server's plain-text message and HTTP status, and
// the bearer token (a login's, or the server's --api-token) sent with each.
// A 401 drops the token and hands over to the login page.

const TOKEN_KEY = 'kanade_token'; // upstream's key

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

let onUnauthorized = () => {};
let memoryToken = null; // when the browser blocks storage: kept for this page only

// setUnauthorized installs what a 401 does (go to the login page); it is
// called with the server's reason.
export function setUnauthorized(fn) {
  onUnauthorized = fn;
}

export function storedToken() {
  try {
    return localStorage.getItem(TOKEN_KEY) ?? memoryToken;
  } catch {
    return memoryToken;
  }
}

export function storeToken(token) {
  memoryToken = token;
  try {
    localStorage.setItem(TOKEN_KEY, token);
  } catch {
    // Storage blocked: the in-memory copy lasts until the page is closed.
  }
}

export function forgetToken() {
  memoryToken = null;
  try {
    localStorage.removeItem(TOKEN_KEY);
  } catch {
    // nothing stored
  }
}

// api('GET', '/api/results', {query: {limit: 50}}) -> parsed JSON, or null
// for an empty body (204); with text: true, the body as text. body: an
// object is sent as JSON, a string as-is with contentType. login: a 401 is
// the answer (wrong password), not a lost session.
export async function api(method, path, { query, body, contentType, signal, login = false, text: asText = false } = {}) {
  const res = await send(method, path, { query, body, contentType, signal, login });
  const text = await res.text();
  if (!res.ok) throw new ApiError(res.status, text.trim() || res.statusText || `HTTP ${res.status}`);
  if (asText) return text; // a non-JSON answer (a YAML mirror)
  if (text === '') return null;
  try {
    return JSON.parse(text);
  } catch {
    throw new ApiError(res.status, `bad JSON from ${path}`);
  }
}

// apiFull is api with the response beside the value: {value, text, headers,
// status}. value is the parsed JSON for a JSON answer, else null (a text
// answer, such as an agent's log, is in text). Paging headers
// (X-Total-Count) are in headers.
export async function apiFull(method, path, opts = {}) {
  const res = await send(method, path, opts);
  const text = await res.text();
  if (!res.ok) throw new ApiError(res.status, text.trim() || res.statusText || `HTTP ${res.status}`);
  const out = { value: null, text, headers: res.headers, status: res.status };
  if (text === '' || !(res.headers.get('Content-Type') || 'application/json').includes('json')) return out;
  try {
    out.value = JSON.parse(text);
  } catch {
    throw new ApiError(res.status, `bad JSON from ${path}`);
  }
  return out;
}

// apiBlob('/api/results/ID/output/stdout') -> the body as a Blob (a whole
// output, too big for JSON), with the token as api() sends it.
export async function apiBlob(path, { signal } = {}) {
  const res = await send('GET', path, { signal });
  if (!res.ok) throw new ApiError(res.status, (await res.text()).trim() || `HTTP ${res.status}`);
  return res.blob();
}

// send makes the request with the stored token. A 401 (unless login) drops
// the token and hands over to the login page.
async function send(method, path, { query, body, contentType, signal, login = false } = {}) {
  let url = path;
  if (query) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(query)) {
      if (v != null && v !== '') q.set(k, String(v));
    }
    const s = q.toString();
    if (s) url += '?' + s;
  }
  const headers = { 'X-Kanade-Source': 'spa' };
  const token = storedToken();
  if (token) headers.Authorization = 'Bearer ' + token;
  let payload;
  if (typeof body === 'string') {
    payload = body;
    headers['Content-Type'] = contentType || 'text/plain';
  } else if (body !== undefined) {
    payload = JSON.stringify(body);
    headers['Content-Type'] = 'application/json';
  }
  const res = await fetch(url, { method, headers, body: payload, signal, cache: 'no-store' });
  if (res.status === 401 && !login) {
    // Another request may have stored a fresh token meanwhile: retry with it.
    if (storedToken() && storedToken() !== token) return send(method, path, { query, body, contentType, signal });
    const text = (await res.text()).trim();
    if (token) forgetToken();
    onUnauthorized(text, Boolean(token));
    throw new ApiError(401, text || 'login required');
  }
  return res;
}

// isAbort tells a cancelled fetch (page left, newer request) from a failure.
export function isAbort(err) {
  return err && err.name === 'AbortError';
}
