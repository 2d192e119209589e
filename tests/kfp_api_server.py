"""A loopback stand-in for the Kubeflow Pipelines v2beta1 REST API: enough of it (healthz, experiments, runs,
pipeline upload) for the real ``kfp.Client`` to submit a run, recording every request it receives."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse


@dataclass
class Request:
    method: str
    path: str
    query: dict
    headers: dict  # names lower-cased (HTTP header names are case-insensitive)
    body: bytes

    def json(self):
        return json.loads(self.body) if self.body else None


@dataclass
class KFPServer:
    requests: list[Request] = field(default_factory=list)
    experiments: dict[str, dict] = field(default_factory=dict)

    def start(self) -> KFPServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _record(self) -> Request:
                url = urlparse(self.path)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                req = Request(self.command, url.path, parse_qs(url.query), {k.lower(): v for k, v in self.headers.items()},
                              body)
                server.requests.append(req)
                return req

            def _send(self, status: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):  # noqa: N802 (http.server's names)
                req = self._record()
                if req.path == "/apis/v2beta1/healthz":
                    return self._send(200, {"multi_user": True})
                if req.path == "/apis/v2beta1/experiments":
                    wanted = json.dumps(req.query.get("filter", [""])[0])
                    found = [e for e in server.experiments.values() if e["display_name"] in wanted]
                    return self._send(200, {"experiments": found, "total_size": len(found)})
                self._send(404, {"error": f"no route {req.path}"})

            def do_POST(self):  # noqa: N802
                req = self._record()
                if req.path == "/apis/v2beta1/experiments":
                    exp = req.json() | {"experiment_id": f"exp-{len(server.experiments) + 1}"}
                    server.experiments[exp["experiment_id"]] = exp
                    return self._send(200, exp)
                if req.path == "/apis/v2beta1/runs":
                    run = req.json()
                    return self._send(200, {"run_id": "run-1", "display_name": run.get("display_name"),
                                            "experiment_id": run.get("experiment_id"), "state": "PENDING"})
                if req.path == "/apis/v2beta1/pipelines/upload":
                    return self._send(200, {"pipeline_id": "pipe-1", "display_name": "lema"})
                self._send(404, {"error": f"no route {req.path}"})

            def log_message(self, *args):
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
