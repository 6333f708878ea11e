"""RFC 3161 timestamps of a key's commitment (hf_ingrain.hub.timestamps), against a local TSA made with `openssl`
(tests/local_tsa.py): no network."""

import datetime
import hashlib
import subprocess

import pytest

from hf_ingrain.cli import main
from hf_ingrain.hub.timestamps import (
    commitment_digest,
    read_timestamp,
    request_timestamp,
    verify_timestamp,
)

COMMITMENT = "0123456789abcdef" * 4


def test_a_token_states_its_time_and_tsa_and_verifies_against_the_trusted_ca_only(local_tsa, untrusted_tsa, tmp_path):
    before = datetime.datetime.now(datetime.timezone.utc)
    token = local_tsa.stamp(COMMITMENT)
    info = verify_timestamp(token, COMMITMENT, local_tsa.ca_file)
    assert "CN=Test TSA" in info.tsa and info.hash_algorithm == "sha256"
    assert before - datetime.timedelta(seconds=2) <= info.time <= datetime.datetime.now(datetime.timezone.utc)
    assert info.digest == commitment_digest(COMMITMENT) == hashlib.sha256(COMMITMENT.encode()).hexdigest()
    assert info.to_block() == {"file": "commitment.tsr", "tsa": info.tsa,
                               "time": info.time.isoformat(timespec="milliseconds")}
    # what a third party runs, with OpenSSL alone (the module's docstring)
    (tmp_path / "commitment.txt").write_text(COMMITMENT)
    (tmp_path / "commitment.tsr").write_bytes(token)
    third_party = ["openssl", "ts", "-verify", "-data", "commitment.txt", "-in", "commitment.tsr", "-CAfile",
                   local_tsa.ca_file]
    checked = subprocess.run(third_party, cwd=tmp_path, capture_output=True, text=True, check=False)
    assert checked.returncode == 0 and "Verification: OK" in checked.stdout

    with pytest.raises(ValueError, match="covers another commitment"):
        verify_timestamp(token, "f" * 64, local_tsa.ca_file)
    rogue = untrusted_tsa.stamp(COMMITMENT)
    assert read_timestamp(rogue).digest == info.digest  # a well-formed token of the same commitment...
    with pytest.raises(ValueError, match="does not verify against the CA .*unable to get local issuer certificate"):
        verify_timestamp(rogue, COMMITMENT, local_tsa.ca_file)  # ...from an authority nobody chose to trust
    with pytest.raises(ValueError, match="Not an RFC 3161 timestamp response"):
        read_timestamp(b"not a token")
    with pytest.raises(ValueError, match="No CA certificate"):
        verify_timestamp(token, COMMITMENT, str(tmp_path / "missing.pem"))


def test_a_token_is_requested_over_http_and_only_the_commitments_hash_is_sent(local_tsa):
    with local_tsa.serve() as url:
        token = request_timestamp(COMMITMENT, url)
    assert verify_timestamp(token, COMMITMENT, local_tsa.ca_file).digest == commitment_digest(COMMITMENT)
    [(content_type, body)] = local_tsa.requests
    assert content_type == "application/timestamp-query"
    assert bytes.fromhex(commitment_digest(COMMITMENT)) in body and COMMITMENT.encode() not in body
    with pytest.raises(ValueError, match="must be http"):
        request_timestamp(COMMITMENT, "file:///etc/passwd")


def test_a_missing_openssl_is_an_error_that_names_the_fix(monkeypatch):
    monkeypatch.setenv("HF_INGRAIN_OPENSSL", "no-such-openssl")
    with pytest.raises(RuntimeError, match="install OpenSSL.*HF_INGRAIN_OPENSSL"):
        read_timestamp(b"anything")


def test_the_timestamp_command_writes_a_verified_token_and_keeps_an_earlier_one(local_tsa, small_key, tmp_path, capsys):
    key_dir = tmp_path / "key"
    small_key.save(str(key_dir))
    output = tmp_path / "commitment.tsr"
    with local_tsa.serve() as url:
        args = ["timestamp", "--key", str(key_dir), "--tsa", url, "--output", str(output)]
        assert main(args + ["--ca", local_tsa.ca_file]) == 0
        out = capsys.readouterr().out
        assert small_key.commitment() in out and "verified against" in out and "--timestamp" in out
        first = output.read_bytes()
        assert verify_timestamp(first, small_key.commitment(), local_tsa.ca_file)
        assert main(args) == 2  # an existing token is never replaced: its earlier time is the one that counts
        assert "already exists" in capsys.readouterr().err and output.read_bytes() == first
    assert main(["timestamp", "--key", str(key_dir), "--tsa", "http://127.0.0.1:9/tsr", "--output",
                 str(tmp_path / "x.tsr")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("hf-ingrain: error: Could not obtain a timestamp") and len(err.strip().splitlines()) == 1


def test_a_tokens_declared_accuracy_counts_against_its_precedence(local_tsa):
    from hf_ingrain.hub.provenance import ClaimCheck

    info = read_timestamp(local_tsa.stamp(COMMITMENT))
    assert info.accuracy == datetime.timedelta(milliseconds=1) and info.latest == info.time + info.accuracy
    stamp = {"verified": True, "time": info.time.isoformat(), "latest": (info.time + datetime.timedelta(seconds=1))
             .isoformat()}  # a TSA that answers to within a second
    check = ClaimCheck("owner/model", "0" * 40, timestamp=stamp)
    check.suspect_created_at = (info.time + datetime.timedelta(milliseconds=500)).isoformat()
    assert not check.precedence  # within the token's accuracy: not strictly before
    check.suspect_created_at = (info.time + datetime.timedelta(seconds=2)).isoformat()
    assert check.precedence
    check.timestamp = {**stamp, "verified": False}
    assert not check.precedence  # a token nobody verified establishes nothing
