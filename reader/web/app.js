// Fanline web chat client: plain ES2020 modules, no dependencies, no build step. Served by the reader
// at `/`. The session (session.js) and the outbox (outbox.js) are modules of their own; this one is
// the page: realtime, conversations, messages, groups, search and the feed.
import * as session from '/session.js';
import * as outbox from '/outbox.js';

(() => {
  const $ = (sel) => document.querySelector(sel);
  const ID_RE = /^[A-Za-z0-9_.-]{1,64}$/;
  const MAX_BODY = 4096;
  // The server counts characters (code points): an emoji is one, not the two UTF-16 units of .length.
  const charCount = (s) => { let n = 0; for (const _ of s) n += 1; return n; };
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const hex = (n) => Array.from(crypto.getRandomValues(new Uint8Array(n)), (b) => b.toString(16).padStart(2, '0')).join('');
  const enc = encodeURIComponent;
  // Conversation ids hold ':' which is fine in a path segment; the rest of their alphabet is URL-safe.
  const encConv = (id) => id.split(':').map(enc).join(':');

  const S = {
    ingest: '',
    ws: null,
    ready: false, // hello received on the current socket
    backoff: 300,
    reconnectTimer: 0,
    pingTimer: 0,
    lastSeq: 0,
    pending: new Map(), // request_id -> {frame, msg, tries}
    sending: null, // client_msg_id of the outbox message on the wire (one at a time: in order)
    convs: [],
    convsLoaded: false,
    convEls: new Map(),
    blocked: new Set(), // users this user blocked
    invitations: [],
    muteWanted: new Map(), // conversation id -> muted, chosen here and not yet shown by the server
    names: new Map(), // user -> display name ('' when they have none), for titles, senders, avatars
    convGen: 0,
    convTimer: 0,
    stores: new Map(), // conversation id -> {msgs: Map key->msg, byMid: Map, loaded, hasMore}
    open: null,
    readSent: new Map(),
    order: 0,
    tab: 'chats',
    feedTimer: 0,
    feedGen: 0,
    historyTimer: 0,
    forceScroll: false,
    view: null, // {conv, st}: a window of older history around a search hit, shown instead of the store
    hit: null, // {conv, seq}: the message a search jumped to
    searchGen: 0,
    jumpGen: 0,
  };
  const me = session.user;

  // ---------------------------------------------------------------- HTTP
  const configReady = fetch('/config.json')
    .then((r) => (r.ok ? r.json() : Promise.reject(new Error('no config'))))
    .then((c) => { S.ingest = String(c.ingest_url || '').replace(/\/+$/, ''); })
    .catch(() => { S.ingest = `${location.protocol}//${location.hostname}:8080`; });

  class ApiError extends Error {
    constructor(status, message, field, retryAfter) {
      super(message);
      this.status = status;
      this.field = field || null;
      this.retryAfter = retryAfter;
    }
  }

  async function api(method, path, body, opts = {}) {
    const { ingest = false, auth = true, retry = true } = opts;
    if (ingest) await configReady;
    // An expired token is refreshed first, unless the server is out of reach (the request would fail
    // anyway: it says so at once instead of waiting out the outage).
    if (auth && session.expired() && !session.isOffline()) await session.refresh();
    const token = auth && session.get() ? session.get().access_token : '';
    const headers = {};
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    if (token) headers.Authorization = `Bearer ${token}`;
    let res;
    try {
      res = await fetch((ingest ? S.ingest : '') + path, {
        method, headers, body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (_) {
      throw new ApiError(0, 'Network error: the server cannot be reached.');
    }
    if (res.status === 401 && token && retry) {
      if (await session.refresh(token)) return api(method, path, body, { ...opts, retry: false });
    }
    if (!res.ok) {
      let j = null;
      try { j = await res.json(); } catch (_) { /* not JSON */ }
      throw new ApiError(res.status, (j && j.error) || `HTTP ${res.status}`, j && j.field, res.headers.get('Retry-After'));
    }
    if (res.status === 204) return null;
    const text = await res.text();
    return text ? JSON.parse(text) : null;
  }

  const errText = (e) => {
    let t = e && e.message ? e.message : String(e);
    if (e && e.status === 429 && e.retryAfter) t += ` (try again in ${e.retryAfter} s)`;
    return t;
  };

  // Shows an error where it happened. One the network caused clears itself once the socket is back
  // (`clearNetworkErrors`): a stale "cannot be reached" beside "online" says something false.
  function showError(sel, e) {
    const el = $(sel);
    el.textContent = typeof e === 'string' ? e : errText(e);
    el.dataset.cause = e && e.status === 0 ? 'network' : '';
  }
  function clearNetworkErrors() {
    for (const el of document.querySelectorAll('.error[data-cause="network"]')) {
      el.textContent = '';
      el.dataset.cause = '';
    }
  }

  // ---------------------------------------------------------------- session
  function creds() {
    return { user: $('#auth-user').value.trim(), password: $('#auth-password').value };
  }

  function checkCreds(c) {
    if (!ID_RE.test(c.user)) return 'The user id is 1 to 64 letters, digits, "_", "." or "-".';
    if (c.password.length < 8) return 'The password needs at least 8 characters.';
    return '';
  }

  function authBusy(busy) {
    $('#auth-login').disabled = busy;
    $('#auth-register').disabled = busy;
  }

  const idState = async (user) => (await api('GET', `/v1/accounts/${enc(user)}/availability`, undefined, { auth: false })).state;

  // After a registration: fanout applies the account a moment later, so a 401 is retried a few times
  // with a growing pause (not fast enough to spend the address's login budget). If the id meanwhile
  // shows as taken and the password still fails, someone else's registration of it came first.
  async function loginAfterRegistering(c) {
    for (let attempt = 0; ; attempt++) {
      try {
        return await api('POST', '/v1/sessions', c, { auth: false });
      } catch (e) {
        if (e.status === 429 && attempt < 6) { await sleep(Math.max(1, Number(e.retryAfter || 1)) * 1000); continue; }
        if (e.status !== 401) throw e;
        if (attempt >= 6) throw new ApiError(401, 'The account is not ready yet: try logging in in a moment.');
        if (attempt >= 2 && (await idState(c.user).catch(() => 'free')) === 'taken') {
          throw new ApiError(409, `"${c.user}" was just taken by someone else: pick another id.`);
        }
        await sleep(300 * 2 ** attempt);
      }
    }
  }

  async function onAuth(register) {
    const c = creds();
    const problem = checkCreds(c);
    const out = $('#auth-error');
    if (problem) { out.textContent = problem; return; }
    out.textContent = register ? 'Registering…' : 'Logging in…';
    authBusy(true);
    try {
      let t;
      if (register) {
        const state = await idState(c.user);
        if (state === 'taken') throw new ApiError(409, `"${c.user}" is taken: log in, or pick another id.`);
        if (state === 'reserved') throw new ApiError(409, `"${c.user}" is reserved: pick another id.`);
        await api('POST', '/v1/accounts', c, { ingest: true, auth: false });
        t = await loginAfterRegistering(c);
      } else {
        t = await api('POST', '/v1/sessions', c, { auth: false });
      }
      out.textContent = '';
      $('#auth-password').value = '';
      session.start(t);
      startApp();
    } catch (e) {
      out.textContent = errText(e);
    } finally {
      authBusy(false);
    }
  }

  function resetState() {
    clearTimeout(S.reconnectTimer);
    clearInterval(S.pingTimer);
    clearTimeout(S.convTimer);
    clearTimeout(S.feedTimer);
    clearTimeout(S.historyTimer);
    if (S.ws) {
      const ws = S.ws;
      S.ws = null;
      try { ws.close(1000, 'bye'); } catch (_) { /* already closed */ }
    }
    Object.assign(S, {
      ready: false, backoff: 300, lastSeq: 0, convs: [], convsLoaded: false, open: null, tab: 'chats',
      blocked: new Set(), invitations: [], muteWanted: new Map(), view: null, hit: null, sending: null,
    });
    S.searchGen += 1;
    S.pending.clear();
    S.convEls.clear();
    S.stores.clear();
    S.readSent.clear();
    S.names.clear();
    outboxed.clear();
    $('#conversations').replaceChildren();
    $('#messages').replaceChildren();
    $('#members').replaceChildren();
    $('#feed').replaceChildren();
    $('#search-people').replaceChildren();
    $('#search-messages').replaceChildren();
    $('#search-results').hidden = true;
    $('#search-q').value = '';
    $('#search-go').disabled = false;
    setTotal(0);
    for (const id of ['#side-error', '#chat-error', '#feed-error']) $(id).textContent = '';
  }

  // The session ended (here, in another tab, or on the server's word): back to the login form.
  function showLogin(message) {
    resetState();
    // The next user's page starts at the list, not at this user's open chat.
    if (location.hash) history.replaceState(null, '', location.pathname + location.search);
    setStatus('offline');
    $('#app').hidden = true;
    $('#auth').hidden = false;
    $('#auth-error').textContent = message || '';
    $('#auth-user').focus();
  }

  // Logging out leaves nothing of this user's behind: unsent messages go too, once the user agrees.
  async function logout() {
    const unsent = outboxed.size;
    if (unsent > 0 && !window.confirm(`${unsent} message${unsent > 1 ? 's are' : ' is'} not sent yet. Log out and discard ${unsent > 1 ? 'them' : 'it'}?`)) return;
    await outbox.clear(me());
    $('#logout').disabled = true;
    try { await api('DELETE', '/v1/sessions/current', undefined, { retry: false }); } catch (_) { /* leave anyway */ }
    $('#logout').disabled = false;
    session.end('');
  }

  function startApp() {
    resetState();
    $('#auth').hidden = true;
    $('#app').hidden = false;
    $('#me').textContent = me();
    setStatus('offline');
    selectTab('chats');
    showChat(null);
    loadConversations();
    loadLists();
    loadOutbox().then(() => connect());
    const fromUrl = routeConversation();
    if (fromUrl) openConversation(fromUrl, { fromRoute: true });
  }

  // ---------------------------------------------------------------- realtime
  function setStatus(text) {
    const el = $('#status');
    if (el.textContent !== text) el.textContent = text;
    el.dataset.state = text;
  }

  function deviceId() {
    const key = `fanline.device.${me()}`;
    let id = localStorage.getItem(key);
    if (!id || !ID_RE.test(id)) {
      id = `web-${hex(8)}`;
      localStorage.setItem(key, id);
    }
    return id;
  }

  async function connect() {
    clearTimeout(S.reconnectTimer);
    if (!session.get() || S.ws) return;
    if (S.staleToken || session.needsRefresh()) {
      const stale = S.staleToken || session.get().access_token;
      S.staleToken = null;
      // Waits out an outage (session.js retries); false only when the session ended.
      if (!(await session.refresh(stale))) return;
      if (S.ws || !session.get()) return;
    }
    const proto = location.protocol === 'https:' ? 'wss' : 'ws';
    // The token goes in the first frame, not the URL (URLs end up in logs and histories).
    const url = `${proto}://${location.host}/v1/ws?device=${enc(deviceId())}`;
    const token = session.get().access_token;
    let ws;
    try { ws = new WebSocket(url); } catch (_) { scheduleReconnect(); return; }
    S.ws = ws;
    S.ready = false;
    ws.onopen = () => { if (S.ws === ws) ws.send(JSON.stringify({ type: 'auth', access_token: token })); };
    ws.onmessage = (ev) => {
      if (S.ws !== ws) return;
      let f;
      try { f = JSON.parse(ev.data); } catch (_) { return; }
      onFrame(f);
    };
    ws.onclose = (ev) => {
      if (S.ws !== ws) return;
      S.ws = null;
      S.ready = false;
      clearInterval(S.pingTimer);
      if (!session.get()) return;
      setStatus('reconnecting');
      renderMessages();
      // 4001: the token expired; 4002: the session may have ended. A refresh tells which.
      if (ev.code === 4001 || ev.code === 4002) {
        S.staleToken = token;
        S.backoff = 300;
      }
      scheduleReconnect();
    };
  }

  function scheduleReconnect() {
    clearTimeout(S.reconnectTimer);
    const delay = S.backoff;
    S.backoff = Math.min(S.backoff * 2, 5000);
    S.reconnectTimer = setTimeout(connect, delay);
  }

  function wsSend(frame) {
    if (!S.ws || !S.ready || S.ws.readyState !== WebSocket.OPEN) return false;
    S.ws.send(JSON.stringify(frame));
    return true;
  }

  // Sends a request frame now if the socket is up, else after the next hello (sends are idempotent).
  function request(frame, msg = null, tries = 0) {
    if (frame.type === 'read') {
      for (const [rid, p] of S.pending) {
        if (p.frame.type === 'read' && p.frame.conversation === frame.conversation) S.pending.delete(rid);
      }
    }
    const rid = `r${++S.order}-${hex(4)}`;
    const full = { ...frame, request_id: rid };
    S.pending.set(rid, { frame: full, msg, tries });
    wsSend(full);
    return rid;
  }

  function onFrame(f) {
    switch (f.type) {
      case 'hello':
        S.ready = true;
        S.backoff = 300;
        setStatus('online');
        clearNetworkErrors();
        clearInterval(S.pingTimer);
        S.pingTimer = setInterval(() => wsSend({ type: 'ping' }), Math.max(1, f.heartbeat_secs || 30) * 1000);
        for (const p of S.pending.values()) wsSend(p.frame);
        pump();
        scheduleConvs(0);
        if (S.open) scheduleHistory();
        renderMessages();
        break;
      case 'ping': wsSend({ type: 'pong' }); break;
      case 'sync': onSync(f); break;
      case 'reset': onReset(f); break;
      case 'accepted': onAccepted(f); break;
      case 'error': onError(f); break;
      default: break;
    }
  }

  function onAccepted(f) {
    const p = S.pending.get(f.request_id);
    if (!p) return;
    S.pending.delete(f.request_id);
    if (p.frame.type === 'read') {
      reconcileRead(p.frame.conversation, p.frame.seq, 0);
      return;
    }
    const m = p.msg;
    if (!m) return;
    if (m.seq == null && f.message_id) {
      const st = store(m.conversation);
      if (!m.message_id) { m.message_id = f.message_id; st.byMid.set(f.message_id, m); }
    }
    if (m.status === 'queued') m.status = 'accepted';
    sent(m);
  }

  function onError(f) {
    const p = f.request_id && S.pending.get(f.request_id);
    if (!p) return;
    S.pending.delete(f.request_id);
    if (p.frame.type === 'read') {
      S.readSent.delete(p.frame.conversation);
      return;
    }
    const m = p.msg;
    if (!m) return;
    if (f.status === 429 || f.status >= 500) {
      // Passing (a budget, an outage behind the reader): the same message again, still first in line.
      const wait = Math.min(1000 * 2 ** p.tries, 15000);
      m.note = `retrying: ${f.error || 'the server is busy'}`;
      setTimeout(() => { if (session.get() && S.sending === m.client_msg_id) request(p.frame, m, p.tries + 1); }, wait);
      if (S.open === m.conversation) renderMessages();
      return;
    }
    fail(m, f.error || 'not sent');
  }

  // ---------------------------------------------------------------- outbox
  // Messages go out one at a time, in the order they were written: the next once the server took the
  // one before (or refused it for good). Each is kept in outbox.js until then, so a reload sends it.
  const outboxed = new Map(); // client_msg_id -> {record, m}
  let outboxOrder = 0;
  const nextOrder = () => { outboxOrder = Math.max(Date.now(), outboxOrder + 1); return outboxOrder; };

  async function loadOutbox() {
    const user = me();
    await outbox.open();
    for (const record of await outbox.list(user)) {
      if (me() !== user || outboxed.has(record.client_msg_id)) continue;
      const m = messageOf(record);
      store(record.conversation).msgs.set(m.key, m);
      outboxed.set(record.client_msg_id, { record, m });
    }
    if (S.open) renderMessages();
  }

  function messageOf(record) {
    return {
      key: record.client_msg_id, client_msg_id: record.client_msg_id, conversation: record.conversation,
      sender: record.user, body: record.frame.body || '', status: record.state === 'failed' ? 'failed' : 'queued',
      note: record.note || '', order: ++S.order, created_at: record.created_at, seq: null, message_id: '', el: null,
      reply_to: record.quote || null, content_type: record.frame.content_type || 'text',
      attachments: record.frame.attachments || [], frame: record.frame,
    };
  }

  // Queues a send frame (without request_id) as a new message in `conv`; returns the message.
  function enqueue(conv, frame, extra = {}) {
    const cid = `c-${hex(16)}`;
    const record = {
      client_msg_id: cid, user: me(), conversation: conv, frame: { ...frame, client_msg_id: cid },
      order: nextOrder(), created_at: new Date().toISOString(), state: 'queued', note: '', quote: extra.quote || null,
    };
    const m = messageOf(record);
    if (extra.local) m.local = extra.local;
    store(conv).msgs.set(m.key, m);
    outboxed.set(cid, { record, m });
    outbox.put(record).then(pump);
    return m;
  }

  function pump() {
    if (S.sending || !S.ready) return;
    const next = [...outboxed.values()].filter((o) => o.record.state === 'queued')
      .sort((a, b) => a.record.order - b.record.order)[0];
    if (!next) return;
    S.sending = next.record.client_msg_id;
    request({ type: 'send', ...next.record.frame }, next.m);
  }

  // The server took it: out of the outbox, and the next one goes.
  function sent(m) {
    outboxed.delete(m.client_msg_id);
    outbox.remove(m.client_msg_id);
    m.note = '';
    if (S.sending === m.client_msg_id) S.sending = null;
    pump();
    if (S.open === m.conversation) renderMessages();
  }

  // Refused for good (a 4xx): kept, marked, with Retry and Discard; the next one goes.
  function fail(m, why) {
    m.status = 'failed';
    m.note = `Not sent: ${why}`;
    const o = outboxed.get(m.client_msg_id);
    if (o) { o.record.state = 'failed'; o.record.note = m.note; outbox.put(o.record); }
    if (S.sending === m.client_msg_id) S.sending = null;
    pump();
    if (S.open === m.conversation) renderMessages();
  }

  // Retry: a failed message goes again with its client_msg_id (the server never took it), at the end
  // of the line; a refused one (the server took and refused it) as a new message with a new id.
  function retry(m) {
    const o = outboxed.get(m.client_msg_id);
    if (m.status === 'failed' && o) {
      Object.assign(o.record, { state: 'queued', note: '', order: nextOrder() });
      Object.assign(m, { status: 'queued', note: '' });
      outbox.put(o.record).then(pump);
    } else if (m.status === 'refused') {
      discard(m);
      const frame = { ...m.frame };
      delete frame.client_msg_id;
      enqueue(m.conversation, frame, { quote: m.reply_to });
    }
    S.forceScroll = true;
    renderMessages();
  }

  function discard(m) {
    outboxed.delete(m.client_msg_id);
    outbox.remove(m.client_msg_id);
    const st = S.stores.get(m.conversation);
    if (st) { st.msgs.delete(m.key); if (m.message_id) st.byMid.delete(m.message_id); }
    renderMessages();
  }

  // Retention removed sync entries this device never got (new messages, recalls, invitations): what
  // they said is in the contact list and the histories, so reload those and the feed, and go on after
  // the floor. Closed chats are dropped and load again when opened.
  function onReset(f) {
    if (typeof f.floor_seq !== 'number') return;
    if (f.floor_seq > S.lastSeq) S.lastSeq = f.floor_seq;
    for (const id of [...S.stores.keys()]) if (id !== S.open) S.stores.delete(id);
    scheduleConvs(0);
    loadLists();
    if (S.open) { loadHistory(S.open); scheduleHistory(); }
    if (S.tab === 'feed') scheduleFeed(0);
    wsSend({ type: 'ack', seq: f.floor_seq });
  }

  function onSync(f) {
    let any = false;
    let posts = false;
    let openTouched = false;
    for (const e of f.entries || []) {
      if (e.seq <= S.lastSeq) continue;
      S.lastSeq = e.seq;
      any = true;
      if (e.kind === 'post') posts = true;
      else if (e.kind === 'message') applyMessage(e);
      else if (e.kind === 'recall') applyRecall(e);
      else if (e.kind === 'refused') applyRefused(e);
      else if (e.kind === 'invitation') loadLists();
      else if (e.kind === 'edit' || e.kind === 'reaction') applyChange(e);
      if (e.conversation_id && e.conversation_id === S.open) openTouched = true;
    }
    for (const c of f.conversations || []) {
      any = true;
      const view = S.view && S.view.conv === c.conversation_id ? S.view.st : null;
      for (const st of [S.stores.get(c.conversation_id), view]) {
        if (!st || !c.recalled) continue;
        for (const m of st.msgs.values()) if (c.recalled.includes(m.seq)) markRecalled(m);
      }
      for (const seq of c.changed || []) refetch(c.conversation_id, seq);
      if (c.conversation_id === S.open) { openTouched = true; scheduleHistory(); }
    }
    if (typeof f.last_seq === 'number') {
      if (f.last_seq > S.lastSeq) S.lastSeq = f.last_seq;
      wsSend({ type: 'ack', seq: f.last_seq });
    }
    if (any) scheduleConvs();
    if (posts && S.tab === 'feed') scheduleFeed(0);
    if (openTouched) renderMessages();
  }

  // ---------------------------------------------------------------- messages
  function store(id) {
    let st = S.stores.get(id);
    if (!st) {
      st = { msgs: new Map(), byMid: new Map(), loaded: false, hasMore: false };
      S.stores.set(id, st);
    }
    return st;
  }

  const maxSeq = (st) => { let n = 0; for (const m of st.msgs.values()) if (m.seq > n) n = m.seq; return n; };

  // Own messages still waiting for their seq, oldest first (a retried send's accepted id may differ
  // from the id its sync entry carries, so these are matched by body).
  const unsequencedOwn = (st) => [...st.msgs.values()]
    .filter((m) => m.sender === me() && m.seq == null && (m.status === 'queued' || m.status === 'accepted' || m.status === 'sent'))
    .sort((a, b) => a.order - b.order);

  // Merges a history message or a sync `message` entry (author renamed to sender).
  function upsert(conv, st, x) {
    let m = x.message_id && st.byMid.get(x.message_id);
    if (!m && x.sender === me()) m = unsequencedOwn(st).find((o) => o.body === x.body);
    if (!m) {
      m = { key: x.message_id, conversation: conv, order: ++S.order, el: null };
      st.msgs.set(m.key, m);
    }
    if (m.message_id && m.message_id !== x.message_id) st.byMid.delete(m.message_id);
    Object.assign(m, {
      seq: x.seq, message_id: x.message_id, sender: x.sender, body: x.body || '',
      recalled: !!x.recalled, erased: !!x.sender_deleted, created_at: x.created_at,
      content_type: x.content_type || 'text', attachments: x.attachments || [],
    });
    // A sync entry does not carry these; a history page does.
    if (x.fromHistory) {
      Object.assign(m, {
        reply_to: x.reply_to || null, reactions: x.reactions || [], version: x.version || 1,
        edited: !!x.edited_at,
      });
    }
    // Stored is all this says; receipts (ticks) say more.
    if (m.sender === me() && m.status !== 'refused') { m.status = 'sent'; m.note = ''; }
    st.byMid.set(m.message_id, m);
    return m;
  }

  function applyMessage(e) {
    // Removed by the conversation's retention since: history starts after it.
    if (!e.conversation_id || !e.message_id || e.expired) return;
    const st = store(e.conversation_id);
    const top = maxSeq(st);
    if (st.loaded && e.conversation_id === S.open && top > 0 && e.conversation_seq > top + 1) scheduleHistory();
    upsert(e.conversation_id, st, {
      seq: e.conversation_seq, message_id: e.message_id, sender: e.author, body: e.body,
      recalled: e.recalled, created_at: e.created_at, content_type: e.content_type,
      attachments: e.attachments,
    });
  }

  function findIn(st, e) {
    if (!st) return null;
    const m = st.byMid.get(e.message_id);
    if (m) return m;
    if (e.conversation_seq != null) {
      for (const o of st.msgs.values()) if (o.seq === e.conversation_seq) return o;
    }
    return null;
  }

  function findMessage(e) {
    const stores = e.conversation_id ? [S.stores.get(e.conversation_id)] : [...S.stores.values()];
    for (const st of stores) {
      const m = findIn(st, e);
      if (m) return m;
    }
    return null;
  }

  function markRecalled(m) {
    m.recalled = true;
    m.body = '';
  }

  function applyRecall(e) {
    for (const m of [findMessage(e), S.view && findIn(S.view.st, e)]) if (m) markRecalled(m);
  }

  const reasonText = (r) => (r || 'refused').replace(/_/g, ' ');

  function applyRefused(e) {
    if (e.action) { applyRefusedWrite(e); return; }
    let m = findMessage(e);
    if (!m && e.conversation_id && S.stores.has(e.conversation_id)) m = unsequencedOwn(S.stores.get(e.conversation_id))[0];
    if (!m) {
      if (e.conversation_id === S.open) showError('#chat-error', `A message was refused: ${reasonText(e.reason)}`);
      return;
    }
    m.status = 'refused';
    m.note = `Not delivered: ${reasonText(e.reason)}`;
  }

  // What a refused write other than a message said, and where the page shows it.
  const REFUSED = {
    group_create: (e) => [`Group "${e.subject}" was not created: ${e.reason === 'not_allowed' ? 'that id is taken' : reasonText(e.reason)}.`, '#side-error'],
    member_add: (e) => [`${nameOf(e.subject)} was not added or invited: ${reasonText(e.reason)}.`, '#chat-error'],
    member_remove: (e) => [`${nameOf(e.subject)} was not removed: ${reasonText(e.reason)}.`, '#chat-error'],
    edit: (e) => [`Your edit was not applied: ${reasonText(e.reason)}.`, '#chat-error'],
    reaction_add: (e) => [`Your reaction was not applied: ${reasonText(e.reason)}.`, '#chat-error'],
    reaction_remove: (e) => [`Your reaction was not removed: ${reasonText(e.reason)}.`, '#chat-error'],
  };

  // Shown in the open chat when it is about it, else beside the conversation list.
  function applyRefusedWrite(e) {
    const say = REFUSED[e.action];
    const [text, where] = say ? say(e) : [`Refused: ${reasonText(e.reason)}.`, '#chat-error'];
    const here = e.conversation_id && e.conversation_id === S.open && where !== '#side-error';
    showError(here ? where : '#side-error', text);
    if (e.action === 'group_create' && S.open === e.conversation_id) closeChat();
    if (e.action === 'member_add' && here) $('#member-note').textContent = '';
    // What the page showed at once goes back to what the server has.
    const m = e.action === 'edit' ? findMessage({ conversation_id: e.conversation_id, message_id: e.subject }) : null;
    const seq = m ? m.seq : Number(e.subject);
    if ((e.action === 'edit' || e.action.startsWith('reaction')) && seq > 0) refetch(e.conversation_id, seq);
  }

  function msgEl(m) {
    const li = document.createElement('li');
    li.className = 'message';
    li.innerHTML = '<div class="meta"><span class="sender"></span><time></time><span class="edited"></span>'
      + '<span class="status"></span></div><div class="quote"></div><div class="attachments"></div>'
      + '<div class="body"></div><div class="reactions"></div><div class="note"></div>'
      + '<div class="actions"><button type="button" class="link" data-action="reply">Reply</button>'
      + '<button type="button" class="link" data-action="react" aria-label="React with a thumbs up">👍</button>'
      + '<button type="button" class="link" data-action="edit">Edit</button></div>'
      + '<div class="fix" hidden><button type="button" class="small" data-action="retry">Retry</button>'
      + '<button type="button" class="small secondary" data-action="discard">Discard</button></div>';
    return li;
  }

  const dateFmt = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });
  function setTime(el, iso, format = whenText) {
    if (!iso || el.dateTime === iso) return;
    const d = new Date(iso);
    if (Number.isNaN(d.getTime())) return;
    el.dateTime = iso;
    el.textContent = typeof format === 'function' ? format(d) : format.format(d);
    el.title = fullFmt.format(d);
  }

  function setText(el, text) { if (el.textContent !== text) el.textContent = text; }

  function updateMsgEl(m) {
    const li = m.el;
    const own = m.sender === me();
    li.dataset.messageId = m.message_id || '';
    li.dataset.seq = m.seq == null ? '' : String(m.seq);
    li.dataset.state = m.status || '';
    li.classList.toggle('own', own);
    li.classList.toggle('recalled', !!m.recalled);
    li.classList.toggle('erased', !!m.erased && !m.recalled);
    li.classList.toggle('hit', !!(S.hit && S.hit.conv === m.conversation && S.hit.seq === m.seq));
    if (!own) learnName(m.sender);
    setText(li.querySelector('.sender'), own ? `${nameOf(m.sender)} (you)` : nameOf(m.sender));
    li.querySelector('.sender').title = `@${m.sender}`;
    setTime(li.querySelector('time'), m.created_at);
    setText(li.querySelector('.body'), m.recalled ? '' : m.body);
    const tick = own ? tickOf(m) : '';
    li.dataset.tick = tick;
    setText(li.querySelector('.status'), own ? (TICKS[tick] || m.status || '') : '');
    setText(li.querySelector('.note'), m.note || '');
    setText(li.querySelector('.edited'), m.edited && !m.recalled ? '(edited)' : '');
    setText(li.querySelector('.quote'), quoteText(m.reply_to));
    renderAttachments(li.querySelector('.attachments'), m.recalled ? [] : (m.attachments || []), m.local);
    renderReactions(li.querySelector('.reactions'), m.recalled ? [] : (m.reactions || []));
    const live = m.seq != null && !m.recalled && !m.erased;
    li.querySelector('.actions').hidden = !live;
    li.querySelector('[data-action="edit"]').hidden = !own || !(m.content_type || 'text').match(/^(text|markdown)$/);
    li.querySelector('.fix').hidden = !own || !m.frame || (m.status !== 'failed' && m.status !== 'refused');
  }

  const cmpMsg = (a, b) => {
    if (a.seq != null && b.seq != null) return a.seq - b.seq;
    if (a.seq != null) return -1;
    if (b.seq != null) return 1;
    return a.order - b.order;
  };

  // The messages on screen: a search hit's window of history, or the conversation's store.
  const shown = () => (S.view && S.view.conv === S.open ? S.view.st : S.open && S.stores.get(S.open));

  function renderMessages() {
    const ul = $('#messages');
    const st = shown();
    if (!st) { ul.replaceChildren(); $('#chat-none').hidden = true; return; }
    const nearBottom = ul.scrollHeight - ul.scrollTop - ul.clientHeight < 60;
    let prev = null;
    for (const m of [...st.msgs.values()].sort(cmpMsg)) {
      if (!m.el) m.el = msgEl(m);
      updateMsgEl(m);
      const want = prev ? prev.nextSibling : ul.firstChild;
      if (want !== m.el) ul.insertBefore(m.el, want);
      prev = m.el;
    }
    for (let extra = prev ? prev.nextSibling : ul.firstChild; extra; extra = prev ? prev.nextSibling : ul.firstChild) extra.remove();
    if (nearBottom || S.forceScroll) ul.scrollTop = ul.scrollHeight;
    S.forceScroll = false;
    $('#load-older').hidden = !st.hasMore;
    $('#older-removed').hidden = st.hasMore || !st.olderRemoved;
    $('#load-newer').hidden = st !== (S.view && S.view.st);
    $('#back-to-latest').hidden = $('#load-newer').hidden;
    // An empty chat says what to do (once its history is known to be empty).
    $('#chat-none').hidden = !(st.loaded && st.msgs.size === 0);
    maybeRead();
  }

  function maybeRead() {
    const id = S.open;
    if (!id || S.tab !== 'chats' || document.visibilityState !== 'visible') return;
    if (S.view && S.view.conv === id) return; // older history on screen: the new messages are unseen
    const st = S.stores.get(id);
    if (!st) return;
    const top = maxSeq(st);
    const summary = S.convs.find((c) => c.conversation_id === id);
    const known = Math.max(S.readSent.get(id) || 0, summary && !summary.unread ? summary.read_seq : 0);
    if (top <= known) return;
    S.readSent.set(id, top);
    request({ type: 'read', conversation: id, seq: top });
    scheduleConvs();
    setTimeout(() => scheduleConvs(0), 500);
  }

  const historyPage = (id, q) => api('GET', `/v1/conversations/${encConv(id)}/messages?${q}`);

  // Loads the latest page (or, with `after`, what came after the newest message held).
  async function loadHistory(id, attempt = 0, after = false) {
    const st = store(id);
    const from = after ? maxSeq(st) : 0;
    const q = from > 0 ? `after=${from}&limit=200` : 'limit=50';
    let page;
    try {
      page = await historyPage(id, q);
    } catch (e) {
      if (S.open !== id) return;
      // A group created a moment ago is not applied yet: its members cannot read it for a while.
      if ((e.status === 403 || e.status === 404) && attempt < 12) {
        setTimeout(() => { if (S.open === id) loadHistory(id, attempt + 1, after); }, 500);
        return;
      }
      showError('#chat-error', e);
      return;
    }
    for (const x of page.messages) upsert(id, st, { ...x, fromHistory: true });
    noteReceipts(st, page);
    if (!st.loaded || from === 0) {
      st.hasMore = page.has_more;
      st.olderRemoved = !!page.older_removed;
    }
    st.loaded = true;
    if (S.open === id) {
      if (attempt > 0 || !after) $('#chat-error').textContent = '';
      if (from === 0) S.forceScroll = true;
      renderMessages();
      if (from > 0 && page.has_more) loadHistory(id, 0, true);
    }
  }

  function scheduleHistory() {
    clearTimeout(S.historyTimer);
    const id = S.open;
    S.historyTimer = setTimeout(() => { if (S.open === id) loadHistory(id, 0, true); }, 150);
  }

  async function loadOlder() {
    const id = S.open;
    const st = id && shown();
    if (!st) return;
    let low = Infinity;
    for (const m of st.msgs.values()) if (m.seq != null && m.seq < low) low = m.seq;
    if (low === Infinity || low <= 1) { st.hasMore = false; renderMessages(); return; }
    const ul = $('#messages');
    const fromBottom = ul.scrollHeight - ul.scrollTop;
    try {
      const page = await historyPage(id, `before=${low}&limit=50`);
      for (const x of page.messages) upsert(id, st, { ...x, fromHistory: true });
      st.hasMore = page.has_more;
      st.olderRemoved = !!page.older_removed;
      if (S.open !== id || shown() !== st) return;
      renderMessages();
      ul.scrollTop = ul.scrollHeight - fromBottom;
    } catch (e) {
      showError('#chat-error', e);
    }
  }

  const peerOf = (id) => {
    const [, a, b] = id.split(':');
    return a === me() ? b : a;
  };
  const isGroup = (id) => id.startsWith('g:');
  const titleOf = (id) => (isGroup(id) ? id.slice(2) : peerOf(id));

  // ---------------------------------------------------------------- names, avatars, times
  // Display names from the contact list (a direct chat's `name` is the peer's) and, for group
  // members and senders the list does not name, from their profiles, asked once each.
  const nameOf = (user) => S.names.get(user) || user;
  function convTitle(id) {
    const summary = S.convs.find((c) => c.conversation_id === id);
    if (summary && summary.name) return summary.name;
    return isGroup(id) ? id.slice(2) : nameOf(peerOf(id));
  }
  function learnName(user) {
    if (!user || S.names.has(user)) return;
    S.names.set(user, '');
    api('GET', `/v1/users/${enc(user)}`).then((p) => {
      if (!p || !p.display_name) return;
      S.names.set(user, p.display_name);
      const member = document.querySelector(`#members li[data-user="${CSS.escape(user)}"]`);
      if (member && member.firstChild) member.firstChild.textContent = p.display_name;
      renderMessages();
      renderChatTitle();
    }).catch(() => { /* no profile: the id it is */ });
  }

  // Initials of a name ("Weekend trip" → "WT", "bob" → "BO") on a colour of its id.
  function setAvatar(el, name, id) {
    const words = name.trim().split(/\s+/).filter(Boolean);
    const letters = words.length > 1 ? [words[0], words[1]].map((w) => Array.from(w)[0]) : Array.from(words[0] || '?').slice(0, 2);
    setText(el, letters.join('').toUpperCase());
    let h = 0;
    for (const ch of id) h = (h * 31 + ch.codePointAt(0)) % 360;
    el.style.backgroundColor = `hsl(${h} 45% 32%)`; // dark enough for white text at any hue (4.5:1)
  }

  const dayKey = (d) => `${d.getFullYear()}-${d.getMonth()}-${d.getDate()}`;
  const hourFmt = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
  const weekdayFmt = new Intl.DateTimeFormat(undefined, { weekday: 'short' });
  const dayFmt = new Intl.DateTimeFormat(undefined, { day: 'numeric', month: 'short' });
  const yearFmt = new Intl.DateTimeFormat(undefined, { day: 'numeric', month: 'short', year: 'numeric' });
  const fullFmt = new Intl.DateTimeFormat(undefined, { dateStyle: 'full', timeStyle: 'short' });
  // A message's time: the hour today, with its day before that ("5 Dec, 14:05").
  function whenText(d) {
    const now = new Date();
    if (dayKey(d) === dayKey(now)) return hourFmt.format(d);
    const day = d.getFullYear() === now.getFullYear() ? dayFmt.format(d) : yearFmt.format(d);
    return `${day}, ${hourFmt.format(d)}`;
  }
  // A contact list's time: the hour today, the weekday this week, else the day.
  function listWhenText(d) {
    const now = new Date();
    if (dayKey(d) === dayKey(now)) return hourFmt.format(d);
    if (now - d < 6 * 86400000 && d < now) return weekdayFmt.format(d);
    return d.getFullYear() === now.getFullYear() ? dayFmt.format(d) : yearFmt.format(d);
  }

  function showChat(id) {
    const chat = $('#chat');
    chat.dataset.conversation = id || '';
    $('#chat-empty').hidden = !!id;
    chat.querySelector('.chat-head').hidden = !id;
    $('#composer').hidden = !id;
    $('#messages').hidden = !id;
    $('#chat-none').hidden = true;
    $('#group-panel').hidden = !(id && isGroup(id));
    $('#chat-error').textContent = '';
    $('#members').replaceChildren();
    $('#member-note').textContent = '';
    S.invited = null;
    $('#chat-note').textContent = '';
    $('#report-form').hidden = true;
    $('#member-form').hidden = true; // until the members say whether this user may invite
    clearContext();
    S.members = [];
    $('#mention-list').hidden = true;
    setScreen();
    if (!id) { $('#messages').replaceChildren(); return; }
    renderChatTitle();
    renderChatActions();
  }

  function renderChatTitle() {
    const id = S.open;
    if (!id) return;
    const title = convTitle(id);
    setText($('#chat-title'), title);
    setAvatar($('#chat-avatar'), title, isGroup(id) ? id : peerOf(id));
    setText($('#chat-sub'), isGroup(id) ? `group ${id.slice(2)}` : `@${peerOf(id)}`);
    document.title = `${title} · Fanline`;
  }

  // Resolves when the latest page is loaded (or failed).
  function openConversation(id) {
    selectTab('chats');
    if (S.open !== id) {
      S.open = id;
      S.view = null;
      S.hit = null;
      showChat(id);
      markCurrent();
      renderMessages();
      if (isGroup(id)) loadMembers(id.slice(2));
    }
    setRoute(id);
    $('#composer-input').focus();
    return loadHistory(id);
  }

  function closeChat() {
    S.open = null;
    S.view = null;
    S.hit = null;
    showChat(null);
    markCurrent();
    setRoute(null);
    document.title = 'Fanline';
    const current = $('#conversations li button');
    if (current && window.matchMedia(NARROW).matches) current.focus();
  }

  // The open chat is in the URL (`#/c/ID`): a reload reopens it, and a phone's back gesture (or the
  // Back button) returns to the list.
  const routeConversation = () => {
    const m = /^#\/c\/(.+)$/.exec(location.hash);
    try { return m ? decodeURIComponent(m[1]) : null; } catch (_) { return null; }
  };
  function setRoute(id) {
    const want = id ? `#/c/${enc(id)}` : '#/';
    if (location.hash !== want && !(id === null && !location.hash)) location.hash = want;
  }
  function onRoute() {
    if (!session.get()) return;
    const id = routeConversation();
    if (id && id !== S.open) openConversation(id);
    else if (!id && S.open) closeChat();
  }

  // Narrow screens show one of the list and the chat (CSS reads `data-screen`).
  const NARROW = '(max-width: 700px)';
  function setScreen() {
    document.body.dataset.screen = S.tab === 'feed' ? 'feed' : S.open ? 'chat' : 'list';
  }

  function sendMessage() {
    const id = S.open;
    const input = $('#composer-input');
    const body = input.value;
    if (!id || !body.trim()) return;
    if (S.editing) { editMessage(body); return; }
    const n = charCount(body);
    if (n > MAX_BODY) { showError('#chat-error', `A message holds at most ${MAX_BODY} characters; this one has ${n}.`); return; }
    if (S.view) backToLatest();
    const target = isGroup(id) ? { group: id.slice(2) } : { to: peerOf(id) };
    const extra = draftExtras(id, body);
    enqueue(id, { ...target, body, ...extra.frame }, { quote: extra.quote });
    clearContext();
    input.value = '';
    $('#chat-error').textContent = '';
    S.forceScroll = true;
    renderMessages();
  }

  // ---------------------------------------------------------------- rich messages
  // Ticks: sending (not stored yet; waiting while offline), then from the server's receipts: sent
  // (stored in the conversation), delivered (a device of the peer acknowledged it), read (the peer's
  // read marker passed it). Groups have no per-message ticks here.
  const TICKS = { waiting: 'waiting for the connection…', sending: 'sending…', sent: '✓ sent', delivered: '✓✓ delivered', read: '✓✓ read' };
  function tickOf(m) {
    if (m.status === 'queued' || m.status === 'accepted') return S.ready ? 'sending' : 'waiting';
    if (m.status !== 'sent' || m.seq == null) return '';
    const st = S.stores.get(m.conversation);
    if (st && st.peerRead >= m.seq) return 'read';
    if (st && st.peerDelivered >= m.seq) return 'delivered';
    return 'sent';
  }

  function noteReceipts(st, page) {
    if (typeof page.peer_read_seq === 'number') st.peerRead = Math.max(st.peerRead || 0, page.peer_read_seq);
    if (typeof page.peer_delivered_seq === 'number') st.peerDelivered = Math.max(st.peerDelivered || 0, page.peer_delivered_seq);
  }

  // The open direct chat's receipts, every few seconds while one of my messages is not read yet.
  async function refreshReceipts() {
    const id = S.open;
    const st = id && !isGroup(id) && S.stores.get(id);
    if (!st || document.visibilityState !== 'visible') return;
    const waiting = [...st.msgs.values()].some((m) => m.sender === me() && m.seq != null && !(st.peerRead >= m.seq));
    if (!waiting) return;
    try {
      noteReceipts(st, await historyPage(id, 'limit=1'));
      if (S.open === id) renderMessages();
    } catch (_) { /* the next round tries again */ }
  }

  function quoteText(q) {
    if (!q) return '';
    if (q.unavailable) return 'Reply to a message you cannot see';
    if (q.recalled) return `Reply to ${q.sender}: message recalled`;
    return `${q.sender}: ${q.snippet}`;
  }

  const links = new Map(); // attachment id -> {url, until}
  async function attachmentUrl(id) {
    const hit = links.get(id);
    if (hit && hit.until > Date.now() + 30000) return hit.url;
    const link = await api('GET', `/v1/attachments/${enc(id)}`);
    links.set(id, { url: link.url, until: Date.parse(link.expires_at) || Date.now() + 60000 });
    return link.url;
  }

  const sizeText = (n) => (n >= 1 << 20 ? `${(n / (1 << 20)).toFixed(1)} MB` : n >= 1024 ? `${Math.round(n / 1024)} kB` : `${n} B`);

  const linkTries = new Map(); // attachment id -> failed download-link requests

  // `local`: object URLs of files this page just sent (shown before the server holds them).
  function renderAttachments(box, list, local = {}) {
    const key = list.map((a) => `${a.id}${local[a.id] ? '+' : ''}`).join(',');
    if (box.dataset.key === key) return;
    box.dataset.key = key;
    box.replaceChildren(...list.map((a) => {
      if (a.mime.startsWith('image/')) {
        const img = document.createElement('img');
        img.className = 'thumb';
        img.alt = a.name || 'image';
        if (a.width && a.height) { img.width = Math.min(240, a.width); img.height = Math.round(img.width * a.height / a.width); }
        if (local[a.id]) { img.src = local[a.id]; return img; }
        attachmentUrl(a.id).then((url) => { img.src = url; }).catch(() => {
          // Not held yet (fanout has not applied the message), or a passing outage: try again soon.
          const tries = (linkTries.get(a.id) || 0) + 1;
          linkTries.set(a.id, tries);
          img.alt = `${img.alt} (unavailable)`;
          if (tries < 20) setTimeout(() => { box.dataset.key = ''; if (S.open) renderMessages(); }, Math.min(1000 * tries, 10000));
        });
        return img;
      }
      const b = document.createElement('button');
      b.type = 'button';
      b.className = 'link file';
      b.dataset.attachment = a.id;
      b.textContent = `📎 ${a.name || 'file'} (${sizeText(a.size)})`;
      return b;
    }));
  }

  function renderReactions(box, list) {
    const key = list.map((r) => `${r.key}${r.count}${r.me ? '*' : ''}`).join(' ');
    if (box.dataset.key === key) return;
    box.dataset.key = key;
    box.replaceChildren(...list.map((r) => {
      const b = document.createElement('button');
      b.type = 'button';
      b.className = r.me ? 'reaction mine' : 'reaction';
      b.dataset.key = r.key;
      b.setAttribute('aria-pressed', r.me ? 'true' : 'false');
      b.textContent = `${r.key} ${r.count}`;
      return b;
    }));
  }

  // Loads one message again (after an edit or a reaction: its version, counts).
  async function refetch(conv, seq) {
    const st = S.stores.get(conv);
    if (!st || !(seq > 0)) return;
    try {
      const page = await historyPage(conv, `after=${seq - 1}&limit=1`);
      for (const x of page.messages) upsert(conv, st, { ...x, fromHistory: true });
      if (S.open === conv) renderMessages();
    } catch (_) { /* shown as it was */ }
  }

  function applyChange(e) {
    if (!e.conversation_id) return;
    const m = findMessage(e);
    if (m && e.kind === 'edit') Object.assign(m, { body: e.body, edited: true, content_type: e.content_type || 'text', attachments: e.attachments || [] });
    refetch(e.conversation_id, e.conversation_seq);
  }

  async function toggleReaction(m, key) {
    const mine = (m.reactions || []).some((r) => r.key === key && r.me);
    const path = `/v1/users/${enc(me())}/conversations/${encConv(m.conversation)}/messages/${m.seq}/reactions/${enc(key)}`;
    try {
      await api(mine ? 'DELETE' : 'PUT', path, undefined, { ingest: true });
      for (const ms of [300, 1200]) setTimeout(() => refetch(m.conversation, m.seq), ms);
    } catch (e) {
      showError('#chat-error', e);
    }
  }

  // What the composer adds to a message: the reply it quotes, the group members it mentions.
  function draftExtras(id, body) {
    const frame = {};
    let quote = null;
    if (S.replyTo && S.replyTo.conv === id) {
      frame.reply_to = S.replyTo.seq;
      quote = { seq: S.replyTo.seq, sender: S.replyTo.sender, snippet: S.replyTo.snippet };
    }
    if (isGroup(id)) {
      const named = new Set([...body.matchAll(/@([A-Za-z0-9_.-]{1,64})/g)].map((x) => x[1]));
      const mentions = [...named].filter((u) => u !== me() && (S.members || []).includes(u)).slice(0, 50);
      if (mentions.length) frame.mentions = mentions;
    }
    return { frame, quote };
  }

  function setContext(text) {
    $('#context-text').textContent = text;
    $('#context-bar').hidden = !text;
  }

  function clearContext() {
    S.replyTo = null;
    S.editing = null;
    setContext('');
  }

  function startReply(m) {
    S.editing = null;
    S.replyTo = { conv: m.conversation, seq: m.seq, sender: m.sender, snippet: (m.body || `[${m.content_type}]`).slice(0, 100) };
    setContext(`Replying to ${m.sender}: ${S.replyTo.snippet}`);
    $('#composer-input').focus();
  }

  function startEdit(m) {
    S.replyTo = null;
    S.editing = { conv: m.conversation, message_id: m.message_id, version: m.version || 1, m };
    setContext('Editing your message');
    const input = $('#composer-input');
    input.value = m.body;
    input.focus();
  }

  async function editMessage(body) {
    const ed = S.editing;
    if (!ed || ed.conv !== S.open) { clearContext(); return; }
    try {
      // The whole content: an edit replaces it (type and attachments kept as they were).
      const content = { content_type: ed.m.content_type || 'text', attachments: ed.m.attachments || [] };
      await api('PATCH', `/v1/messages/${enc(ed.message_id)}`,
        { from: me(), conversation: ed.conv, body, version: ed.version, ...content, ...draftExtras(ed.conv, body).frame },
        { ingest: true });
      Object.assign(ed.m, { body, edited: true, version: (ed.m.version || 1) + 1 });
      $('#composer-input').value = '';
      clearContext();
      renderMessages();
      for (const ms of [300, 1200]) setTimeout(() => refetch(ed.conv, ed.m.seq), ms);
    } catch (e) {
      showError('#chat-error', e);
    }
  }

  const hexOf = (buf) => Array.from(new Uint8Array(buf), (b) => b.toString(16).padStart(2, '0')).join('');
  const kindOf = (mime) => (mime.startsWith('image/') ? 'image' : mime.startsWith('audio/') ? 'audio' : mime.startsWith('video/') ? 'video' : 'file');

  // Uploads a file (a signed request from ingest, the bytes straight to the store) and sends it, with
  // the composer's text as its caption.
  async function sendFile(file) {
    const id = S.open;
    if (!id || !file) return;
    if (!crypto.subtle) { $('#chat-error').textContent = 'Attachments need a secure (https) page.'; return; }
    $('#chat-error').textContent = '';
    setContext(`Uploading ${file.name}…`);
    try {
      const bytes = await file.arrayBuffer();
      const sha256 = hexOf(await crypto.subtle.digest('SHA-256', bytes));
      const mime = (file.type || 'application/octet-stream').toLowerCase();
      const ticket = await api('POST', '/v1/attachments', { mime, size: file.size, sha256 }, { ingest: true });
      const put = await fetch(ticket.url, { method: ticket.method, headers: ticket.headers, body: bytes });
      if (!put.ok) throw new ApiError(put.status, `The upload failed (HTTP ${put.status}).`);
      const attachment = { id: ticket.attachment, mime, size: file.size, sha256, name: file.name };
      if (mime.startsWith('image/') && window.createImageBitmap) {
        try { const bmp = await createImageBitmap(file); attachment.width = bmp.width; attachment.height = bmp.height; } catch (_) { /* no size */ }
      }
      const input = $('#composer-input');
      const body = input.value.trim();
      const target = isGroup(id) ? { group: id.slice(2) } : { to: peerOf(id) };
      enqueue(id, { ...target, body, content_type: kindOf(mime), attachments: [attachment] },
        { local: { [attachment.id]: URL.createObjectURL(file) } });
      input.value = '';
      clearContext();
      S.forceScroll = true;
      renderMessages();
    } catch (e) {
      setContext('');
      showError('#chat-error', e);
    } finally {
      $('#composer-file').value = '';
    }
  }

  // @ in a group's composer offers its members whose id starts with what follows.
  function suggestMentions() {
    const input = $('#composer-input');
    const ul = $('#mention-list');
    const before = input.value.slice(0, input.selectionStart);
    const at = /@([A-Za-z0-9_.-]{0,64})$/.exec(before);
    const options = at && S.open && isGroup(S.open)
      ? (S.members || []).filter((u) => u !== me() && u.startsWith(at[1])).slice(0, 8) : [];
    ul.hidden = options.length === 0;
    ul.replaceChildren(...options.map((u) => {
      const li = document.createElement('li');
      const b = document.createElement('button');
      b.type = 'button';
      b.className = 'link';
      b.dataset.user = u;
      b.textContent = `@${u}`;
      li.append(b);
      return li;
    }));
  }

  function pickMention(user) {
    const input = $('#composer-input');
    const cut = input.selectionStart;
    const before = input.value.slice(0, cut).replace(/@([A-Za-z0-9_.-]{0,64})$/, `@${user} `);
    input.value = before + input.value.slice(cut);
    input.selectionStart = input.selectionEnd = before.length;
    $('#mention-list').hidden = true;
    input.focus();
  }

  function onMessageClick(ev) {
    const li = ev.target.closest('li.message');
    const st = shown();
    const m = li && st && [...st.msgs.values()].find((x) => x.el === li);
    if (!m) return;
    const file = ev.target.closest('[data-attachment]');
    if (file) {
      // Opened now, within the click (a popup blocker allows that), pointed at the URL once known.
      const w = window.open('', '_blank');
      if (w) w.opener = null;
      attachmentUrl(file.dataset.attachment).then((url) => { if (w) w.location.href = url; })
        .catch((e) => { if (w) w.close(); showError('#chat-error', e); });
      return;
    }
    const reaction = ev.target.closest('button.reaction');
    if (reaction) { toggleReaction(m, reaction.dataset.key); return; }
    const action = ev.target.closest('[data-action]');
    if (!action) return;
    if (action.dataset.action === 'retry') retry(m);
    else if (action.dataset.action === 'discard') discard(m);
    else if (action.dataset.action === 'reply') startReply(m);
    else if (action.dataset.action === 'edit') startEdit(m);
    else if (action.dataset.action === 'react') toggleReaction(m, '👍');
  }

  // ---------------------------------------------------------------- contact list
  // The broker has the read marker; fanout applies it a moment later (longer under load). Refetch the
  // contact list with a growing pause until the server's read position shows it, so badges and the total
  // always come from the server's counts.
  async function reconcileRead(id, seq, attempt) {
    await loadConversations();
    const summary = S.convs.find((c) => c.conversation_id === id);
    if (!session.get() || (summary && summary.read_seq >= seq) || attempt >= 10) return;
    setTimeout(() => reconcileRead(id, seq, attempt + 1), Math.min(250 * 2 ** attempt, 4000));
  }

  function scheduleConvs(delay = 150) {
    if (S.convTimer && delay > 0) return; // already due soon
    clearTimeout(S.convTimer);
    S.convTimer = setTimeout(() => { S.convTimer = 0; loadConversations(); }, delay);
  }

  async function loadConversations() {
    if (!session.get()) return;
    const gen = ++S.convGen;
    try {
      const page = await api('GET', `/v1/users/${enc(me())}/conversations?limit=50`);
      if (gen !== S.convGen || !session.get()) return;
      S.convs = page.conversations || [];
      S.convsLoaded = true;
      setTotal(page.total_unread || 0);
      renderConversations();
    } catch (e) {
      if (gen === S.convGen && session.get()) showError('#side-error', e);
    }
  }

  // ---------------------------------------------------------------- invitations, mute, block
  // Invitations and blocks as the server has them, fetched at start, on an invitation entry and after
  // the user answered one or (un)blocked someone. Fanout applies those a moment later: until the server
  // shows it (`agrees`), the page keeps what the user did and asks again with a growing pause.
  async function loadLists(agrees = () => true, attempt = 0) {
    try {
      const [invited, blocks] = await Promise.all([
        api('GET', `/v1/users/${enc(me())}/invitations?limit=50`),
        api('GET', `/v1/users/${enc(me())}/blocks?limit=200`),
      ]);
      if (!session.get()) return;
      const lists = {
        invitations: (invited.pending || []).filter((p) => p.kind === 'invitation'),
        blocked: new Set((blocks.blocked || []).map((b) => b.user)),
      };
      if (agrees(lists) || attempt >= 8) {
        S.invitations = lists.invitations;
        S.blocked = lists.blocked;
        renderInvitations();
        renderChatActions();
        return;
      }
    } catch (e) {
      if (!session.get()) return;
      if (attempt >= 8) { showError('#side-error', e); return; }
    }
    setTimeout(() => loadLists(agrees, attempt + 1), Math.min(250 * 2 ** attempt, 4000));
  }

  function renderInvitations() {
    const ul = $('#invitations');
    $('#invitations-panel').hidden = S.invitations.length === 0;
    ul.replaceChildren(...S.invitations.map((p) => {
      const li = document.createElement('li');
      li.dataset.group = p.group;
      const text = document.createElement('span');
      text.textContent = `${p.name || p.group} — from ${p.by}`;
      const accept = document.createElement('button');
      accept.type = 'button';
      accept.className = 'small accept';
      accept.textContent = 'Accept';
      const decline = document.createElement('button');
      decline.type = 'button';
      decline.className = 'small secondary decline';
      decline.textContent = 'Decline';
      li.append(text, accept, decline);
      return li;
    }));
  }

  // Accepting is a join (PUT), declining a removal (DELETE) of oneself; fanout applies either a moment
  // later, so the lists are fetched again after it.
  async function answerInvitation(group, accept) {
    try {
      await api(accept ? 'PUT' : 'DELETE', `/v1/groups/${enc(group)}/members/${enc(me())}`, undefined, { ingest: true });
      S.invitations = S.invitations.filter((p) => p.group !== group);
      renderInvitations();
      loadLists((lists) => !lists.invitations.some((p) => p.group === group));
      if (accept) {
        // The join is applied a moment later: until then the group answers as to an invitee.
        openConversation(`g:${group}`);
        for (const ms of [500, 1500, 4000]) setTimeout(() => { if (S.open === `g:${group}`) loadMembers(group); }, ms);
      }
      for (const ms of [300, 1200]) setTimeout(() => scheduleConvs(0), ms);
    } catch (e) {
      showError('#side-error', e);
    }
  }

  function renderChatActions() {
    const id = S.open;
    if (!id) return;
    const summary = S.convs.find((c) => c.conversation_id === id);
    const muted = S.muteWanted.has(id) ? S.muteWanted.get(id) : !!(summary && summary.muted);
    const mute = $('#chat-mute');
    setText(mute, muted ? 'Unmute' : 'Mute');
    mute.setAttribute('aria-pressed', String(muted));
    mute.disabled = !summary;
    const block = $('#chat-block');
    block.hidden = isGroup(id);
    if (!isGroup(id)) {
      const blocked = S.blocked.has(peerOf(id));
      setText(block, blocked ? 'Unblock' : 'Block');
      block.setAttribute('aria-pressed', String(blocked));
    }
  }

  async function toggle(button, call, after) {
    $(button).disabled = true;
    try {
      await call();
      after();
    } catch (e) {
      showError('#chat-error', e);
    } finally {
      $(button).disabled = false;
    }
  }

  // Fanout applies a (un)mute a moment later: the page shows what the user chose and refetches the
  // contact list (whose total the mute changes) until the server shows it too.
  async function reconcileMute(id, muted, attempt) {
    await loadConversations();
    const summary = S.convs.find((c) => c.conversation_id === id);
    if (!session.get() || S.muteWanted.get(id) !== muted) return;
    if ((summary && !!summary.muted === muted) || attempt >= 8) {
      S.muteWanted.delete(id);
      renderChatActions();
      return;
    }
    setTimeout(() => reconcileMute(id, muted, attempt + 1), Math.min(250 * 2 ** attempt, 4000));
  }

  function toggleMute() {
    const id = S.open;
    const summary = id && S.convs.find((c) => c.conversation_id === id);
    if (!summary) return null;
    const muted = !(S.muteWanted.has(id) ? S.muteWanted.get(id) : summary.muted);
    return toggle('#chat-mute',
      () => api(muted ? 'PUT' : 'DELETE', `/v1/users/${enc(me())}/conversations/${enc(id)}/mute`, undefined, { ingest: true }),
      () => { S.muteWanted.set(id, muted); renderChatActions(); reconcileMute(id, muted, 0); });
  }

  function toggleReport() {
    const form = $('#report-form');
    form.hidden = !form.hidden;
    $('#chat-report').setAttribute('aria-expanded', String(!form.hidden));
    if (!form.hidden) $('#report-reason').focus();
  }

  // Reports the open chat: its peer (a direct chat) or its group, with the reason given.
  function sendReport() {
    const id = S.open;
    const reason = $('#report-reason').value.trim();
    if (!id) return null;
    const subject = isGroup(id) ? { kind: 'group', subject: id.slice(2) } : { kind: 'user', subject: peerOf(id) };
    return action('#report-send', '#chat-error', reason ? '' : 'Say why, in a few words.',
      () => api('POST', '/v1/reports', { reporter: me(), ...subject, reason }, { ingest: true }),
      () => {
        $('#report-reason').value = '';
        $('#report-form').hidden = true;
        $('#chat-report').setAttribute('aria-expanded', 'false');
        $('#chat-note').textContent = 'Reported. The operators will look at it.';
      });
  }

  function toggleBlock() {
    const id = S.open;
    if (!id || isGroup(id)) return null;
    const peer = peerOf(id);
    const blocked = !S.blocked.has(peer);
    return toggle('#chat-block',
      () => api(blocked ? 'PUT' : 'DELETE', `/v1/users/${enc(me())}/blocks/${enc(peer)}`, undefined, { ingest: true }),
      () => {
        if (blocked) S.blocked.add(peer); else S.blocked.delete(peer);
        renderChatActions();
        loadLists((lists) => lists.blocked.has(peer) === blocked);
      });
  }

  function convEl(id) {
    const li = document.createElement('li');
    li.dataset.conversation = id;
    li.innerHTML = '<button type="button"><span class="avatar" aria-hidden="true"></span><span class="title"></span>'
      + '<time class="when"></time><span class="preview"></span><span class="badge" hidden></span></button>';
    return li;
  }

  function renderConversation(li, c) {
    const id = c.conversation_id;
    if (c.peer && c.name) S.names.set(c.peer, c.name);
    const title = convTitle(id);
    setText(li.querySelector('.title'), title);
    setAvatar(li.querySelector('.avatar'), title, isGroup(id) ? id : peerOf(id));
    li.querySelector('button').title = isGroup(id) ? `${title} (group ${id.slice(2)})` : `${title} (@${peerOf(id)})`;
    setTime(li.querySelector('.when'), c.last_activity, listWhenText);
    const lm = c.last_message;
    const preview = li.querySelector('.preview');
    setText(preview, lm ? (lm.recalled ? 'message recalled' : lm.preview) : isGroup(id) ? 'No messages yet' : '');
    preview.classList.toggle('muted', !!(lm && lm.recalled));
    const badge = li.querySelector('.badge');
    const n = c.unread || 0;
    setText(badge, n > 0 ? String(n) : '');
    badge.hidden = n <= 0;
    if (n > 0) badge.setAttribute('aria-label', `${n} unread`); else badge.removeAttribute('aria-label');
    li.classList.toggle('unread', n > 0);
    li.classList.toggle('inactive', c.active === false);
    li.classList.toggle('muted-conv', !!c.muted);
  }

  function renderConversations() {
    const ul = $('#conversations');
    const seen = new Set();
    let prev = null;
    for (const c of S.convs) {
      const id = c.conversation_id;
      seen.add(id);
      let li = S.convEls.get(id);
      if (!li) { li = convEl(id); S.convEls.set(id, li); }
      renderConversation(li, c);
      const want = prev ? prev.nextSibling : ul.firstChild;
      if (want !== li) ul.insertBefore(li, want);
      prev = li;
    }
    for (const [id, li] of S.convEls) if (!seen.has(id)) { li.remove(); S.convEls.delete(id); }
    $('#conv-empty').hidden = !S.convsLoaded || S.convs.length > 0;
    markCurrent();
    renderChatActions();
    renderChatTitle();
  }

  // The total of unread messages on the Chats tab: hidden at zero.
  function setTotal(n) {
    setText($('#total-unread'), String(n));
    $('#total-wrap').hidden = n <= 0;
  }

  function markCurrent() {
    for (const [id, li] of S.convEls) {
      if (id === S.open) li.setAttribute('aria-current', 'true'); else li.removeAttribute('aria-current');
    }
  }

  // ---------------------------------------------------------------- groups
  async function loadMembers(group) {
    try {
      const page = await api('GET', `/v1/groups/${enc(group)}/members?limit=200`);
      if (S.open !== `g:${group}`) return;
      // Only an owner or admin may invite: a plain member does not get a form fanout would refuse.
      S.members = page.members.map((m) => m.user);
      // "Invitation for X sent" is true until X is in: then the list says it.
      if (S.invited && S.members.includes(S.invited)) { $('#member-note').textContent = ''; S.invited = null; }
      const mine = page.members.find((m) => m.user === me());
      $('#member-form').hidden = mine ? mine.role === 'member' : !page.next_cursor;
      const ul = $('#members');
      ul.replaceChildren(...page.members.map((m) => {
        const li = document.createElement('li');
        li.dataset.user = m.user;
        learnName(m.user);
        li.textContent = nameOf(m.user);
        li.title = `@${m.user}`;
        if (m.role && m.role !== 'member') {
          const r = document.createElement('span');
          r.className = 'role';
          r.textContent = `(${m.role})`;
          li.append(r);
        }
        return li;
      }));
    } catch (e) {
      // 404/403: a group not applied yet, or a join not applied yet (retried by the caller).
      if (S.open === `g:${group}` && e.status !== 404 && e.status !== 403) showError('#chat-error', e);
    }
  }

  // A write to ingest from a form: `problem` (if any) is shown instead; the button is disabled meanwhile.
  async function action(button, out, problem, call, done) {
    const o = $(out);
    if (problem) { o.textContent = problem; return; }
    $(button).disabled = true;
    try {
      await call();
      o.textContent = '';
      done();
    } catch (e) {
      showError(out, e);
    } finally {
      $(button).disabled = false;
    }
  }
  const badId = (id) => (ID_RE.test(id) ? '' : 'Enter a valid id: 1 to 64 letters, digits, "_", "." or "-".');

  function createGroup() {
    const group = $('#group-id').value.trim();
    const name = $('#group-name').value.trim() || group;
    return action('#group-create', '#side-error', badId(group),
      () => api('POST', '/v1/groups', { group, owner: me(), name }, { ingest: true }),
      () => {
        $('#group-id').value = '';
        $('#group-name').value = '';
        openConversation(`g:${group}`);
        for (const ms of [500, 1500]) setTimeout(() => { if (S.open === `g:${group}`) loadMembers(group); }, ms);
        scheduleConvs(500);
      });
  }

  function addMember() {
    const id = S.open;
    const user = $('#member-user').value.trim();
    if (!id || !isGroup(id)) return null;
    const group = id.slice(2);
    return action('#member-add', '#chat-error', badId(user),
      () => api('PUT', `/v1/groups/${enc(group)}/members/${enc(user)}?by=${enc(me())}`, undefined, { ingest: true }),
      () => {
        $('#member-user').value = '';
        // In an open group the user is added; in a private one (the default) invited: they appear
        // among the members once they accept.
        $('#member-note').textContent = `Invitation for ${user} sent: listed once they accept.`;
        S.invited = user;
        S.invitedAt = Date.now();
        for (const ms of [500, 1500]) setTimeout(() => { if (S.open === id) loadMembers(group); }, ms);
      });
  }

  // A chat with an id nobody registered would go nowhere: the directory is asked first.
  async function openDirect() {
    const user = $('#new-chat-user').value.trim();
    const out = $('#side-error');
    if (badId(user)) { out.textContent = badId(user); return; }
    if (user === me()) { out.textContent = 'Pick another user than yourself.'; return; }
    $('#new-chat-open').disabled = true;
    try {
      if ((await idState(user)) !== 'taken') { showError('#side-error', `There is no user "${user}".`); return; }
      out.textContent = '';
      $('#new-chat-user').value = '';
      openConversation(`d:${[me(), user].sort().join(':')}`);
    } catch (e) {
      showError('#side-error', e);
    } finally {
      $('#new-chat-open').disabled = false;
    }
  }

  // ---------------------------------------------------------------- search
  // People (a click starts a chat) and messages this user may read (a click jumps to the message).
  async function runSearch() {
    const q = $('#search-q').value.trim();
    const out = $('#search-error');
    $('#search-results').hidden = false;
    setText($('#search-for'), q);
    $('#search-people').replaceChildren();
    $('#search-messages').replaceChildren();
    if (!q) { out.textContent = 'Type a name, a user id or words of a message.'; return; }
    const gen = ++S.searchGen;
    out.textContent = 'Searching…';
    $('#search-go').disabled = true;
    try {
      const [people, messages] = await Promise.all([
        api('GET', `/v1/search/users?q=${enc(q)}&limit=10`),
        api('GET', `/v1/users/${enc(me())}/search/messages?q=${enc(q)}&limit=20`),
      ]);
      if (gen !== S.searchGen) return;
      out.textContent = '';
      $('#search-people').replaceChildren(...people.users.filter((u) => u.user !== me()).map(personHit));
      $('#search-messages').replaceChildren(...messages.hits.map(messageHit));
    } catch (e) {
      if (gen === S.searchGen) showError('#search-error', e);
    } finally {
      // Also when closed or outrun meanwhile: a disabled button would also block Enter in the box.
      $('#search-go').disabled = false;
    }
  }

  function hitButton(li, where, meta) {
    const b = document.createElement('button');
    b.type = 'button';
    b.innerHTML = '<span class="where"></span><span class="meta"></span>';
    b.querySelector('.where').textContent = where;
    b.querySelector('.meta').textContent = meta;
    li.append(b);
    return b;
  }

  function personHit(u) {
    const li = document.createElement('li');
    li.dataset.user = u.user;
    hitButton(li, u.user, u.display_name ? `${u.display_name} · start a chat` : 'start a chat');
    return li;
  }

  function messageHit(h) {
    const li = document.createElement('li');
    li.dataset.conversation = h.conversation_id;
    li.dataset.seq = String(h.conversation_seq);
    const where = isGroup(h.conversation_id) ? `Group ${titleOf(h.conversation_id)}` : `Chat with ${titleOf(h.conversation_id)}`;
    const when = new Date(h.created_at);
    const b = hitButton(li, where, `${h.sender} · ${Number.isNaN(when.getTime()) ? '' : dateFmt.format(when)}`);
    b.append(snippetEl(h.snippet, h.highlights || []));
    return li;
  }

  // The snippet with its matches marked; highlight offsets count characters (code points).
  function snippetEl(text, highlights) {
    const chars = Array.from(text);
    const p = document.createElement('span');
    p.className = 'snippet';
    let at = 0;
    for (const h of [...highlights].sort((a, b) => a.start - b.start)) {
      if (h.start < at) continue;
      p.append(chars.slice(at, h.start).join(''));
      const mark = document.createElement('mark');
      mark.textContent = chars.slice(h.start, h.start + h.length).join('');
      p.append(mark);
      at = h.start + h.length;
    }
    p.append(chars.slice(at).join(''));
    return p;
  }

  // Opens the conversation at message `seq`: scrolled to it when the latest page holds it, otherwise
  // in a window of history around it (`S.view`) until "Back to latest" or the newest message.
  async function jumpTo(id, seq) {
    const gen = ++S.jumpGen;
    S.view = null;
    S.hit = null;
    await openConversation(id);
    if (S.open !== id || gen !== S.jumpGen) return;
    const st = store(id);
    if (![...st.msgs.values()].some((m) => m.seq === seq)) {
      let older; let newer;
      try {
        [older, newer] = await Promise.all([
          historyPage(id, `before=${seq + 1}&limit=25`),
          historyPage(id, `after=${seq}&limit=25`),
        ]);
      } catch (e) {
        if (S.open === id) showError('#chat-error', e);
        return;
      }
      if (S.open !== id || gen !== S.jumpGen) return;
      const win = { msgs: new Map(), byMid: new Map(), loaded: true, hasMore: older.has_more };
      for (const x of [...older.messages, ...newer.messages]) upsert(id, win, x);
      S.view = { conv: id, st: win };
      if (!newer.has_more) leaveView();
    }
    S.hit = { conv: id, seq };
    renderMessages();
    const el = $(`#messages li[data-seq="${seq}"]`);
    if (el) el.scrollIntoView({ block: 'center' });
  }

  // The window reached the newest message: its messages join the store, which shows again. A message
  // the store holds stays as the store has it (live recalls reach the store).
  function leaveView() {
    const { conv, st: win } = S.view;
    S.view = null;
    const st = store(conv);
    let low = Infinity;
    for (const m of st.msgs.values()) if (m.seq != null && m.seq < low) low = m.seq;
    for (const m of win.msgs.values()) {
      if (st.byMid.has(m.message_id)) continue;
      const copy = { ...m, el: null, order: ++S.order };
      st.msgs.set(copy.key, copy);
      st.byMid.set(copy.message_id, copy);
      if (m.seq < low) st.hasMore = win.hasMore;
    }
  }

  async function loadNewer() {
    const view = S.view;
    if (!view || view.conv !== S.open) return;
    try {
      const page = await historyPage(view.conv, `after=${maxSeq(view.st)}&limit=50`);
      if (S.view !== view) return;
      for (const x of page.messages) upsert(view.conv, view.st, x);
      if (!page.has_more) leaveView();
      renderMessages();
    } catch (e) {
      showError('#chat-error', e);
    }
  }

  function backToLatest() {
    S.view = null;
    S.hit = null;
    S.forceScroll = true;
    renderMessages();
  }

  // ---------------------------------------------------------------- feed
  function selectTab(tab) {
    S.tab = tab;
    for (const t of ['chats', 'feed']) $(`#tab-${t}`).setAttribute('aria-selected', String(t === tab));
    $('#chat-panel').hidden = tab !== 'chats';
    $('#feed-panel').hidden = tab !== 'feed';
    setScreen();
    if (tab === 'feed') scheduleFeed(0);
    else maybeRead();
  }

  function scheduleFeed(delay = 150) {
    clearTimeout(S.feedTimer);
    S.feedTimer = setTimeout(loadFeed, delay);
  }

  async function loadFeed() {
    if (!session.get()) return;
    const gen = ++S.feedGen;
    try {
      const page = await api('GET', `/v1/users/${enc(me())}/feed?limit=50`);
      if (gen !== S.feedGen || !session.get()) return;
      $('#feed').replaceChildren(...page.entries.map((p) => {
        const li = document.createElement('li');
        li.className = 'post';
        li.dataset.postId = p.post_id;
        li.innerHTML = '<span class="author"></span><time></time><p class="body"></p>';
        li.querySelector('.author').textContent = p.author;
        setTime(li.querySelector('time'), p.created_at, dateFmt);
        li.querySelector('.body').textContent = p.body;
        return li;
      }));
    } catch (e) {
      if (gen === S.feedGen && session.get()) showError('#feed-error', e);
    }
  }

  function follow() {
    const target = $('#follow-user').value.trim();
    return action('#follow-button', '#feed-error', badId(target),
      () => api('PUT', `/v1/users/${enc(me())}/following/${enc(target)}`, undefined, { ingest: true }),
      () => {
        $('#follow-user').value = '';
        setTimeout(() => scheduleFeed(0), 500);
      });
  }

  function post() {
    const body = $('#post-body').value;
    let problem = body.trim() ? '' : 'Write something first.';
    if (body.length > MAX_BODY) problem = `A post holds at most ${MAX_BODY} characters.`;
    return action('#post-button', '#feed-error', problem,
      () => api('POST', '/v1/posts', { author: me(), body }, { ingest: true }),
      () => {
        $('#post-body').value = '';
        for (const ms of [500, 1500]) setTimeout(() => { if (S.tab === 'feed') scheduleFeed(0); }, ms);
      });
  }

  // ---------------------------------------------------------------- wiring
  const onSubmit = (sel, fn) => $(sel).addEventListener('submit', (ev) => { ev.preventDefault(); fn(); });
  onSubmit('#auth-form', () => onAuth(false));
  $('#auth-register').addEventListener('click', () => onAuth(true));
  $('#logout').addEventListener('click', logout);
  $('#tab-chats').addEventListener('click', () => selectTab('chats'));
  $('#tab-feed').addEventListener('click', () => selectTab('feed'));
  onSubmit('#new-chat-form', openDirect);
  onSubmit('#group-form', createGroup);
  onSubmit('#member-form', addMember);
  $('#chat-mute').addEventListener('click', toggleMute);
  $('#chat-block').addEventListener('click', toggleBlock);
  $('#chat-report').addEventListener('click', toggleReport);
  onSubmit('#report-form', sendReport);
  $('#invitations').addEventListener('click', (ev) => {
    const button = ev.target.closest('button');
    const li = ev.target.closest('li[data-group]');
    if (button && li) answerInvitation(li.dataset.group, button.classList.contains('accept'));
  });
  onSubmit('#composer', sendMessage);
  onSubmit('#follow-form', follow);
  onSubmit('#post-form', post);
  $('#load-older').addEventListener('click', loadOlder);
  $('#load-newer').addEventListener('click', loadNewer);
  $('#back-to-latest').addEventListener('click', backToLatest);
  onSubmit('#search-form', runSearch);
  $('#search-close').addEventListener('click', () => { S.searchGen += 1; $('#search-results').hidden = true; });
  $('#search-people').addEventListener('click', (ev) => {
    const li = ev.target.closest('li[data-user]');
    if (li) openConversation(`d:${[me(), li.dataset.user].sort().join(':')}`);
  });
  $('#search-messages').addEventListener('click', (ev) => {
    const li = ev.target.closest('li[data-conversation]');
    if (li) jumpTo(li.dataset.conversation, Number(li.dataset.seq));
  });
  $('#composer-input').addEventListener('keydown', (ev) => {
    if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) { ev.preventDefault(); sendMessage(); }
    if (ev.key === 'Escape') { clearContext(); $('#mention-list').hidden = true; }
  });
  $('#composer-input').addEventListener('input', suggestMentions);
  $('#mention-list').addEventListener('click', (ev) => {
    const b = ev.target.closest('[data-user]');
    if (b) pickMention(b.dataset.user);
  });
  $('#composer-file').addEventListener('change', (ev) => sendFile(ev.target.files && ev.target.files[0]));
  $('#context-cancel').addEventListener('click', () => { clearContext(); $('#composer-input').value = ''; });
  $('#messages').addEventListener('click', onMessageClick);
  setInterval(refreshReceipts, 3000);
  // The inviter hears nothing when an invitation is accepted: while one is out, the open group's
  // members are asked again every 3 s (for two minutes at most).
  setInterval(() => {
    const id = S.open;
    if (!S.invited || !id || !isGroup(id) || Date.now() - S.invitedAt > 120000) return;
    if (document.visibilityState === 'visible') loadMembers(id.slice(2));
  }, 3000);
  $('#conversations').addEventListener('click', (ev) => {
    const li = ev.target.closest('li[data-conversation]');
    if (li) openConversation(li.dataset.conversation);
  });
  document.addEventListener('visibilitychange', () => { if (session.get()) maybeRead(); });
  window.addEventListener('online', () => { if (session.get() && !S.ws) { S.backoff = 300; connect(); } });

  $('#chat-back').addEventListener('click', closeChat);
  window.addEventListener('hashchange', onRoute);
  window.addEventListener('beforeunload', (ev) => {
    // Without IndexedDB, queued messages live only in this page.
    if (session.get() && outbox.atRisk(me())) { ev.preventDefault(); ev.returnValue = ''; }
  });

  // The session this browser holds (any tab's), if it can still be refreshed.
  session.on({
    change: (_, fresh) => { if (fresh) startApp(); }, // logged in in another tab
    end: showLogin,
    offline: (off) => { if (off && !S.ready) setStatus('offline'); },
  });
  if (session.load()) startApp(); else showLogin('');
})();
