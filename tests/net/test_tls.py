"""The throwaway certificate of ``--tls-self-signed`` and the server context of
``--tls-cert``/``--tls-key`` (simulator.net.tls), checked with real TLS handshakes
between two OpenSSL endpoints in memory (``ssl.MemoryBIO``): no socket, no clock.

How it was checked that these tests can fail: leaving the ``IPAddress`` entries out of
the certificate's SAN made ``test_throwaway_certificate_verifies_for_every_local_name``
fail for ``127.0.0.1`` (``IP address mismatch``); dropping the critical flag of the
authority's basic constraints made it fail under ``VERIFY_X509_STRICT``.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import shutil
import ssl
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from simulator.errors import UsageError
from simulator.net.tls import (
    CLOCK_SKEW,
    LOCAL_NAMES,
    SELF_SIGNED_VALIDITY,
    SelfSigned,
    make_self_signed,
    server_context,
)

DATA = Path(__file__).resolve().parents[1] / "data"
#: A handshake takes two round trips; more rounds than this means it is stuck.
MAX_ROUNDS = 10


def handshake(server: ssl.SSLContext, client: ssl.SSLContext, hostname: str) -> bytes:
    """Run a TLS handshake between ``server`` and ``client`` (which asks for
    ``hostname``) in memory; the certificate the client got (DER). Raises what the
    client raises (``ssl.SSLCertVerificationError`` when it does not trust it)."""
    to_server, to_client = ssl.MemoryBIO(), ssl.MemoryBIO()
    from_client, from_server = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls_client = client.wrap_bio(to_client, from_client, server_hostname=hostname)
    tls_server = server.wrap_bio(to_server, from_server, server_side=True)
    done = {"client": False, "server": False}
    for _ in range(MAX_ROUNDS):
        for name, end, outgoing, peer in (
            ("client", tls_client, from_client, to_server),
            ("server", tls_server, from_server, to_client),
        ):
            if not done[name]:
                try:
                    end.do_handshake()
                    done[name] = True
                except ssl.SSLWantReadError:
                    pass
            peer.write(outgoing.read())
        if all(done.values()):
            der = tls_client.getpeercert(binary_form=True)
            assert der is not None
            return der
    raise AssertionError(f"no handshake after {MAX_ROUNDS} rounds")


def trusting(ca_file: Path, *, strict: bool = True) -> ssl.SSLContext:
    """A client context trusting only ``ca_file``; ``strict`` adds the X.509 checks
    that Python 3.13 turns on by default."""
    context = ssl.create_default_context(cafile=ca_file)
    if strict:
        context.verify_flags |= ssl.VERIFY_X509_STRICT
    return context


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> SelfSigned:
    return make_self_signed(tmp_path_factory.mktemp("tls"))


@pytest.mark.parametrize("name", LOCAL_NAMES)
def test_throwaway_certificate_verifies_for_every_local_name(made: SelfSigned, name: str) -> None:
    server = server_context(made.cert_file, made.key_file)
    der = handshake(server, trusting(made.ca_file), name)
    leaf = x509.load_der_x509_certificate(der)
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(v) for v in sans.get_values_for_type(x509.DNSName)] == ["localhost"]
    assert [str(v) for v in sans.get_values_for_type(x509.IPAddress)] == ["127.0.0.1", "::1"]


def test_throwaway_certificate_is_refused_for_another_host(made: SelfSigned) -> None:
    server = server_context(made.cert_file, made.key_file)
    with pytest.raises(ssl.SSLCertVerificationError, match="mismatch"):
        handshake(server, trusting(made.ca_file), "example.com")


def test_a_client_trusting_only_the_system_cas_refuses_it(made: SelfSigned) -> None:
    server = server_context(made.cert_file, made.key_file)
    with pytest.raises(ssl.SSLCertVerificationError, match="self-signed certificate in"):
        handshake(server, ssl.create_default_context(), "localhost")


def test_each_throwaway_certificate_has_an_authority_of_its_own(
    made: SelfSigned, tmp_path: Path
) -> None:
    """Trusting one run's certificate does not trust the next run's."""
    other = make_self_signed(tmp_path)
    server = server_context(other.cert_file, other.key_file)
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(server, trusting(made.ca_file), "localhost")


def test_only_the_leaf_key_is_written_and_only_its_owner_may_read_it(made: SelfSigned) -> None:
    folder = made.ca_file.parent
    assert sorted(p.name for p in folder.iterdir()) == ["ca.pem", "cert.pem", "key.pem"]
    assert b"PRIVATE KEY" not in made.ca_file.read_bytes() + made.cert_file.read_bytes()
    assert made.key_file.stat().st_mode & 0o777 == 0o600
    key = serialization.load_pem_private_key(made.key_file.read_bytes(), password=None)
    leaf, ca = x509.load_pem_x509_certificates(made.cert_file.read_bytes())
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    assert key.public_key().public_bytes(der, spki) == leaf.public_key().public_bytes(der, spki)
    assert key.public_key().public_bytes(der, spki) != ca.public_key().public_bytes(der, spki)
    assert ca.public_bytes(serialization.Encoding.PEM) == made.ca_file.read_bytes()


def test_validity_starts_a_little_before_now_and_lasts_the_stated_time(tmp_path: Path) -> None:
    now = datetime.datetime(2026, 3, 1, 12, 0, tzinfo=datetime.UTC)
    made = make_self_signed(tmp_path, now=now)
    leaf = x509.load_pem_x509_certificates(made.cert_file.read_bytes())[0]
    assert leaf.not_valid_before_utc == now - CLOCK_SKEW
    assert leaf.not_valid_after_utc == now + SELF_SIGNED_VALIDITY == made.not_after


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_spki_hash_is_what_the_openssl_recipe_for_chromium_gives(made: SelfSigned) -> None:
    """docs/tls.md's recipe, run as written, gives the hash that was printed."""
    pipeline = (
        f"openssl x509 -in {made.cert_file} -pubkey -noout"
        " | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64"
    )
    got = subprocess.run(pipeline, shell=True, capture_output=True, text=True, timeout=30)
    assert got.stdout.strip() == made.spki_sha256
    # And it is the hash of the public key the server presents.
    der = handshake(
        server_context(made.cert_file, made.key_file), trusting(made.ca_file), "localhost"
    )
    spki = (
        x509.load_der_x509_certificate(der)
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    assert base64.b64encode(hashlib.sha256(spki).digest()).decode() == made.spki_sha256


def test_a_given_certificate_and_key_serve_what_a_client_trusting_it_verifies() -> None:
    server = server_context(DATA / "localhost-cert.pem", DATA / "localhost-key.pem")
    der = handshake(server, trusting(DATA / "localhost-cert.pem", strict=False), "127.0.0.1")
    assert x509.load_der_x509_certificate(der) == x509.load_pem_x509_certificate(
        (DATA / "localhost-cert.pem").read_bytes()
    )


def _files(tmp_path: Path) -> dict[str, Path]:
    other = make_self_signed(tmp_path / "other")
    (tmp_path / "junk.pem").write_text("not a certificate\n")
    (tmp_path / "broken.pem").write_text(
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
    )
    encrypted = serialization.load_pem_private_key(
        (DATA / "localhost-key.pem").read_bytes(), password=None
    ).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )
    (tmp_path / "encrypted.pem").write_bytes(encrypted)
    (tmp_path / "folder").mkdir()
    return {
        "cert": DATA / "localhost-cert.pem",
        "key": DATA / "localhost-key.pem",
        "other_key": other.key_file,
        "missing": tmp_path / "missing.pem",
        "junk": tmp_path / "junk.pem",
        "broken": tmp_path / "broken.pem",
        "encrypted": tmp_path / "encrypted.pem",
        "folder": tmp_path / "folder",
    }


@pytest.mark.parametrize(
    ("cert", "key", "message"),
    [
        ("missing", "key", "--tls-cert {missing}: no such file"),
        ("cert", "missing", "--tls-key {missing}: no such file"),
        ("folder", "key", "--tls-cert {folder}: is a directory"),
        ("junk", "key", "--tls-cert {junk}: no PEM certificate"),
        ("broken", "key", "--tls-cert {broken}: the PEM certificate does not parse"),
        ("key", "key", "--tls-cert {key}: no PEM certificate"),
        ("cert", "cert", "--tls-key {cert}: no PEM private key"),
        ("cert", "junk", "--tls-key {junk}: no PEM private key"),
        ("cert", "encrypted", "--tls-key {encrypted}: the key is encrypted"),
        ("cert", "other_key", "--tls-key {other_key}: is not the private key of the cert"),
    ],
)
def test_bad_certificate_files_are_named_with_what_is_wrong(
    tmp_path: Path, cert: str, key: str, message: str
) -> None:
    files = _files(tmp_path)
    with pytest.raises(UsageError) as caught:
        server_context(files[cert], files[key])
    assert str(caught.value).startswith(message.format(**files))
    assert "\n" not in str(caught.value)
