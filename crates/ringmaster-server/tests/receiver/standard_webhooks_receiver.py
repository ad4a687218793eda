"""A host app's webhook receiver for the tests: verifies every delivery with the
`standardwebhooks` library and appends one JSON line per request to a log file.

Usage: standard_webhooks_receiver.py PORT SECRET LOG_FILE
"""

import http.server
import json
import sys

from standardwebhooks.webhooks import Webhook

port, secret, log_path = int(sys.argv[1]), sys.argv[2], sys.argv[3]
webhook = Webhook(secret)


class Receiver(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        headers = {name.lower(): value for name, value in self.headers.items()}
        try:
            payload = webhook.verify(body, headers)
            line = {"id": headers["webhook-id"], "type": payload["type"], "data": payload["data"]}
            status = 204
        except Exception as error:  # every failure is reported to the test, not swallowed
            line = {"invalid": f"{type(error).__name__}: {error}"}
            status = 400
        with open(log_path, "a", encoding="utf-8") as log:
            log.write(json.dumps(line) + "\n")
        self.send_response(status)
        self.end_headers()

    def log_message(self, *args):
        pass


http.server.HTTPServer(("127.0.0.1", port), Receiver).serve_forever()
