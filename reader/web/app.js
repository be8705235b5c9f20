// Fanline web chat client: plain ES2020, no dependencies. Served by the reader at `/`.
'use strict';
(() => {
  const $ = (sel) => document.querySelector(sel);
  const SESSION_KEY = 'fanline.session';
  const ID_RE = /^[A-Za-z0-9_.-]{1,64}$/;
  const MAX_BODY = 4096;
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const hex = (n) => Array.from(crypto.getRandomValues(new Uint8Array(n)), (b) => b.toString(16).padStart(2, '0')).join('');
  const enc = encodeURIComponent;
  // Conversation ids hold ':' which is fine in a path segment; the rest of their alphabet is URL-safe.
  const encConv = (id) => id.split(':').map(enc).join(':');

  const S = {
    ingest: '',
    session: null, // SessionTokens + obtained (ms)
    refreshTimer: 0,
    refreshing: null,
    ws: null,
    ready: false, // hello received on the current socket
    backoff: 300,
    reconnectTimer: 0,
    pingTimer: 0,
    needRefresh: false,
    lastSeq: 0,
    pending: new Map(), // request_id -> {frame, msg, tries}
    convs: [],
    convEls: new Map(),
    blocked: new Set(), // users this user blocked
    invitations: [],
    muteWanted: new Map(), // conversation id -> muted, chosen here and not yet shown by the server
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
  const me = () => (S.session ? S.session.user : '');

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
    const headers = {};
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    if (auth && S.session) headers.Authorization = `Bearer ${S.session.access_token}`;
    let res;
    try {
      res = await fetch((ingest ? S.ingest : '') + path, {
        method, headers, body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (_) {
      throw new ApiError(0, 'Network error: the server cannot be reached.');
    }
    if (res.status === 401 && auth && retry && S.session) {
      if (await refresh()) return api(method, path, body, { ...opts, retry: false });
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

  // ---------------------------------------------------------------- session
  function saveSession(t) {
    S.session = { ...t, obtained: Date.now() };
    sessionStorage.setItem(SESSION_KEY, JSON.stringify(S.session));
    scheduleRefresh();
  }

  function scheduleRefresh() {
    clearTimeout(S.refreshTimer);
    if (!S.session) return;
    const due = S.session.obtained + S.session.expires_in * 800 - Date.now();
    S.refreshTimer = setTimeout(() => { refresh(); }, Math.max(0, due));
  }

  const accessExpiring = () => !S.session
    || Date.now() > S.session.obtained + S.session.expires_in * 1000 - Math.min(5000, S.session.expires_in * 100);

  // Single flight: refresh tokens work once, so two concurrent refreshes would log the user out.
  function refresh() {
    if (S.refreshing) return S.refreshing;
    const s = S.session;
    if (!s) return Promise.resolve(false);
    S.refreshing = (async () => {
      for (let i = 0; i < 5; i++) {
        try {
          const t = await api('POST', '/v1/sessions/refresh', { refresh_token: s.refresh_token }, { auth: false });
          if (S.session !== s) return false;
          saveSession(t);
          return true;
        } catch (e) {
          if (S.session !== s) return false;
          if (e.status && e.status < 500 && e.status !== 429) break;
          await sleep(1000 * (i + 1));
        }
      }
      if (S.session === s) endSession('Your session ended. Please log in again.');
      return false;
    })().finally(() => { S.refreshing = null; });
    return S.refreshing;
  }

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

  // Logs in; while `retryUntil` lies ahead, a 401 (account not applied yet) or 429 is retried.
  async function login(c, retryUntil = 0) {
    for (;;) {
      try {
        return await api('POST', '/v1/sessions', c, { auth: false });
      } catch (e) {
        if (Date.now() >= retryUntil || (e.status !== 401 && e.status !== 429)) throw e;
        const wait = e.status === 429 ? Math.max(300, Number(e.retryAfter || 1) * 1000) : 300;
        await sleep(wait);
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
      if (register) await api('POST', '/v1/accounts', c, { ingest: true, auth: false });
      const t = await login(c, register ? Date.now() + 10000 : 0);
      out.textContent = '';
      $('#auth-password').value = '';
      saveSession(t);
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
      ready: false, backoff: 300, needRefresh: false, lastSeq: 0, convs: [], open: null, tab: 'chats',
      blocked: new Set(), invitations: [], muteWanted: new Map(), view: null, hit: null,
    });
    S.searchGen += 1;
    S.pending.clear();
    S.convEls.clear();
    S.stores.clear();
    S.readSent.clear();
    $('#conversations').replaceChildren();
    $('#messages').replaceChildren();
    $('#members').replaceChildren();
    $('#feed').replaceChildren();
    $('#search-people').replaceChildren();
    $('#search-messages').replaceChildren();
    $('#search-results').hidden = true;
    $('#search-q').value = '';
    $('#search-go').disabled = false;
    $('#total-unread').textContent = '0';
    for (const id of ['#side-error', '#chat-error', '#feed-error']) $(id).textContent = '';
  }

  function endSession(message) {
    clearTimeout(S.refreshTimer);
    resetState();
    S.session = null;
    sessionStorage.removeItem(SESSION_KEY);
    setStatus('offline');
    $('#app').hidden = true;
    $('#auth').hidden = false;
    $('#auth-error').textContent = message || '';
    $('#auth-user').focus();
  }

  async function logout() {
    $('#logout').disabled = true;
    try { await api('DELETE', '/v1/sessions/current', undefined, { retry: false }); } catch (_) { /* leave anyway */ }
    $('#logout').disabled = false;
    endSession('');
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
    connect();
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
    if (!S.session || S.ws) return;
    if (S.needRefresh || accessExpiring()) {
      S.needRefresh = false;
      if (!(await refresh())) { if (S.session) scheduleReconnect(); return; }
      if (S.ws) return;
    }
    const proto = location.protocol === 'https:' ? 'wss' : 'ws';
    const url = `${proto}://${location.host}/v1/ws?device=${enc(deviceId())}&access_token=${enc(S.session.access_token)}`;
    let ws;
    try { ws = new WebSocket(url); } catch (_) { scheduleReconnect(); return; }
    S.ws = ws;
    S.ready = false;
    const token = S.session.access_token;
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
      if (!S.session) return;
      setStatus('reconnecting');
      if (ev.code === 4001) {
        S.needRefresh = S.session.access_token === token; // else a refresh already replaced it
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
        clearInterval(S.pingTimer);
        S.pingTimer = setInterval(() => wsSend({ type: 'ping' }), Math.max(1, f.heartbeat_secs || 30) * 1000);
        for (const p of S.pending.values()) wsSend(p.frame);
        scheduleConvs(0);
        if (S.open) scheduleHistory();
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
    if (m.status === 'pending') m.status = 'sent';
    if (S.open === m.conversation) renderMessages();
  }

  function onError(f) {
    const p = f.request_id && S.pending.get(f.request_id);
    if (!p) return;
    S.pending.delete(f.request_id);
    const transient = f.status === 429 || f.status >= 500;
    if (p.frame.type === 'read') {
      S.readSent.delete(p.frame.conversation);
      return;
    }
    const m = p.msg;
    if (transient && p.tries < 5) {
      const { request_id: _, ...frame } = p.frame;
      setTimeout(() => { if (S.session) request(frame, m, p.tries + 1); }, 1000 * (p.tries + 1));
      return;
    }
    if (m) {
      m.status = 'failed';
      m.note = f.error || 'not sent';
      if (S.open === m.conversation) renderMessages();
    }
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
    .filter((m) => m.sender === me() && m.seq == null && (m.status === 'pending' || m.status === 'sent'))
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

  function applyRefused(e) {
    let m = findMessage(e);
    if (!m && e.conversation_id && S.stores.has(e.conversation_id)) m = unsequencedOwn(S.stores.get(e.conversation_id))[0];
    if (!m) {
      if (e.conversation_id === S.open) $('#chat-error').textContent = `A message was refused: ${e.reason || 'refused'}`;
      return;
    }
    m.status = 'refused';
    m.note = `Not delivered: ${(e.reason || 'refused').replace(/_/g, ' ')}`;
  }

  function msgEl(m) {
    const li = document.createElement('li');
    li.className = 'message';
    li.innerHTML = '<div class="meta"><span class="sender"></span><time></time><span class="edited"></span>'
      + '<span class="status"></span></div><div class="quote"></div><div class="attachments"></div>'
      + '<div class="body"></div><div class="reactions"></div><div class="note"></div>'
      + '<div class="actions"><button type="button" class="link" data-action="reply">Reply</button>'
      + '<button type="button" class="link" data-action="react" aria-label="React with a thumbs up">👍</button>'
      + '<button type="button" class="link" data-action="edit">Edit</button></div>';
    return li;
  }

  const timeFmt = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
  const dateFmt = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });
  function setTime(el, iso, fmt = timeFmt) {
    if (!iso || el.dateTime === iso) return;
    const d = new Date(iso);
    if (Number.isNaN(d.getTime())) return;
    el.dateTime = iso;
    el.textContent = fmt.format(d);
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
    setText(li.querySelector('.sender'), own ? `${m.sender} (you)` : m.sender);
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
    if (!st) { ul.replaceChildren(); return; }
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
      $('#chat-error').textContent = errText(e);
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
      $('#chat-error').textContent = errText(e);
    }
  }

  const peerOf = (id) => {
    const [, a, b] = id.split(':');
    return a === me() ? b : a;
  };
  const isGroup = (id) => id.startsWith('g:');
  const titleOf = (id) => (isGroup(id) ? id.slice(2) : peerOf(id));

  function showChat(id) {
    const chat = $('#chat');
    chat.dataset.conversation = id || '';
    $('#chat-empty').hidden = !!id;
    chat.querySelector('.chat-head').hidden = !id;
    $('#composer').hidden = !id;
    $('#messages').hidden = !id;
    $('#group-panel').hidden = !(id && isGroup(id));
    $('#chat-error').textContent = '';
    $('#members').replaceChildren();
    $('#member-note').textContent = '';
    $('#chat-note').textContent = '';
    $('#report-form').hidden = true;
    $('#member-form').hidden = false; // until the members say whether this user may invite
    clearContext();
    S.members = [];
    $('#mention-list').hidden = true;
    if (!id) { $('#messages').replaceChildren(); return; }
    const summary = S.convs.find((c) => c.conversation_id === id);
    const name = summary && summary.name && summary.name !== titleOf(id) ? ` (${summary.name})` : '';
    $('#chat-title').textContent = isGroup(id) ? `Group ${titleOf(id)}${name}` : `Chat with ${titleOf(id)}${name}`;
    renderChatActions();
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
    $('#composer-input').focus();
    return loadHistory(id);
  }

  function sendMessage() {
    const id = S.open;
    const input = $('#composer-input');
    const body = input.value;
    if (!id || !body.trim()) return;
    if (S.editing) { editMessage(body); return; }
    if (body.length > MAX_BODY) { $('#chat-error').textContent = `A message holds at most ${MAX_BODY} characters.`; return; }
    if (S.view) backToLatest();
    const target = isGroup(id) ? { group: id.slice(2) } : { to: peerOf(id) };
    const cid = `c-${hex(16)}`;
    const st = store(id);
    const m = {
      key: cid, client_msg_id: cid, conversation: id, sender: me(), body, status: 'pending',
      order: ++S.order, created_at: new Date().toISOString(), seq: null, message_id: '', el: null,
    };
    const extra = draftExtras(id, body);
    Object.assign(m, { reply_to: extra.quote || null });
    st.msgs.set(cid, m);
    request({ type: 'send', ...target, body, client_msg_id: cid, ...extra.frame }, m);
    clearContext();
    input.value = '';
    $('#chat-error').textContent = '';
    S.forceScroll = true;
    renderMessages();
  }

  // ---------------------------------------------------------------- rich messages
  // Ticks from the server's receipts: sent (stored), delivered (a device of the peer acknowledged
  // it), read (the peer's read marker passed it). Groups have no per-message ticks here.
  const TICKS = { sending: 'sending…', sent: '✓ sent', delivered: '✓✓ delivered', read: '✓✓ read' };
  function tickOf(m) {
    if (m.status === 'pending') return 'sending';
    if (m.status !== 'sent') return '';
    if (m.seq == null) return 'sent';
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
      $('#chat-error').textContent = errText(e);
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
      $('#chat-error').textContent = errText(e);
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
      const cid = `c-${hex(16)}`;
      const st = store(id);
      const m = {
        key: cid, client_msg_id: cid, conversation: id, sender: me(), body, status: 'pending',
        order: ++S.order, created_at: new Date().toISOString(), seq: null, message_id: '', el: null,
        content_type: kindOf(mime), attachments: [attachment],
        local: { [attachment.id]: URL.createObjectURL(file) },
      };
      st.msgs.set(cid, m);
      request({ type: 'send', ...target, body, client_msg_id: cid, content_type: m.content_type, attachments: [attachment] }, m);
      input.value = '';
      clearContext();
      S.forceScroll = true;
      renderMessages();
    } catch (e) {
      setContext('');
      $('#chat-error').textContent = errText(e);
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
        .catch((e) => { if (w) w.close(); $('#chat-error').textContent = errText(e); });
      return;
    }
    const reaction = ev.target.closest('button.reaction');
    if (reaction) { toggleReaction(m, reaction.dataset.key); return; }
    const action = ev.target.closest('[data-action]');
    if (!action) return;
    if (action.dataset.action === 'reply') startReply(m);
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
    if (!S.session || (summary && summary.read_seq >= seq) || attempt >= 10) return;
    setTimeout(() => reconcileRead(id, seq, attempt + 1), Math.min(250 * 2 ** attempt, 4000));
  }

  function scheduleConvs(delay = 150) {
    if (S.convTimer && delay > 0) return; // already due soon
    clearTimeout(S.convTimer);
    S.convTimer = setTimeout(() => { S.convTimer = 0; loadConversations(); }, delay);
  }

  async function loadConversations() {
    if (!S.session) return;
    const gen = ++S.convGen;
    try {
      const page = await api('GET', `/v1/users/${enc(me())}/conversations?limit=50`);
      if (gen !== S.convGen || !S.session) return;
      S.convs = page.conversations || [];
      setText($('#total-unread'), String(page.total_unread || 0));
      renderConversations();
    } catch (e) {
      if (gen === S.convGen && S.session) $('#side-error').textContent = errText(e);
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
      if (!S.session) return;
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
      if (!S.session) return;
      if (attempt >= 8) { $('#side-error').textContent = errText(e); return; }
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
      $('#side-error').textContent = errText(e);
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
      $('#chat-error').textContent = errText(e);
    } finally {
      $(button).disabled = false;
    }
  }

  // Fanout applies a (un)mute a moment later: the page shows what the user chose and refetches the
  // contact list (whose total the mute changes) until the server shows it too.
  async function reconcileMute(id, muted, attempt) {
    await loadConversations();
    const summary = S.convs.find((c) => c.conversation_id === id);
    if (!S.session || S.muteWanted.get(id) !== muted) return;
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
    li.innerHTML = '<button type="button"><span class="title"></span><span class="badge" hidden></span>'
      + '<span class="preview"></span></button>';
    return li;
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
      const title = titleOf(id);
      setText(li.querySelector('.title'), title);
      li.querySelector('button').title = c.name && c.name !== title ? `${title} (${c.name})` : title;
      const lm = c.last_message;
      const preview = li.querySelector('.preview');
      setText(preview, lm ? (lm.recalled ? 'message recalled' : lm.preview) : '');
      preview.classList.toggle('muted', !!(lm && lm.recalled));
      const badge = li.querySelector('.badge');
      const n = c.unread || 0;
      setText(badge, n > 0 ? String(n) : '');
      badge.hidden = n <= 0;
      if (n > 0) badge.setAttribute('aria-label', `${n} unread`); else badge.removeAttribute('aria-label');
      li.classList.toggle('inactive', c.active === false);
      li.classList.toggle('muted-conv', !!c.muted);
      const want = prev ? prev.nextSibling : ul.firstChild;
      if (want !== li) ul.insertBefore(li, want);
      prev = li;
    }
    for (const [id, li] of S.convEls) if (!seen.has(id)) { li.remove(); S.convEls.delete(id); }
    markCurrent();
    renderChatActions();
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
      const mine = page.members.find((m) => m.user === me());
      $('#member-form').hidden = mine ? mine.role === 'member' : !page.next_cursor;
      const ul = $('#members');
      ul.replaceChildren(...page.members.map((m) => {
        const li = document.createElement('li');
        li.dataset.user = m.user;
        li.textContent = m.user;
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
      if (S.open === `g:${group}` && e.status !== 404 && e.status !== 403) $('#chat-error').textContent = errText(e);
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
      o.textContent = errText(e);
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
        $('#member-note').textContent = `Invited ${user}: listed once they accept.`;
        for (const ms of [500, 1500]) setTimeout(() => { if (S.open === id) loadMembers(group); }, ms);
      });
  }

  function openDirect() {
    const user = $('#new-chat-user').value.trim();
    const out = $('#side-error');
    if (badId(user)) { out.textContent = badId(user); return; }
    if (user === me()) { out.textContent = 'Pick another user than yourself.'; return; }
    out.textContent = '';
    $('#new-chat-user').value = '';
    openConversation(`d:${[me(), user].sort().join(':')}`);
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
      if (gen === S.searchGen) out.textContent = errText(e);
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
        if (S.open === id) $('#chat-error').textContent = errText(e);
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
      $('#chat-error').textContent = errText(e);
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
    if (tab === 'feed') scheduleFeed(0);
    else maybeRead();
  }

  function scheduleFeed(delay = 150) {
    clearTimeout(S.feedTimer);
    S.feedTimer = setTimeout(loadFeed, delay);
  }

  async function loadFeed() {
    if (!S.session) return;
    const gen = ++S.feedGen;
    try {
      const page = await api('GET', `/v1/users/${enc(me())}/feed?limit=50`);
      if (gen !== S.feedGen || !S.session) return;
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
      if (gen === S.feedGen && S.session) $('#feed-error').textContent = errText(e);
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
  $('#conversations').addEventListener('click', (ev) => {
    const li = ev.target.closest('li[data-conversation]');
    if (li) openConversation(li.dataset.conversation);
  });
  document.addEventListener('visibilitychange', () => { if (S.session) maybeRead(); });
  window.addEventListener('online', () => { if (S.session && !S.ws) { S.backoff = 300; connect(); } });

  // Resume a session kept in this tab, if it can still be refreshed.
  let saved = null;
  try { saved = JSON.parse(sessionStorage.getItem(SESSION_KEY) || 'null'); } catch (_) { saved = null; }
  if (saved && saved.access_token && Date.now() < saved.obtained + saved.refresh_expires_in * 1000) {
    S.session = saved;
    scheduleRefresh();
    startApp();
  } else {
    endSession('');
  }
})();
