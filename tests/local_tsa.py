"""A local RFC 3161 time-stamping authority for tests, made with the `openssl` command line (no network).

`LocalTSA(folder, name)` makes a CA, a TSA certificate signed by it (extendedKeyUsage critical timeStamping) and an
openssl config with a `[tsa]` section; `stamp(data)` answers a request (`openssl ts -reply`) the way a TSA would, and
`serve()` puts it behind an HTTP endpoint on 127.0.0.1 (POST application/timestamp-query).
"""

from __future__ import annotations

import contextlib
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

TSA_EXTENSIONS = """[tsa_ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = critical,timeStamping
"""

TSA_CONFIG = """[ tsa ]
default_tsa = tsa_config

[ tsa_config ]
dir = {dir}
serial = $dir/serial
crypto_device = builtin
signer_cert = $dir/tsa.pem
certs = $dir/tsa.pem
signer_key = $dir/tsa.key
signer_digest = sha256
default_policy = 1.2.3.4.1
other_policies = 1.2.3.4.5
digests = sha256, sha384, sha512
accuracy = millisecs:1
clock_precision_digits = 3
ordering = yes
tsa_name = yes
ess_cert_id_chain = no
ess_cert_id_alg = sha256
"""


def _run(*args: str, cwd: Path) -> None:
    process = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, check=False)
    if process.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed: {process.stderr}")


class LocalTSA:
    """A CA and a TSA it certifies, in `folder`; `ca_file` is what a verifier trusts."""

    def __init__(self, folder: Path, name: str = "Test TSA"):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.name = name
        ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
        _run("req", "-x509", "-new", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "3650",
             "-subj", f"/CN={name} Root CA", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=self.folder)
        _run("req", "-new", *ec, "-keyout", "tsa.key", "-out", "tsa.csr", "-subj", f"/O=hf_ingrain tests/CN={name}",
             cwd=self.folder)
        (self.folder / "ext.cnf").write_text(TSA_EXTENSIONS)
        _run("x509", "-req", "-in", "tsa.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out",
             "tsa.pem", "-days", "3650", "-extfile", "ext.cnf", "-extensions", "tsa_ext", cwd=self.folder)
        (self.folder / "serial").write_text("01\n")
        (self.folder / "tsa.cnf").write_text(TSA_CONFIG.format(dir=self.folder))
        self.ca_file = str(self.folder / "ca.pem")
        self._lock = threading.Lock()

    def reply(self, request: bytes) -> bytes:
        """The TSA's answer to a DER request (`openssl ts -reply -queryfile`), stamped now."""
        with self._lock:  # one serial file
            (self.folder / "request.tsq").write_bytes(request)
            _run("ts", "-reply", "-config", "tsa.cnf", "-queryfile", "request.tsq", "-out", "response.tsr",
                 cwd=self.folder)
            return (self.folder / "response.tsr").read_bytes()

    def stamp(self, commitment: str) -> bytes:
        """A token over a commitment, as `hf-ingrain timestamp` would obtain it from this TSA."""
        from hf_ingrain.hub.timestamps import timestamp_request

        return self.reply(timestamp_request(commitment))

    @contextlib.contextmanager
    def serve(self):
        """This TSA at `http://127.0.0.1:<port>/tsr` (yields the URL); `requests` records each body received."""
        tsa = self
        self.requests = []

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format, *args):  # noqa: A002 - quiet
                pass

            def do_POST(self):  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                tsa.requests.append((self.headers.get("Content-Type"), body))
                if self.headers.get("Content-Type") != "application/timestamp-query":
                    self.send_response(415)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                answer = tsa.reply(body)
                self.send_response(200)
                self.send_header("Content-Type", "application/timestamp-reply")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}/tsr"
        finally:
            server.shutdown()
            server.server_close()
            thread.join(timeout=10)
