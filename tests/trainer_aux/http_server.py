#!/usr/bin/python3
"""Loopback HTTP server for the downloader tests.

    http_server.py ROOT      serves ROOT on 127.0.0.1:<free port>; prints
                             "PORT <n>" on stdout once listening; exits when
                             stdin closes (so it never outlives its test).

Paths (NAME is a file under ROOT):
  /files/NAME          the file (Content-Length set); each GET counts a hit
  /hits/NAME           how many times /files/NAME was served, as text
  /status/CODE         an empty response with that status
  /redirect/N/NAME     302 chain of N hops ending at /files/NAME
  /loop                302 to itself, forever
  /to?url=U            302 to the given URL (e.g. file:///etc/passwd)
  /huge                Content-Length: 10^12, then a few bytes and close
  /endless             no Content-Length (HTTP/1.0, close-delimited), endless zeros
  /stall/NAME          Content-Length of NAME, the first half, then silence
  /cut/NAME            Content-Length of NAME, the first half, then close
  /html                a 200 text/html login page
"""
import collections
import os
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ROOT = None
HITS = collections.Counter()
LOCK = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def log_message(self, *args):  # quiet
        pass

    def _file(self, name):
        path = os.path.join(ROOT, os.path.basename(name))
        with open(path, "rb") as f:
            return f.read()

    def _head(self, code, length=None, ctype="application/octet-stream", extra=()):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        if length is not None:
            self.send_header("Content-Length", str(length))
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()

    def _redirect(self, location):
        self._head(302, 0, extra=[("Location", location)])

    def do_GET(self):  # noqa: C901 - one branch per scenario
        url = urllib.parse.urlsplit(self.path)
        parts = url.path.strip("/").split("/")
        kind = parts[0]
        try:
            if kind == "files":
                data = self._file(parts[1])
                with LOCK:
                    HITS[parts[1]] += 1
                self._head(200, len(data))
                self.wfile.write(data)
            elif kind == "hits":
                with LOCK:
                    body = str(HITS[parts[1]]).encode()
                self._head(200, len(body), "text/plain")
                self.wfile.write(body)
            elif kind == "status":
                self._head(int(parts[1]), 0)
            elif kind == "redirect":
                n = int(parts[1])
                self._redirect("/redirect/%d/%s" % (n - 1, parts[2]) if n > 0 else "/files/" + parts[2])
            elif kind == "loop":
                self._redirect("/loop")
            elif kind == "to":
                self._redirect(urllib.parse.parse_qs(url.query)["url"][0])
            elif kind == "huge":
                self._head(200, 10 ** 12)
                self.wfile.write(b"\0" * 1024)
            elif kind == "endless":
                self._head(200)
                chunk = b"\0" * 65536
                while True:
                    self.wfile.write(chunk)
            elif kind in ("stall", "cut"):
                data = self._file(parts[1])
                self._head(200, len(data))
                self.wfile.write(data[:len(data) // 2])
                self.wfile.flush()
                if kind == "stall":
                    time.sleep(30)
            elif kind == "html":
                body = b"<!DOCTYPE html><html><head><title>Sign in</title></head><body>login</body></html>"
                self._head(200, len(body), "text/html; charset=utf-8")
                self.wfile.write(body)
            else:
                self._head(404, 0)
        except (BrokenPipeError, ConnectionResetError):
            pass


def main():
    global ROOT
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    ROOT = sys.argv[1]
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print("PORT %d" % server.server_address[1], flush=True)
    sys.stdin.read()  # until the test closes our stdin (or dies)
    return 0


if __name__ == "__main__":
    sys.exit(main())
