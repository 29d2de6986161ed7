"""The OR display in a browser: ``orsight display --web [--port 8080]`` (loopback by default).

The same compositor as the window (newest video frame, fresh mask, alerts, NO SIGNAL), served
over HTTP by the standard library: ``/`` is a page with no plug-in (it fetches the newest
picture as it comes: newest frame wins, a slow browser skips frames, never lags), the active
alerts with their priorities, AI fps and delay; ``/snapshot.jpg`` is the newest picture shown;
``/state.json`` what the page prints. Every request must name this server (Host) and carry the
token printed at start (:class:`Guard`); at most 32 connections, idle ones closed after 10 s.

    serve_web("ipc:///tmp/or.sock", port=8080)      # until Ctrl-C / SIGTERM / the publisher ends
"""
from __future__ import annotations

import hmac
import json
import secrets
import threading
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs

import cv2

from pipeline.core.signals import block_stop_signals
from pipeline.display.viewer import DISPLAY_TOPICS, NO_SIGNAL_MS, STALE_MS, Compositor, Shown
from pipeline.transport.untrusted import TransportError
from pipeline.transport.zeromq import Receiver

JPEG_QUALITY = 85
TOKEN_COOKIE = "orsight_token"
MAX_CONNECTIONS = 32
REQUEST_TIMEOUT_S = 10.0
PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>orsight</title>
<style>
 body { margin: 0; background: #000; color: #eee; font: 16px system-ui, sans-serif; }
 #picture { display: block; width: 100vw; max-height: 88vh; object-fit: contain; background: #000; }
 #bar { display: flex; gap: 1.5em; padding: .4em .8em; align-items: center; }
 .alert { padding: .15em .6em; border-radius: .2em; font-weight: 600; }
 .high { background: #e60000; color: #fff; } .medium { background: #ffd700; color: #000; }
 .low { background: #b4b4b4; color: #000; }
 #tiers { padding: 0 .8em .4em; font-size: 80%; color: #bbb; }
</style></head>
<body><img id="picture" alt="orsight live picture" src="snapshot.jpg">
<div id="bar"><span id="stats">connecting</span><span id="alerts"></span></div>
<div id="tiers"></div>
<script>
const picture = document.getElementById("picture");
let frame = -1;
async function refresh() {
  try {
    const state = await (await fetch("state.json", {cache: "no-store"})).json();
    document.getElementById("stats").textContent =
      `${state.signal}  AI ${state.fps_ai ?? "-"} fps  delay ${state.annotation_delay_ms ?? "-"} ms`;
    document.getElementById("tiers").textContent = state.vessel_alerts ? `Vessel alerts: ${state.vessel_alerts}` : "";
    const badges = state.alerts.map(a => {  // text only: nothing from the wire is ever read as HTML
      const badge = document.createElement("span");
      badge.className = "alert " + (["high", "medium", "low"].includes(a.priority) ? a.priority : "low");
      badge.textContent = `${String(a.priority).toUpperCase()}: ${a.message || a.rule}`;
      return badge;
    });
    document.getElementById("alerts").replaceChildren(...badges);
    if (state.picture !== frame) {  // the newest picture only: a slow browser skips, never lags
      frame = state.picture;
      await new Promise(done => { picture.onload = picture.onerror = done; picture.src = `snapshot.jpg?${frame}`; });
    }
  } catch (error) { document.getElementById("stats").textContent = "display server unreachable"; }
  setTimeout(refresh, 40);
}
refresh();
</script></body></html>
"""


class WebState:
    """The newest picture and what the page prints, shared with the HTTP handlers. The picture is
    encoded when a browser asks for it, once per picture (hidden first when out of body: other rooms
    watch): no work when nobody watches."""

    def __init__(self):
        self.lock = threading.Lock()
        self.shown: Shown | None = None
        self.jpeg: tuple[int, bytes] = (-1, b"")  # (picture number, JPEG of it)
        self.state = json.dumps({"picture": -1, "signal": "waiting for video", "alerts": []}).encode()
        self.pictures = 0

    def update(self, picture: Shown, compositor: Compositor) -> None:
        status = compositor.status.header if compositor.status is not None else {}
        alerts = picture.packet.active_alerts if picture.packet is not None else []
        signal = "AI STALE" if picture.stale else "live" if picture.video_frame else \
            ("CAPTURE LOST" if status.get("state") == "capture_lost" else "NO SIGNAL")
        delays = compositor.receiver.delays_ms["mask"][-30:]  # the newest, as they were
        with self.lock:
            self.shown, self.pictures = picture, self.pictures + 1
            self.state = json.dumps({"picture": self.pictures, "signal": signal, "fps_ai": status.get("fps_ai"),
                                     "annotation_delay_ms": round(sum(delays) / len(delays), 1) if delays else None,
                                     "vessel_alerts": status.get("vessel_alerts"), "privacy": picture.privacy,
                                     "alerts": [a.to_dict() for a in alerts if a.rule != "no_signal"]}
                                    ).encode()

    def snapshot(self) -> bytes:
        """The newest picture as JPEG (empty before the first)."""
        with self.lock:
            shown, number = self.shown, self.pictures
            if shown is None or self.jpeg[0] == number:
                return self.jpeg[1]
        ok, jpeg = cv2.imencode(".jpg", shown.shared(), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        with self.lock:
            if ok and number > self.jpeg[0]:
                self.jpeg = (number, jpeg.tobytes())
            return self.jpeg[1]


class Guard:
    """Who may see the picture: a request that names this server (its Host header: no DNS rebinding) and
    carries the token printed at start (in the address, then a cookie), as Jupyter does; every user of
    this computer reaches loopback, and patient video is theirs to see only with the token."""

    def __init__(self, host: str):
        self.token, self.host = secrets.token_urlsafe(24), host
        self.hosts: set[str] | None = None  # beyond loopback any name reaches the server: the token decides

    def bound(self, port: int) -> str:
        """The port the server got; returns the address to open (with the token)."""
        if self.host.startswith("127.") or self.host in ("localhost", "::1"):
            self.hosts = {f"{name}:{port}" for name in (self.host, "localhost", "127.0.0.1", "[::1]")}
        return f"http://{self.host}:{port}/?token={self.token}"

    def allows(self, host_header: str | None, query: str, cookie: str | None) -> tuple[bool, bool]:
        """(allowed, token given in the address: set the cookie)."""
        if self.hosts is not None and (host_header or "").lower() not in self.hosts:
            return False, False
        given = parse_qs(query).get("token", [""])[0]
        jar = SimpleCookie(cookie or "")
        kept = jar[TOKEN_COOKIE].value if TOKEN_COOKIE in jar else ""
        by_address = hmac.compare_digest(given.encode(), self.token.encode())
        return by_address or hmac.compare_digest(kept.encode(), self.token.encode()), by_address


class LimitedServer(ThreadingHTTPServer):
    """At most ``MAX_CONNECTIONS`` at once (one more is closed at once); each idle one closed after
    ``REQUEST_TIMEOUT_S``: half-open connections cannot lock the browsers out."""

    daemon_threads = True

    def __init__(self, address, handler):
        super().__init__(address, handler)
        self.slots = threading.BoundedSemaphore(MAX_CONNECTIONS)

    def process_request(self, request, client_address):
        if not self.slots.acquire(blocking=False):
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()


def _handler(web: WebState, guard: Guard):
    class Handler(BaseHTTPRequestHandler):
        timeout = REQUEST_TIMEOUT_S  # a client that trickles or says nothing is dropped

        def do_GET(self):  # noqa: N802 (the standard library's name)
            path, _, query = self.path.partition("?")
            allowed, by_address = guard.allows(self.headers.get("Host"), query, self.headers.get("Cookie"))
            if not allowed:
                self.send_error(403, "open the address orsight printed at start (with its token)")
                return
            pages = {"/": lambda: (PAGE.encode(), "text/html; charset=utf-8"),
                     "/snapshot.jpg": lambda: (web.snapshot(), "image/jpeg"),
                     "/state.json": lambda: (web.state, "application/json")}
            body, kind = pages[path]() if path in pages else (None, None)
            if body is None or (path == "/snapshot.jpg" and not body):
                self.send_error(404 if body is None else 503)
                return
            self.send_response(200)
            if by_address:
                self.send_header("Set-Cookie", f"{TOKEN_COOKIE}={guard.token}; HttpOnly; SameSite=Strict; Path=/")
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):  # quiet: a page polls many times a second
            pass

    return Handler


def serve_web(endpoint: str, host: str = "127.0.0.1", port: int = 8080, stale_ms: float = STALE_MS,
              no_signal_ms: float = NO_SIGNAL_MS, keys: str | Path | None = None,
              stop: threading.Event | None = None, propagate: bool = False, ready=None,
              until_publisher_ends: bool = False) -> dict:
    """Serve the display until ``stop`` or Ctrl-C / SIGTERM (the publisher stopping shows NO SIGNAL; with
    ``until_publisher_ends``, it ends the serving); returns its summary.
    ``propagate``: move each mask with the picture to the frame shown (the Compositor's). ``ready(url)`` is
    called once the port is bound (never for a port in use)."""
    guard = Guard(host)
    try:
        server = LimitedServer((host, port), _handler(web := WebState(), guard))
    except OSError as error:
        raise TransportError(f"cannot serve the web display on {host}:{port}: {error.strerror}") from None
    address = guard.bound(server.server_address[1])
    if ready is not None:
        ready(address)

    def serve():
        block_stop_signals()
        server.serve_forever(poll_interval=0.2)

    threading.Thread(target=serve, name="orsight-web", daemon=True).start()
    receiver = Receiver(endpoint, DISPLAY_TOPICS, keys=keys).start()
    compositor, shown = Compositor(receiver, stale_ms, no_signal_ms, propagate, until_publisher_ends), 0
    try:
        while not (stop is not None and stop.is_set()):
            picture = compositor.next()
            if picture is None:
                break
            shown += picture.video_frame
            web.update(picture, compositor)
    except KeyboardInterrupt:
        pass
    finally:
        receiver.stop()
        server.shutdown()
        server.server_close()
    return compositor.summary(shown)
