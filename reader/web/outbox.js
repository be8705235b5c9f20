// Messages not yet accepted by the server, kept in IndexedDB so a reload, a closed tab or a crash
// loses none: the page sends them again in order with the same client_msg_id (the server applies a
// client_msg_id once). A message leaves the outbox when the server accepted it, or when the user
// gives up on a failed one. Without IndexedDB (some private modes) the outbox lives in memory and the
// page warns before it is closed with messages in it.
'use strict';

const DB = 'fanline';
const STORE = 'outbox';
let db = null;
const memory = new Map();

const done = (req) => new Promise((resolve, reject) => {
  req.onsuccess = () => resolve(req.result);
  req.onerror = () => reject(req.error);
});

/** Opens the database; false when IndexedDB is not available (memory only). */
export async function open() {
  if (db) return true;
  if (!window.indexedDB) return false;
  try {
    const req = indexedDB.open(DB, 1);
    req.onupgradeneeded = () => {
      const store = req.result.createObjectStore(STORE, { keyPath: 'client_msg_id' });
      store.createIndex('user', 'user');
    };
    db = await done(req);
    return true;
  } catch (_) {
    db = null;
    return false;
  }
}

export const durable = () => !!db;

function tx(mode) {
  return db.transaction(STORE, mode).objectStore(STORE);
}

/** Keeps (or updates) a record: {client_msg_id, user, conversation, frame, order, created_at, state, note}. */
export async function put(record) {
  memory.set(record.client_msg_id, record);
  if (db) {
    try { await done(tx('readwrite').put(record)); } catch (_) { /* memory still has it */ }
  }
}

export async function remove(id) {
  memory.delete(id);
  if (db) {
    try { await done(tx('readwrite').delete(id)); } catch (_) { /* gone with the page anyway */ }
  }
}

/** The user's records, oldest first. */
export async function list(user) {
  let records = [...memory.values()].filter((r) => r.user === user);
  if (db) {
    try { records = await done(tx('readonly').index('user').getAll(user)); } catch (_) { /* memory */ }
  }
  for (const r of records) memory.set(r.client_msg_id, r);
  return records.sort((a, b) => a.order - b.order);
}

/** Whether records of `user` are held only in memory (a close would lose them). */
export const atRisk = (user) => !db && [...memory.values()].some((r) => r.user === user);

/** Forgets the user's records (they logged out and chose to drop what was not sent). */
export async function clear(user) {
  for (const record of await list(user)) await remove(record.client_msg_id);
}
