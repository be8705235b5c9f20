// The session, shared by every tab of this browser and refreshed by one tab at a time.
//
// Tokens live in localStorage so a new tab or a reload starts logged in; every tab hears a change
// through the `storage` event. Refresh tokens rotate and the server revokes a session whose old refresh
// token comes back (reader/src/sessions.rs), so two tabs must never refresh with the same token: the
// refresh runs under a Web Lock, and inside it a tab first looks whether another tab refreshed already
// and takes those tokens instead. That look reads IndexedDB, not localStorage: Chromium copies
// localStorage to other tabs' processes asynchronously, so a tab that just got the lock may still see
// the old refresh token there (the two-tab test caught exactly that); IndexedDB's transactions are one
// store for every tab. Outages do not end a session: a refresh that cannot reach the server
// is retried with backoff for as long as the refresh token lives; only the server's "no such session"
// (401/400 on refresh) or the refresh token's own expiry ends it.
'use strict';

const KEY = 'fanline.session';
const LOCK = 'fanline.refresh';
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

let current = null; // SessionTokens + obtained (ms)
let timer = 0;
let inflight = null;
let wake = null; // resolves the backoff sleep early (the browser came online)
const handlers = { change: () => {}, end: () => {}, offline: () => {} };

/** `change(session)`: new tokens (this tab's refresh or another's); `end(message)`: logged out;
 * `offline(bool)`: a refresh could not reach the server (true) or got through again (false). */
export function on(events) { Object.assign(handlers, events); }

export const get = () => current;
export const user = () => (current ? current.user : '');

function parse(text) {
  try {
    const s = JSON.parse(text || 'null');
    return s && s.access_token && s.refresh_token && s.user ? s : null;
  } catch (_) {
    return null;
  }
}
const stored = () => parse(localStorage.getItem(KEY));

// The session as every tab sees it at once (see the top of this file); null when IndexedDB is not
// available, and then localStorage stands in.
let shared = null;
function idb(req) {
  return new Promise((resolve, reject) => { req.onsuccess = () => resolve(req.result); req.onerror = () => reject(req.error); });
}
async function sharedDb() {
  if (shared || !window.indexedDB) return shared;
  try {
    const req = indexedDB.open('fanline-session', 1);
    req.onupgradeneeded = () => req.result.createObjectStore('kv');
    shared = await idb(req);
  } catch (_) { shared = null; }
  return shared;
}
async function readShared() {
  const db = await sharedDb();
  if (!db) return stored();
  try { return parse(await idb(db.transaction('kv').objectStore('kv').get(KEY))) || stored(); } catch (_) { return stored(); }
}
async function writeShared(value) {
  const db = await sharedDb();
  if (!db) return;
  try {
    const store = db.transaction('kv', 'readwrite').objectStore('kv');
    await idb(value ? store.put(value, KEY) : store.delete(KEY));
  } catch (_) { /* localStorage still has it */ }
}
const refreshable = (s) => Date.now() < s.obtained + s.refresh_expires_in * 1000;
// The access token's last fifth (at least its last 5 s): time to refresh.
const expiring = (s) => Date.now() > s.obtained + s.expires_in * 1000 - Math.max(5000, s.expires_in * 200);

/** The session this browser holds, if it can still be refreshed. */
export function load() {
  const s = stored();
  current = s && refreshable(s) ? s : null;
  schedule();
  return current;
}

/** Starts a session from a login's tokens (every tab follows). */
export function start(tokens) {
  return save(tokens);
}

function save(tokens) {
  current = { ...tokens, obtained: Date.now() };
  localStorage.setItem(KEY, JSON.stringify(current));
  schedule();
  return writeShared(current);
}

/** Ends the session in every tab (`message` is shown on the login form). */
export function end(message = '') {
  clearTimeout(timer);
  const had = current;
  current = null;
  localStorage.removeItem(KEY);
  writeShared(null);
  if (had) handlers.end(message);
}

function schedule() {
  clearTimeout(timer);
  if (!current) return;
  const due = current.obtained + current.expires_in * 800 - Date.now();
  const token = current.access_token;
  timer = setTimeout(() => { refresh(token); }, Math.max(0, due));
}

// Another tab logged in, refreshed or logged out.
window.addEventListener('storage', (ev) => {
  if (ev.key !== KEY && ev.key !== null) return;
  const next = stored();
  if (!next) {
    if (current) { current = null; clearTimeout(timer); handlers.end('You logged out in another tab.'); }
    return;
  }
  if (current && next.user !== current.user) { location.reload(); return; }
  const fresh = !current;
  current = next;
  schedule();
  handlers.change(current, fresh);
});
window.addEventListener('online', () => { if (wake) wake(); });

/** Fresh tokens for a caller whose access token `stale` was refused or is about to expire: resolves
 * true once `get()` holds a usable one, false when the session ended. One refresh at a time in this
 * tab; across tabs, see the top of this file. */
export function refresh(stale = current && current.access_token) {
  if (!current) return Promise.resolve(false);
  if (current.access_token !== stale && !expiring(current)) return Promise.resolve(true);
  if (inflight) {
    // A caller got through to the server meanwhile: the network is back, retry now.
    if (wake) wake();
    return inflight;
  }
  inflight = retrying(stale).finally(() => { inflight = null; });
  return inflight;
}

let offline = false;
/** Whether the last refresh could not reach the server (and none got through since). */
export const isOffline = () => offline;
/** Whether the access token is past its lifetime (less 2 s). */
export const expired = () => !!current && Date.now() > current.obtained + current.expires_in * 1000 - 2000;

async function retrying(stale) {
  for (let attempt = 0; current; attempt++) {
    const outcome = await locked(() => refreshOnce(stale));
    offline = outcome === 'retry';
    if (outcome === 'ok') { handlers.offline(false); return true; }
    if (outcome === 'gone') {
      end('Your session ended. Please log in again.');
      return false;
    }
    handlers.offline(true);
    // 1, 2, 4, 8 s, then every 10 s (a reconnecting socket also asks, and waits for this).
    await Promise.race([sleep(Math.min(1000 * 2 ** attempt, 10000)), new Promise((r) => { wake = r; })]);
    wake = null;
  }
  return false;
}

function locked(fn) {
  // Without Web Locks (an old browser or an insecure origin) the storage check below still keeps
  // most races away.
  if (!navigator.locks) return fn();
  return navigator.locks.request(LOCK, fn);
}

// 'ok' (current holds usable tokens), 'gone' (the server says the session is over) or 'retry'.
async function refreshOnce(stale) {
  const s = await readShared();
  if (!s || (current && s.user !== current.user)) return 'gone';
  if (!refreshable(s)) return 'gone';
  if (s.access_token !== stale && !expiring(s)) {
    // Another tab refreshed while this one waited for the lock.
    current = s;
    schedule();
    handlers.change(current, false);
    return 'ok';
  }
  const abort = new AbortController();
  const timeout = setTimeout(() => abort.abort(), 15000);
  let res;
  try {
    res = await fetch('/v1/sessions/refresh', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ refresh_token: s.refresh_token }),
      signal: abort.signal,
    });
  } catch (_) {
    return 'retry';
  } finally {
    clearTimeout(timeout);
  }
  if (res.status === 401 || res.status === 400) {
    // Lost to a tab without locks that refreshed meanwhile: its tokens are good.
    const now = await readShared();
    if (now && now.refresh_token !== s.refresh_token) { current = now; schedule(); return 'ok'; }
    return 'gone';
  }
  if (!res.ok) return 'retry';
  let tokens;
  try { tokens = await res.json(); } catch (_) { return 'retry'; }
  await save(tokens);
  handlers.change(current, false);
  return 'ok';
}

/** Whether the access token should be refreshed before it is used. */
export const needsRefresh = () => !!current && expiring(current);
