#!/usr/bin/env python3
"""The black-box security suite: attacks from issue 19 (and the checks that held, and issue 20's write
limits) against a running stack, through its public ports only, with the real register and login flow.
Standard library only.

    scripts/security.py --ingest http://127.0.0.1:28080 --reader http://127.0.0.1:28081

scripts/security.sh starts a private stack and runs it (as scripts/test.sh does). The stack must trust
127.0.0.2 as a reverse proxy (FANLINE_TRUSTED_PROXIES) and may run with smaller login budgets for
speed (see security.sh); the other limits are the defaults. Each check prints PASS or FAIL with the
finding it covers; the last line counts them, and the exit code is non-zero on any failure.
"""

import argparse
import base64
import http.client
import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
PASSWORD = "correct horse battery"


class Http:
    """One request per connection, from a chosen source address (loopback range)."""

    def __init__(self, base, source="127.0.0.1"):
        url = urllib.parse.urlsplit(base)
        self.host, self.port, self.source = url.hostname, url.port, source

    def call(self, method, path, body=None, token=None, headers=None, timeout=30):
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout,
                                          source_address=(self.source, 0))
        all_headers = dict(headers or {})
        data = None
        if body is not None:
            data = json.dumps(body).encode() if not isinstance(body, bytes) else body
            all_headers.setdefault("content-type", "application/json")
        if token:
            all_headers["authorization"] = f"Bearer {token}"
        try:
            conn.request(method, path, body=data, headers=all_headers)
            response = conn.getresponse()
            raw = response.read()
            try:
                value = json.loads(raw) if raw else None
            except ValueError:
                value = raw.decode(errors="replace")
            return response.status, dict((k.lower(), v) for k, v in response.getheaders()), value
        finally:
            conn.close()


class Suite:
    def __init__(self, ingest, reader):
        self.ingest, self.reader = ingest, reader
        self.passed, self.failed = 0, 0
        self.binaries = None
        self.run_id = uuid.uuid4().hex[:8]
        self.sources = 0

    def fresh_source(self):
        """A loopback address of its own, so that no check spends another's login budgets."""
        self.sources += 1
        return f"127.1.{self.sources // 250}.{self.sources % 250 + 1}"

    def check(self, finding, name, ok, detail=""):
        if ok:
            self.passed += 1
            print(f"PASS  [{finding}] {name}", flush=True)
        else:
            self.failed += 1
            print(f"FAIL  [{finding}] {name}: {detail}", flush=True)

    def user(self, name):
        return f"{name}{self.run_id}"

    def register(self, *names):
        for name in names:
            status, _, value = Http(self.ingest, self.fresh_source()).call(
                "POST", "/v1/accounts", {"user": name, "password": PASSWORD})
            assert status == 202, (status, value)
        deadline = time.time() + 60
        for name in names:
            # Whether fanout applied it: a session row proves nothing here, so wait for a login.
            while True:
                status, _, value = self.login(name)
                if status == 200:
                    break
                assert time.time() < deadline, f"{name} never logged in: {status} {value}"
                time.sleep(0.3)

    def login(self, name, source=None, password=PASSWORD, forwarded=None):
        source = source or self.fresh_source()
        headers = {"x-forwarded-for": forwarded} if forwarded else None
        return Http(self.reader, source).call("POST", "/v1/sessions",
                                              {"user": name, "password": password},
                                              headers=headers)


def ulid_int(text):
    value = 0
    for char in text:
        value = value * 32 + CROCKFORD.index(char)
    return value


# --- WebSocket, just enough of RFC 6455 ----------------------------------------------------------

def ws_connect(base, path, origin=None, source="127.0.0.9"):
    url = urllib.parse.urlsplit(base)
    sock = socket.create_connection((url.hostname, url.port), timeout=10,
                                    source_address=(source, 0))
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [f"GET {path} HTTP/1.1", f"Host: {url.hostname}:{url.port}", "Upgrade: websocket",
             "Connection: Upgrade", f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13"]
    if origin:
        lines.append(f"Origin: {origin}")
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            break
        head += chunk
    status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/") else 0
    return sock, status, head


def ws_send_header(sock, opcode, length):
    mask = os.urandom(4)
    if length < 126:
        header = struct.pack("!BB", 0x80 | opcode, 0x80 | length)
    elif length < 65536:
        header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, length)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, length)
    sock.sendall(header + mask)
    return mask


def ws_read_frame(sock):
    """(opcode, payload) of the next frame, or (None, b"") when the connection ended."""
    def exactly(n):
        data = b""
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("closed")
            data += chunk
        return data
    try:
        first, second = exactly(2)
        length = second & 0x7F
        if length == 126:
            length = struct.unpack("!H", exactly(2))[0]
        elif length == 127:
            length = struct.unpack("!Q", exactly(8))[0]
        return first & 0x0F, exactly(length)
    except (ConnectionError, OSError):
        return None, b""


def ws_close_code(sock, seconds):
    """The close code the server sends within `seconds` (skipping other frames), or None."""
    sock.settimeout(seconds)
    deadline = time.time() + seconds
    while time.time() < deadline:
        opcode, payload = ws_read_frame(sock)
        if opcode is None:
            return None
        if opcode == 8:
            return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
    return None


# --- the checks ----------------------------------------------------------------------------------

def ids_are_unpredictable(suite):
    """Finding 1: ids minted in one millisecond differed by +1, so the next post's id was known."""
    name = suite.user("idmaker")
    suite.register(name)
    _, _, tokens = suite.login(name)
    posts = [{"author": name, "body": f"p{i}"} for i in range(200)]
    status, _, value = Http(suite.ingest, "127.0.0.9").call(
        "POST", "/v1/posts/batch", {"posts": posts}, token=tokens["access_token"])
    ids = [ulid_int(r["post_id"]) for r in value["results"] if r.get("post_id")]
    same_ms = [(a, b) for a, b in zip(ids, ids[1:]) if a >> 80 == b >> 80]
    close = [1 for a, b in same_ms if 0 < b - a < 2 ** 20]
    suite.check(1, "post ids minted in one millisecond do not tell the next",
                status == 200 and len(same_ms) > 10 and len(close) < len(same_ms) // 10,
                f"{len(close)} of {len(same_ms)} same-millisecond steps below 2^20")


def ids_nobody_owns_cannot_be_squatted(suite):
    """Finding 2: Alice messaged `carol` before Carol registered; a stranger registered `carol` and read
    it. Existing ids without accounts (26 of 28 post authors) could be claimed by whoever came first."""
    alice, carol = suite.user("alice2"), suite.user("carol")
    suite.register(alice)
    _, _, tokens = suite.login(alice)
    ingest = Http(suite.ingest, suite.fresh_source())
    status, _, value = ingest.call("POST", "/v1/messages",
                                   {"from": alice, "to": carol, "body": "for carol only"},
                                   token=tokens["access_token"])
    suite.check(2, "a message to an id nobody registered is refused (404 naming to)",
                status == 404 and isinstance(value, dict) and value.get("field") == "to",
                f"{status} {value}")
    status, _, _ = ingest.call("PUT", f"/v1/users/{alice}/following/{carol}",
                               token=tokens["access_token"])
    suite.check(2, "a follow of an id nobody registered is refused", status == 404, f"{status}")
    if not suite.binaries:
        return
    # An id holding data from before accounts, as an upgraded deployment has them: its post comes in
    # through the operator's raw producer, as old events would.
    legacy = suite.user("legacy")
    envelope = {"v": 1, "id": uuid.uuid4().hex, "key": legacy,
                "ts": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "type": "post_created",
                "payload": {"post_id": "01JD0000000000000000000000", "author": legacy,
                            "body": "from before accounts",
                            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}}
    subprocess.run([os.path.join(suite.binaries, "fanout"), "events", "produce"],
                   input=json.dumps(envelope) + "\n", text=True, check=True, capture_output=True)
    deadline = time.time() + 30
    while time.time() < deadline:
        status, _, page = Http(suite.reader).call("GET", f"/v1/users/{legacy}/posts",
                                                  token=tokens["access_token"])
        if status == 200 and page.get("entries"):
            break
        time.sleep(0.3)  # a poll interval, until fanout applied the old post
    status, _, value = Http(suite.ingest, suite.fresh_source()).call(
        "POST", "/v1/accounts", {"user": legacy, "password": PASSWORD})
    suite.check(2, "an id holding data needs its claim code to be registered (409)",
                status == 409 and isinstance(value, dict) and value.get("field") == "claim_code",
                f"{status} {value}")
    code = subprocess.run([os.path.join(suite.binaries, "ingest"), "--claim-code", legacy],
                          capture_output=True, text=True, check=True).stdout.strip()
    status, _, value = Http(suite.ingest, suite.fresh_source()).call(
        "POST", "/v1/accounts", {"user": legacy, "password": PASSWORD, "claim_code": code})
    suite.check(2, "with the operator's claim code the owner registers it", status == 202,
                f"{status} {value}")


def guessing_does_not_lock_the_owner_out(suite):
    """Finding 3: ten wrong passwords from anywhere locked the owner out for a minute."""
    owner = suite.user("owner")
    suite.register(owner)
    # The owner's device logs in once from its own address: a known address from now on.
    status, _, _ = suite.login(owner, source="127.0.0.40")
    refused_at = None
    for attempt in range(30):
        status, headers, _ = suite.login(owner, source="127.0.0.66", password="wrong guess")
        if status == 429:
            refused_at = attempt
            break
    suite.check(3, "a guessing address is refused after its own budget",
                refused_at is not None and "retry-after" in headers, f"last status {status}")
    status, _, value = suite.login(owner, source="127.0.0.41")
    suite.check(3, "the owner logs in from another address meanwhile", status == 200,
                f"{status} {value}")
    # Guesses spread over many addresses (through the trusted proxy) spend the account's slow budget;
    # then new addresses wait, the owner's known device does not.
    for n in range(12):
        suite.login(owner, source="127.0.0.2", password="wrong guess", forwarded=f"198.51.100.{n}")
    status, _, _ = suite.login(owner, source="127.0.0.2", forwarded="203.0.113.77")
    suite.check(3, "after many addresses' failures, an unknown address waits", status == 429,
                f"status {status}")
    status, _, value = suite.login(owner, source="127.0.0.40")
    suite.check(3, "the owner's known device still logs in", status == 200, f"{status} {value}")


def forwarded_for_is_believed_from_trusted_proxies_only(suite):
    """Finding 8: behind a proxy all clients shared one budget; a client must not pick its own."""
    name = suite.user("spoof")
    suite.register(name)
    statuses = [suite.login(name, source="127.0.0.70", password="wrong",
                            forwarded=f"192.0.2.{n}")[0] for n in range(12)]
    suite.check(8, "X-Forwarded-For from an untrusted client is ignored", 429 in statuses,
                f"{statuses}")
    # More attempts than one address may make in a minute (60), each from another client.
    statuses = [suite.login(suite.user(f"nobody{n}"), source="127.0.0.2", password="wrong",
                            forwarded=f"192.0.2.{n + 1}")[0] for n in range(64)]
    suite.check(8, "a trusted proxy's clients each get their own budget", 429 not in statuses,
                f"{statuses.count(429)} of {len(statuses)} refused")


def slow_clients_are_cut_off(suite):
    """Finding 4: partial headers or bodies held connections for 70 s and more."""
    url = urllib.parse.urlsplit(suite.reader)
    results = {}

    def slow_headers():
        sock = socket.create_connection((url.hostname, url.port), source_address=("127.0.0.80", 0))
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        sock.settimeout(30)
        start = time.time()
        try:
            data = sock.recv(100)
            results["headers"] = (time.time() - start, data)
        except OSError as err:
            results["headers"] = (time.time() - start, err)

    def slow_body():
        sock = socket.create_connection((url.hostname, url.port), source_address=("127.0.0.81", 0))
        sock.sendall(b"POST /v1/sessions HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n"
                     b"content-length: 400\r\n\r\n{\"user\":")
        sock.settimeout(30)
        start = time.time()
        try:
            # Trickle a byte every second: a per-read timeout would never fire.
            data = b""
            while time.time() - start < 30:
                sock.sendall(b" ")
                try:
                    sock.settimeout(1)
                    data = sock.recv(200)
                    if data:
                        break
                except socket.timeout:
                    continue
            results["body"] = (time.time() - start, data)
        except OSError as err:
            results["body"] = (time.time() - start, err)

    threads = [threading.Thread(target=slow_headers), threading.Thread(target=slow_body)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed, data = results["headers"]
    suite.check(4, "a connection sending half a header is closed", elapsed < 20 and not data,
                f"after {elapsed:.1f} s: {data!r}")
    elapsed, data = results["body"]
    suite.check(4, "a body trickled byte by byte is cut off (408)",
                elapsed < 20 and isinstance(data, bytes) and b" 408 " in data[:20],
                f"after {elapsed:.1f} s: {data!r}")
    # Idle connections from one address: past the cap, new ones are closed at once.
    socks = []
    for _ in range(300):
        try:
            socks.append(socket.create_connection((url.hostname, url.port),
                                                  source_address=("127.0.0.82", 0)))
        except OSError:
            break
    time.sleep(1)
    closed = 0
    for sock in socks:
        sock.setblocking(False)
        try:
            if sock.recv(1) == b"":
                closed += 1
        except BlockingIOError:
            pass
        except OSError:
            closed += 1
    for sock in socks:
        sock.close()
    suite.check(4, "one address holds at most its connection cap", closed >= 300 - 256,
                f"{closed} of {len(socks)} closed")


def sockets_are_capped_and_frames_bounded(suite):
    """Finding 5: 16 MiB frames were buffered; one user opened 1,000 sockets and 100 long polls."""
    name = suite.user("sockets")
    suite.register(name)
    _, _, tokens = suite.login(name)
    token = tokens["access_token"]
    path = f"/v1/ws?device=d1&access_token={token}"
    sock, status, _ = ws_connect(suite.reader, path)
    sock.settimeout(10)
    ws_read_frame(sock)  # hello
    ws_send_header(sock, 1, 16 * 1024 * 1024)
    code = None
    try:
        for _ in range(256):
            sock.sendall(b"x" * 65536)
    except OSError:
        pass
    code = ws_close_code(sock, 5)
    sock.close()
    suite.check(5, "a frame past 64 KiB ends the socket (1009) before it is buffered",
                status == 101 and code == 1009, f"status {status}, close {code}")
    opened, statuses = [], []
    for n in range(20):
        sock, status, _ = ws_connect(suite.reader, f"/v1/ws?device=c{n}&access_token={token}")
        statuses.append(status)
        opened.append(sock)
    suite.check(5, "one user's open sockets are capped (429)",
                statuses.count(101) <= 16 and 429 in statuses, f"{statuses}")
    for sock in opened:
        sock.close()
    time.sleep(0.5)
    results = []

    def long_poll():
        status, _, _ = Http(suite.reader, "127.0.0.9").call(
            "GET", f"/v1/users/{name}/sync?after=999999999&wait=5", token=token)
        results.append(status)

    threads = [threading.Thread(target=long_poll) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    suite.check(5, "one user's waiting long polls are capped (429)",
                results.count(200) <= 8 and 429 in results, f"{sorted(results)}")


def tokenless_sockets_must_authenticate_first(suite):
    """Issue 25: a socket may take its token in its first frame (browsers keep it out of URLs), so
    anyone can open one without a token: it is closed unless a good token comes first, and soon."""
    results = {}
    for name, frame in [("nothing", None), ("a ping", b'{"type":"ping"}'),
                        ("a forged token", b'{"type":"auth","access_token":"eyJhbGciOiJIUzI1NiJ9.e30.x"}')]:
        sock, status, _ = ws_connect(suite.reader, "/v1/ws?device=t1", source="127.0.0.12")
        if frame is not None:
            mask = ws_send_header(sock, 1, len(frame))
            sock.sendall(bytes(b ^ mask[i % 4] for i, b in enumerate(frame)))
        start = time.time()
        results[name] = (status, ws_close_code(sock, 15), round(time.time() - start))
        sock.close()
    suite.check(5, "a tokenless socket that sends nothing is closed (1008) within 10 s",
                results["nothing"][:2] == (101, 1008) and results["nothing"][2] <= 11, f"{results}")
    suite.check(5, "a tokenless socket whose first frame is not its token is closed (1008)",
                results["a ping"][:2] == (101, 1008), f"{results}")
    suite.check(5, "a forged first-frame token is refused (4001)",
                results["a forged token"][:2] == (101, 4001), f"{results}")


def sessions_end_their_sockets(suite):
    """Finding 6: a socket outlived logout; a refresh token two rotations old did not revoke."""
    name = suite.user("session")
    suite.register(name)
    _, _, tokens = suite.login(name)
    sock, status, _ = ws_connect(suite.reader,
                                 f"/v1/ws?device=d1&access_token={tokens['access_token']}")
    sock.settimeout(10)
    ws_read_frame(sock)
    logout, _, _ = Http(suite.reader, "127.0.0.9").call(
        "DELETE", "/v1/sessions/current", token=tokens["access_token"])
    code = ws_close_code(sock, 10)
    sock.close()
    suite.check(6, "logout closes the session's socket (4002)", status == 101 and code == 4002,
                f"logout {logout}, close {code}")
    _, status, _ = ws_connect(suite.reader,
                              f"/v1/ws?device=d2&access_token={tokens['access_token']}")
    suite.check(6, "a logged-out session's token opens no new socket", status == 401,
                f"status {status}")

    def refresh(token):
        return Http(suite.reader, "127.0.0.9").call("POST", "/v1/sessions/refresh",
                                                    {"refresh_token": token})

    _, _, first = suite.login(name)
    _, _, second = refresh(first["refresh_token"])
    _, _, third = refresh(second["refresh_token"])
    reuse, _, _ = refresh(first["refresh_token"])
    current, _, _ = refresh(third["refresh_token"])
    suite.check(6, "a refresh token two rotations old revokes the session",
                reuse == 401 and current == 401, f"reuse {reuse}, current afterwards {current}")


def a_password_change_ends_the_other_sessions(suite):
    """Finding 8: there was no password change, so a thief's session could not be ended by it."""
    name = suite.user("changer")
    suite.register(name)
    _, _, mine = suite.login(name)
    _, _, thief = suite.login(name)
    sock, status, _ = ws_connect(suite.reader,
                                 f"/v1/ws?device=t1&access_token={thief['access_token']}")
    sock.settimeout(10)
    ws_read_frame(sock)
    change, _, value = Http(suite.reader, "127.0.0.9").call(
        "PUT", f"/v1/accounts/{name}/password",
        {"current_password": PASSWORD, "new_password": "a brand new secret"},
        token=mine["access_token"])
    code = ws_close_code(sock, 10)
    sock.close()
    refreshed, _, _ = Http(suite.reader, "127.0.0.9").call(
        "POST", "/v1/sessions/refresh", {"refresh_token": thief["refresh_token"]})
    suite.check(8, "a password change closes the other sessions' sockets and refresh tokens",
                change == 202 and code == 4002 and refreshed == 401,
                f"change {change} {value}, close {code}, refresh {refreshed}")


def ids_and_keys_follow_the_rules(suite):
    """Finding 8: `Alice` registered beside `alice`; a 32-character repetitive key passed."""
    name = suite.user("casey")
    suite.register(name)
    status, _, value = Http(suite.ingest, suite.fresh_source()).call(
        "POST", "/v1/accounts", {"user": name.capitalize(), "password": PASSWORD})
    suite.check(8, "an id differing only by case gets no account (400 naming user)",
                status == 400 and isinstance(value, dict) and value.get("field") == "user",
                f"{status} {value}")
    if suite.binaries:
        env = dict(os.environ, FANLINE_TOKEN_KEY="ab" * 20)
        result = subprocess.run([os.path.join(suite.binaries, "reader"), "--check-config"],
                                env=env, capture_output=True, text=True)
        suite.check(8, "a repetitive 40-byte token key is refused at start",
                    result.returncode != 0 and "not random" in result.stderr,
                    f"exit {result.returncode}: {result.stderr.strip()[:200]}")


def writes_are_limited_per_user(suite):
    """Issue 20: one token sent 200 direct messages in 0.4 s, all 202 (the victim's unread reached 200)."""
    sender, victim = suite.user("spammer"), suite.user("victim")
    suite.register(sender, victim)
    _, _, tokens = suite.login(sender)
    results = []

    def burst(n):
        status, headers, _ = Http(suite.ingest, "127.0.0.9").call(
            "POST", "/v1/messages", {"from": sender, "to": victim, "body": f"spam {n}"},
            token=tokens["access_token"])
        results.append((status, headers.get("retry-after")))

    threads = [threading.Thread(target=burst, args=(n,)) for n in range(60)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    accepted = sum(1 for status, _ in results if status == 202)
    limited = [after for status, after in results if status == 429]
    suite.check(20, "a burst of 60 direct messages is cut at the user's budget (429 + Retry-After)",
                0 < accepted <= 40 and limited and all(limited),
                f"{accepted} accepted, {len(limited)} limited")


def wait_for(what, probe, seconds=30):
    """Polls `probe` until it returns something true; that value, or None after `seconds`."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.3)
    return None


def private_groups_are_closed_to_strangers(suite):
    """Issue 20: a non-member joined any group and read its whole history; group ids could be
    enumerated; an owner added anyone without consent."""
    owner, stranger = suite.user("gowner"), suite.user("stranger")
    suite.register(owner, stranger)
    _, _, owner_tokens = suite.login(owner)
    _, _, stranger_tokens = suite.login(stranger)
    mine, theirs = owner_tokens["access_token"], stranger_tokens["access_token"]
    ingest, reader = Http(suite.ingest), Http(suite.reader)
    group = suite.user("club")
    ingest.call("POST", "/v1/groups", {"group": group, "owner": owner, "name": "Secret club"},
                token=mine)
    ingest.call("POST", "/v1/messages", {"from": owner, "group": group, "body": "secret"},
                token=mine)
    status, _, _ = ingest.call("PUT", f"/v1/groups/{group}/members/{stranger}", token=theirs)
    suite.check(20, "a join request is taken (202) and decided where membership is known",
                status == 202, f"{status}")
    wait_for("the group", lambda: reader.call("GET", f"/v1/groups/{group}", token=mine)[0] == 200)
    time.sleep(1)  # fanout applies the join (refused) in order after the creation
    paths = {f"/v1/groups/{group}": 404, f"/v1/groups/{group}/members": 404,
             f"/v1/groups/{group}/pending": 404, f"/v1/conversations/g:{group}/messages": 403,
             f"/v1/users/{owner}/invitations": 403, f"/v1/users/{owner}/blocks": 403,
             "/v1/admin/reports": 403}
    for path, expected in paths.items():
        status, _, value = reader.call("GET", path, token=theirs)
        suite.check(20, f"a stranger reads nothing: GET {path.replace(suite.run_id, '')} → {expected}",
                    status == expected, f"{status} {value}")
    _, _, never = reader.call("GET", f"/v1/groups/{suite.user('nosuch')}", token=theirs)
    _, _, hidden = reader.call("GET", f"/v1/groups/{group}", token=theirs)
    suite.check(20, "a private group answers like an id never used (no enumeration)",
                never == hidden, f"{never} vs {hidden}")
    status, _, _ = ingest.call("PUT", f"/v1/users/{owner}/blocks/{stranger}", token=mine)
    blocked = wait_for("the block", lambda: ingest.call(
        "PUT", f"/v1/users/{stranger}/following/{owner}", token=theirs)[0] == 403)
    suite.check(20, "a blocked user's follow of the blocker is refused at once (403)",
                status == 202 and blocked, f"{status}")
    writes = [("PATCH", f"/v1/groups/{group}", {"by": owner, "join_rule": "open"}),
              ("PUT", f"/v1/groups/{group}/members/{stranger}?by={owner}", None),
              ("DELETE", f"/v1/groups/{group}?by={owner}", None),
              ("PUT", f"/v1/users/{owner}/blocks/{stranger}", None),
              ("PUT", f"/v1/admin/accounts/{owner}/disabled", {}),
              ("DELETE", f"/v1/admin/groups/{group}", None)]
    for method, path, body in writes:
        status, _, value = ingest.call(method, path, body, token=theirs)
        suite.check(20, f"acting for another or as an operator: {method} "
                    f"{path.split('?')[0].replace(suite.run_id, '')} → 403",
                    status == 403, f"{status} {value}")


def disabled_accounts_are_locked_out(suite):
    """Issue 20: no operator could disable an account; a disabled one must lose every path within a
    bounded time (fanout's lag plus FANLINE_DISABLED_POLL_MS)."""
    operator, victim = "secop", suite.user("abuser")
    status, _, value = Http(suite.ingest, suite.fresh_source()).call(
        "POST", "/v1/accounts", {"user": operator, "password": PASSWORD})
    assert status in (202, 409), (status, value)
    suite.register(victim)
    _, _, op_tokens = wait_for("the operator", lambda: (lambda r: r if r[0] == 200 else None)(
        suite.login(operator)))
    _, _, victim_tokens = suite.login(victim)
    ingest, reader = Http(suite.ingest), Http(suite.reader)
    started = time.time()
    status, _, value = ingest.call("PUT", f"/v1/admin/accounts/{victim}/disabled",
                                   {"reason": "abuse"}, token=op_tokens["access_token"])
    suite.check(20, "the configured operator disables an account (202)", status == 202,
                f"{status} {value}")

    def locked_out():
        write = ingest.call("POST", "/v1/posts", {"author": victim, "body": "still here"},
                            token=victim_tokens["access_token"])[0]
        read = reader.call("GET", f"/v1/users/{victim}/sync",
                           token=victim_tokens["access_token"])[0]
        return write == 403 and read == 403

    locked = wait_for("locked out", locked_out, seconds=20)
    took = time.time() - started
    suite.check(20, f"its access tokens are refused by ingest and reader (after {took:.1f} s, "
                "bound: lag + 5 s)", locked and took < 15, f"{took:.1f} s")
    status, _, _ = suite.login(victim)
    suite.check(20, "it cannot log in (403)", status == 403, f"{status}")
    status, _, _ = reader.call("POST", "/v1/sessions/refresh",
                               {"refresh_token": victim_tokens["refresh_token"]})
    suite.check(20, "its refresh token is dead (401)", status == 401, f"{status}")


def nothing_internal_is_exposed(suite):
    """Finding 7: /metrics on public ports, no security headers, sockets from any Origin."""
    for label, base in (("ingest", suite.ingest), ("reader", suite.reader)):
        status, _, _ = Http(base).call("GET", "/metrics")
        suite.check(7, f"{label}'s public port serves no /metrics", status == 404, f"{status}")
    status, headers, _ = Http(suite.reader).call("GET", "/")
    wanted = ("content-security-policy", "x-frame-options", "x-content-type-options",
              "referrer-policy")
    missing = [h for h in wanted if h not in headers]
    suite.check(7, "the web page sends its security headers", status == 200 and not missing,
                f"missing {missing}")
    csp = headers.get("content-security-policy", "")
    suite.check(7, "the page may not be framed", "frame-ancestors 'none'" in csp, csp)
    name = suite.user("origin")
    suite.register(name)
    _, _, tokens = suite.login(name)
    path = f"/v1/ws?device=d1&access_token={tokens['access_token']}"
    _, status, _ = ws_connect(suite.reader, path, origin="https://evil.example")
    suite.check(7, "a foreign page's WebSocket is refused (403)", status == 403, f"{status}")
    url = urllib.parse.urlsplit(suite.reader)
    _, status, _ = ws_connect(suite.reader, path, origin=f"http://{url.hostname}:{url.port}")
    suite.check(7, "the reader's own page opens its socket", status == 101, f"{status}")


def what_held_still_holds(suite):
    """Checks that held in issue 19's audit: tokens, per-route subjects, SQL text, body limits."""
    a, b = suite.user("alice"), suite.user("bob")
    suite.register(a, b)
    _, _, tokens = suite.login(a)
    reader = Http(suite.reader)
    status, _, _ = reader.call("GET", f"/v1/users/{a}/sync")
    suite.check("held", "no token: 401", status == 401, f"{status}")
    status, _, _ = reader.call("GET", f"/v1/users/{b}/sync", token=tokens["access_token"])
    suite.check("held", "another user's inbox: 403", status == 403, f"{status}")
    status, _, value = reader.call("GET", "/v1/users/x'%20OR%201=1--/sync",
                                   token=tokens["access_token"])
    suite.check("held", "SQL text in an id: 400 naming the field",
                status == 400 and isinstance(value, dict) and value.get("field") == "user",
                f"{status} {value}")
    status, _, _ = Http(suite.ingest).call("POST", "/v1/posts", b"{" + b" " * 2_000_000 + b"}",
                                           token=tokens["access_token"],
                                           headers={"content-type": "application/json"})
    suite.check("held", "a 2 MB body: 413", status == 413, f"{status}")


CHECKS = [ids_are_unpredictable, ids_nobody_owns_cannot_be_squatted,
          guessing_does_not_lock_the_owner_out,
          forwarded_for_is_believed_from_trusted_proxies_only, slow_clients_are_cut_off,
          sockets_are_capped_and_frames_bounded, tokenless_sockets_must_authenticate_first,
          sessions_end_their_sockets,
          a_password_change_ends_the_other_sessions, ids_and_keys_follow_the_rules,
          writes_are_limited_per_user, private_groups_are_closed_to_strangers,
          disabled_accounts_are_locked_out,
          nothing_internal_is_exposed, what_held_still_holds]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ingest", required=True)
    parser.add_argument("--reader", required=True)
    parser.add_argument("--only", help="run the checks whose function name contains this")
    parser.add_argument("--binaries", help="the folder of the services' binaries (start-up checks)")
    args = parser.parse_args()
    suite = Suite(args.ingest, args.reader)
    suite.binaries = args.binaries
    for check in CHECKS:
        if args.only and args.only not in check.__name__:
            continue
        try:
            check(suite)
        except Exception as err:  # a check that crashes is a failed check, not a crashed suite
            suite.check("-", check.__name__, False, f"{type(err).__name__}: {err}")
    print(f"security: {suite.passed} passed, {suite.failed} failed")
    return 1 if suite.failed else 0


if __name__ == "__main__":
    sys.exit(main())
