"""A test OTLP/HTTP logs receiver: decodes each POST /v1/logs body with the official
OpenTelemetry protobuf definitions (opentelemetry-proto) and appends one JSON line per log
record to the output file (resource attributes, record attributes, body, times, event name).
Anything that does not decode answers 400 and is written as an `error` line.
Usage: receiver.py PORT OUTPUT"""
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from google.protobuf.json_format import MessageToDict
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest, ExportLogsServiceResponse)

PORT, OUT = int(sys.argv[1]), sys.argv[2]


def value(v):
    kind = v.WhichOneof("value")
    return getattr(v, kind) if kind else None


def attrs(kvs):
    return {kv.key: value(kv.value) for kv in kvs}


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        req = ExportLogsServiceRequest()
        lines = []
        try:
            if self.path != "/v1/logs":
                raise ValueError(f"path {self.path}")
            if self.headers.get("Content-Type") != "application/x-protobuf":
                raise ValueError(f"content type {self.headers.get('Content-Type')}")
            req.ParseFromString(body)
            for rl in req.resource_logs:
                res = attrs(rl.resource.attributes)
                for sl in rl.scope_logs:
                    for r in sl.log_records:
                        lines.append({"resource": res, "scope": sl.scope.name,
                                      "attributes": attrs(r.attributes), "body": value(r.body),
                                      "time_unix_nano": r.time_unix_nano,
                                      "observed_time_unix_nano": r.observed_time_unix_nano,
                                      "severity": r.severity_number,
                                      "event_name": r.event_name,
                                      "raw": MessageToDict(r)})
            code, answer = 200, ExportLogsServiceResponse().SerializeToString()
        except Exception as e:  # noqa: BLE001 - any failure is the test's finding
            lines = [{"error": repr(e)}]
            code, answer = 400, b""
        with open(OUT, "a") as f:
            for line in lines:
                f.write(json.dumps(line) + "\n")
        self.send_response(code)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
