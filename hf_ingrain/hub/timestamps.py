r"""
RFC 3161 timestamps of a key's commitment: a date that neither the owner nor a claimant can write.

A commit date on the Hub is the Hub's only for commits made through its API; a `git push` carries the dates its author
wrote, and a self-hosted endpoint can record any date. A time-stamping authority (TSA, [RFC 3161](https://www.rfc-editor.org/rfc/rfc3161))
signs a hash and the time it saw it; anyone holding the TSA's CA certificate can check the signature. The owner asks a
TSA to stamp their key's commitment when publishing, keeps the token and publishes it next to the card
(`commitment.tsr`): it reveals nothing, since it signs a hash of the commitment, which is itself public.

What is stamped is the SHA-256 of the commitment string's ASCII bytes ([`commitment_digest`]), so a third party can
check a token with OpenSSL alone:

```bash
printf %s "$COMMITMENT" > commitment.txt
openssl ts -verify -data commitment.txt -in commitment.tsr -CAfile tsa-ca.pem
openssl ts -reply -in commitment.tsr -text          # the time ("Time stamp") and the TSA
```

Everything goes through the `openssl` command line (OpenSSL 1.1 or later; `HF_INGRAIN_OPENSSL` names another binary):
no Python dependency is added for it.
"""

import hashlib
import logging
import os
import re
import shutil
import subprocess
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

logger = logging.getLogger(__name__)

TIMESTAMP_FILE = "commitment.tsr"
"""Where a repository publishes the RFC 3161 timestamp of its key's commitment (a DER `TimeStampResp`)."""
QUERY_CONTENT_TYPE = "application/timestamp-query"
REPLY_CONTENT_TYPE = "application/timestamp-reply"
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@dataclass
class TimestampInfo:
    r"""
    What an RFC 3161 token states (read with `openssl ts -reply -text`; not yet checked against any CA).

    Args:
        time (`datetime.datetime`): the token's genTime, in UTC.
        tsa (`str`): the TSA's name as the token gives it (else the subject of its first certificate).
        digest (`str`): the hex message imprint the TSA signed.
        hash_algorithm (`str`): the imprint's hash (`sha256`).
        serial (`str`): the token's serial number.
        nonce (`str`, *optional*): the request's nonce, echoed.
        accuracy (`datetime.timedelta`): how far the true time may lie from `time`, as the TSA declares it (zero when
            the token leaves it unspecified).
    """

    time: datetime
    tsa: str
    digest: str
    hash_algorithm: str
    serial: str
    nonce: str | None = None
    accuracy: timedelta = timedelta(0)

    @property
    def latest(self) -> datetime:
        """The latest time the token allows (`time + accuracy`): what a claim compares with the suspect's date."""
        return self.time + self.accuracy

    def to_block(self, file: str = TIMESTAMP_FILE) -> dict:
        """The `timestamp` entry of a card's watermark block: the file, the TSA and the time."""
        return {"file": file, "tsa": self.tsa, "time": self.time.isoformat(timespec="milliseconds")}


def commitment_digest(commitment: str) -> str:
    """The hex SHA-256 of the commitment string's ASCII bytes: the message imprint a TSA signs."""
    return hashlib.sha256(str(commitment).encode("ascii")).hexdigest()


def openssl_binary() -> str:
    """The `openssl` command line tool, or a clear error naming the fix."""
    name = os.environ.get("HF_INGRAIN_OPENSSL") or "openssl"
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(
            f"RFC 3161 timestamps need the `openssl` command line tool, and {name!r} was not found: install OpenSSL "
            "(e.g. `apt-get install openssl`, `brew install openssl`) or set HF_INGRAIN_OPENSSL to its path."
        )
    return path


def _openssl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([openssl_binary(), *args], capture_output=True, text=True, check=False)


def _reason(process: subprocess.CompletedProcess) -> str:
    """OpenSSL's own reason for a failure, in one line (its `error:...:reason:file:line:` lines, shortened)."""
    reasons = []
    for line in (process.stderr + process.stdout).splitlines():
        if ":error:" in line:
            parts = line.split(":")
            reason = parts[5] if len(parts) > 5 else line
            if "Verify error:" in line:
                reason += ": " + line.split("Verify error:", 1)[1].strip()
            reasons.append(reason)
    return "; ".join(reasons) or (process.stderr.strip().splitlines() or ["unknown error"])[-1]


def _token_bytes(token) -> bytes:
    if isinstance(token, (bytes, bytearray)):
        return bytes(token)
    with open(os.fspath(token), "rb") as f:
        return f.read()


class _Scratch:
    """A private temporary folder for openssl's input and output files."""

    def __enter__(self):
        self.folder = tempfile.mkdtemp(prefix="hf_ingrain_tsa_")
        return self

    def write(self, name: str, data: bytes) -> str:
        path = os.path.join(self.folder, name)
        with open(path, "wb") as f:
            f.write(data)
        return path

    def __exit__(self, *exc):
        shutil.rmtree(self.folder, ignore_errors=True)


def timestamp_request(commitment: str) -> bytes:
    """A DER RFC 3161 request over [`commitment_digest`] with a nonce, asking the TSA to include its certificate
    (`openssl ts -query -sha256 -digest ... -cert`)."""
    with _Scratch() as scratch:
        out = os.path.join(scratch.folder, "request.tsq")
        process = _openssl("ts", "-query", "-sha256", "-digest", commitment_digest(commitment), "-cert", "-out", out)
        if process.returncode != 0:
            raise RuntimeError(f"openssl could not build a timestamp request: {_reason(process)}")
        with open(out, "rb") as f:
            return f.read()


def _field(text: str, name: str) -> str | None:
    match = re.search(rf"^{re.escape(name)}: *(.*)$", text, flags=re.MULTILINE)
    return match.group(1).strip() if match else None


def _message_imprint(text: str) -> str:
    """The hex bytes under `Message data:` in openssl's text dump."""
    block = re.search(r"^Message data:\n((?:\s+[0-9a-f]{4} - .*\n?)+)", text, flags=re.MULTILINE)
    if not block:
        return ""
    digits = []
    for line in block.group(1).splitlines():
        hex_part = line.split(" - ", 1)[1][:48]  # 16 bytes, the 8th and 9th joined by '-'; the ASCII column after
        digits += re.findall(r"[0-9a-f]{2}", hex_part.replace("-", " "))
    return "".join(digits)


def _parse_time(text: str) -> datetime:
    """openssl's `Mar  5 10:20:30.123 2024 GMT` (fraction optional), as a UTC datetime."""
    match = re.fullmatch(r"(\w{3}) +(\d{1,2}) (\d\d):(\d\d):(\d\d)(\.\d+)? (\d{4}) GMT", text.strip())
    if not match or match.group(1) not in MONTHS:
        raise ValueError(f"Unreadable time {text!r} in the timestamp token.")
    month, day, hour, minute, second, fraction, year = match.groups()
    micro = round(float(fraction) * 1e6) if fraction else 0
    return datetime(int(year), MONTHS.index(month) + 1, int(day), int(hour), int(minute), int(second),
                    min(micro, 999999), tzinfo=timezone.utc)


def _parse_accuracy(text: str | None) -> timedelta:
    """openssl's `0x01 seconds, unspecified millis, 0x0A micros` (or `unspecified`) as a timedelta."""
    values = {}
    for value, unit in re.findall(r"(0x[0-9A-Fa-f]+|\d+|unspecified) (seconds|millis|micros)", text or ""):
        values[unit] = 0 if value == "unspecified" else int(value, 0)
    return timedelta(seconds=values.get("seconds", 0), milliseconds=values.get("millis", 0),
                     microseconds=values.get("micros", 0))


def _first_certificate_subject(scratch: _Scratch, response: str) -> str | None:
    token = os.path.join(scratch.folder, "token.der")
    if _openssl("ts", "-reply", "-in", response, "-token_out", "-out", token).returncode != 0:
        return None
    process = _openssl("pkcs7", "-inform", "DER", "-in", token, "-print_certs", "-noout")
    subjects = [line.split("=", 1)[1].strip() for line in process.stdout.splitlines() if line.startswith("subject")]
    return subjects[0] if subjects else None


def read_timestamp(token) -> TimestampInfo:
    r"""
    Reads what an RFC 3161 response states: its time, TSA and message imprint. Checks nothing cryptographic (see
    [`verify_timestamp`]).

    Args:
        token (`bytes` or path): a DER `TimeStampResp` (what a TSA answers, e.g. `commitment.tsr`).

    Returns:
        [`TimestampInfo`]

    Raises:
        `ValueError`: the bytes are not a granted timestamp response.
    """
    with _Scratch() as scratch:
        response = scratch.write("response.tsr", _token_bytes(token))
        process = _openssl("ts", "-reply", "-in", response, "-text")
        if process.returncode != 0:
            raise ValueError(f"Not an RFC 3161 timestamp response ({_reason(process)}).")
        text = process.stdout
        status = _field(text, "Status") or ""
        if not status.startswith("Granted"):
            detail = _field(text, "Status description") or "no description"
            raise ValueError(f"The TSA did not grant the timestamp (status {status or 'unknown'}: {detail}).")
        time_text = _field(text, "Time stamp")
        if not time_text:
            raise ValueError("The timestamp response holds no token (no time).")
        tsa = _field(text, "TSA")
        if tsa in (None, "unspecified"):
            tsa = _first_certificate_subject(scratch, response) or "an unnamed TSA"
        return TimestampInfo(
            time=_parse_time(time_text),
            tsa=tsa.removeprefix("DirName:"),
            digest=_message_imprint(text),
            hash_algorithm=_field(text, "Hash Algorithm") or "",
            serial=_field(text, "Serial number") or "",
            nonce=_field(text, "Nonce"),
            accuracy=_parse_accuracy(_field(text, "Accuracy")),
        )


def check_token_covers(info: TimestampInfo, commitment: str) -> None:
    """Refuses a token whose imprint is not [`commitment_digest`] of `commitment` (a stamp of something else)."""
    expected = commitment_digest(commitment)
    if info.hash_algorithm.lower() != "sha256" or info.digest != expected:
        raise ValueError(
            f"The timestamp token covers another commitment: it stamps {info.hash_algorithm} {info.digest or '?'}, "
            f"and this key's commitment {commitment} hashes to sha256 {expected}."
        )


def verify_timestamp(token, commitment: str, ca_file: str) -> TimestampInfo:
    r"""
    Verifies an RFC 3161 token of a commitment against a trusted CA certificate (`openssl ts -verify`): the TSA's
    signature, its certificate's chain to `ca_file` (with the timeStamping extended key usage), and the imprint.

    Args:
        token (`bytes` or path): the DER `TimeStampResp`.
        commitment (`str`): the key commitment the token must cover ([`WatermarkKey.commitment`]).
        ca_file (`str`): PEM certificate(s) of the TSA's CA: the trust you choose, not what the token says.

    Returns:
        [`TimestampInfo`]: the verified time and TSA.

    Raises:
        `ValueError`: with the reason (another commitment, an untrusted or invalid signature, not a token).
    """
    if not os.path.isfile(ca_file):
        raise ValueError(f"No CA certificate at {ca_file!r}: pass the PEM certificate of the TSA's CA.")
    data = _token_bytes(token)
    info = read_timestamp(data)
    check_token_covers(info, commitment)
    with _Scratch() as scratch:
        response = scratch.write("response.tsr", data)
        digest = commitment_digest(commitment)
        process = _openssl("ts", "-verify", "-digest", digest, "-in", response, "-CAfile", ca_file)
        if process.returncode != 0 or "Verification: OK" not in process.stdout:
            raise ValueError(
                f"The timestamp token by {info.tsa} does not verify against the CA {ca_file}: {_reason(process)}."
            )
    logger.info("Timestamp verified: %s at %s (CA %s)", info.tsa, info.time.isoformat(), ca_file)
    return info


def request_timestamp(commitment: str, tsa_url: str, timeout: float = 30.0) -> bytes:
    r"""
    Asks the TSA at `tsa_url` to stamp a commitment (an HTTP POST of [`timestamp_request`], `Content-Type:
    application/timestamp-query`) and checks that the answer is a granted token over that commitment, with the
    request's nonce. Only the commitment's hash leaves the machine.

    Args:
        commitment (`str`): the key commitment ([`WatermarkKey.commitment`]).
        tsa_url (`str`): the TSA's URL (e.g. `https://freetsa.org/tsr`).
        timeout (`float`, *optional*, defaults to 30): seconds to wait for the TSA.

    Returns:
        `bytes`: the DER `TimeStampResp`, to keep and publish (`push_to_hub(..., timestamp=...)`).
    """
    if not str(tsa_url).startswith(("http://", "https://")):
        raise ValueError(f"The TSA URL must be http:// or https://, got {tsa_url!r}.")
    request = timestamp_request(commitment)
    with _Scratch() as scratch:
        query = _openssl("ts", "-query", "-in", scratch.write("request.tsq", request), "-text")
    nonce = _field(query.stdout, "Nonce")
    http_request = urllib.request.Request(
        tsa_url, data=request, method="POST", headers={"Content-Type": QUERY_CONTENT_TYPE, "Accept": REPLY_CONTENT_TYPE}
    )
    try:
        with urllib.request.urlopen(http_request, timeout=timeout) as answer:  # http(s) only: checked above
            response = answer.read()
    except (urllib.error.URLError, OSError) as error:
        raise ValueError(f"Could not obtain a timestamp from {tsa_url}: {error}") from error
    info = read_timestamp(response)
    check_token_covers(info, commitment)
    if nonce and info.nonce != nonce:
        raise ValueError(f"The answer of {tsa_url} is not the answer to this request (nonce {info.nonce} != {nonce}).")
    logger.info("Timestamp obtained from %s: %s at %s", tsa_url, info.tsa, info.time.isoformat())
    return response
