"""TLS for the servers of `sim`: the server context of a certificate and key, and a
throwaway certificate for localhost (``--tls-self-signed``).

The throwaway certificate is made the way ``trustme`` and ``mkcert`` make theirs: a
one-off certificate authority signs a leaf certificate for ``localhost``,
``127.0.0.1`` and ``::1``, and the authority's private key is never written anywhere.
A person who imports the authority into a browser to trust the simulator therefore
trusts nothing else: nobody can sign another certificate with it.

Every problem with the files becomes one :class:`~simulator.errors.UsageError`
naming the file: a path a user typed never ends in a traceback.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress
import os
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificatePublicKeyTypes,
    PrivateKeyTypes,
    PublicKeyTypes,
)
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from simulator.errors import UsageError

#: Names the throwaway certificate is valid for: what a local client types.
LOCAL_NAMES = ("localhost", "127.0.0.1", "::1")
#: How long the throwaway certificate is valid: a working day's runs and then some.
SELF_SIGNED_VALIDITY = datetime.timedelta(days=30)
#: Backdated by this much, so a client whose clock is a little behind accepts it.
CLOCK_SKEW = datetime.timedelta(minutes=5)


def server_context(
    cert_file: str | os.PathLike[str], key_file: str | os.PathLike[str]
) -> ssl.SSLContext:
    """A server-side TLS context serving ``cert_file`` (PEM: the certificate, then any
    intermediates) with ``key_file`` (PEM private key, unencrypted).

    Raises :class:`UsageError` naming the file when one is missing or unreadable, is
    not PEM of the right kind, or the key does not belong to the certificate. The
    files are parsed here first because OpenSSL's own errors ("PEM lib") do not say
    which file is wrong. A certificate out of its validity is served as it is: a test
    of how a client takes an expired certificate needs one.
    """
    cert_path, key_path = os.fspath(cert_file), os.fspath(key_file)
    leaf = _first_certificate(cert_path, _read("--tls-cert", cert_path))
    key = _private_key(key_path, _read("--tls-key", key_path))
    if _spki(leaf.public_key()) != _spki(key.public_key()):
        raise UsageError(
            f"--tls-key {key_path}: is not the private key of the certificate in "
            f"--tls-cert {cert_path}"
        )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cert_path, key_path)
    except ssl.SSLError as e:
        raise UsageError(
            f"--tls-cert {cert_path} / --tls-key {key_path}: refused by OpenSSL ({e.reason or e})"
        ) from None
    return context


def _read(flag: str, path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise UsageError(f"{flag} {path}: no such file") from None
    except IsADirectoryError:
        raise UsageError(f"{flag} {path}: is a directory, not a PEM file") from None
    except OSError as e:
        raise UsageError(f"{flag} {path}: cannot read it ({e.strerror or e})") from None


def _first_certificate(path: str, pem: bytes) -> x509.Certificate:
    if b"-----BEGIN CERTIFICATE-----" not in pem:
        raise UsageError(f"--tls-cert {path}: no PEM certificate (-----BEGIN CERTIFICATE-----)")
    try:
        return x509.load_pem_x509_certificates(pem)[0]
    except ValueError as e:
        raise UsageError(f"--tls-cert {path}: the PEM certificate does not parse ({e})") from None


def _private_key(path: str, pem: bytes) -> PrivateKeyTypes:
    if b"PRIVATE KEY-----" not in pem:
        raise UsageError(f"--tls-key {path}: no PEM private key (-----BEGIN ... PRIVATE KEY-----)")
    try:
        return serialization.load_pem_private_key(pem, password=None)
    except TypeError:  # cryptography's word for "encrypted, and no password given"
        raise UsageError(
            f"--tls-key {path}: the key is encrypted; give an unencrypted one"
        ) from None
    except (ValueError, UnsupportedAlgorithm) as e:
        raise UsageError(f"--tls-key {path}: the PEM private key does not parse ({e})") from None


def _spki(public_key: PublicKeyTypes | CertificatePublicKeyTypes) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@dataclass(frozen=True, slots=True)
class SelfSigned:
    """Where a throwaway certificate was written, and how to recognise it."""

    #: The certificate authority to trust (PEM): give it to clients.
    ca_file: Path
    #: What the server presents (PEM: the leaf certificate, then the authority).
    cert_file: Path
    #: The leaf's private key (PEM, readable by the owner only).
    key_file: Path
    #: base64 of the SHA-256 of the leaf's public key (SubjectPublicKeyInfo): what
    #: Chromium's ``--ignore-certificate-errors-spki-list`` takes.
    spki_sha256: str
    names: tuple[str, ...]
    not_after: datetime.datetime


def make_self_signed(
    directory: str | os.PathLike[str],
    *,
    names: tuple[str, ...] = LOCAL_NAMES,
    now: datetime.datetime | None = None,
) -> SelfSigned:
    """Make a throwaway certificate for ``names`` (host names and IP addresses) and
    write ``ca.pem``, ``cert.pem`` and ``key.pem`` into ``directory`` (created if
    needed; files of those names are replaced). Serve it with
    ``server_context(result.cert_file, result.key_file)``; clients trust
    ``result.ca_file``. ``now`` is the start of its validity (default: the clock).

    Raises :class:`UsageError` when ``directory`` cannot be written.
    """
    start = (now or datetime.datetime.now(datetime.UTC)) - CLOCK_SKEW
    end = start + CLOCK_SKEW + SELF_SIGNED_VALIDITY
    # P-256: made in a millisecond, and every browser, Node and OpenSSL take it.
    ca_key = ec.generate_private_key(ec.SECP256R1())
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, "sim throwaway CA (key discarded)")]
    )
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    # The extensions that Python 3.13's default VERIFY_X509_STRICT insists on (critical
    # basic constraints and key usage, key identifiers) are all here.
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca_name)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(_alt_names(names)), critical=False)
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(leaf_key.public_key()), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    spki = _spki(leaf_key.public_key())
    key_pem = leaf_key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    folder = Path(directory)
    made = SelfSigned(
        ca_file=folder / "ca.pem",
        cert_file=folder / "cert.pem",
        key_file=folder / "key.pem",
        spki_sha256=base64.b64encode(hashlib.sha256(spki).digest()).decode(),
        names=names,
        not_after=end,
    )
    try:
        folder.mkdir(parents=True, exist_ok=True)
        made.ca_file.write_bytes(ca.public_bytes(pem))
        made.cert_file.write_bytes(leaf.public_bytes(pem) + ca.public_bytes(pem))
        _write_private(made.key_file, key_pem)
    except OSError as e:
        raise UsageError(
            f"--tls-dir {folder}: cannot write the certificate ({e.strerror or e})"
        ) from None
    return made


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not cert_sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _alt_names(names: tuple[str, ...]) -> list[x509.GeneralName]:
    entries: list[x509.GeneralName] = []
    for name in names:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            entries.append(x509.DNSName(name))
    return entries


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path``, readable and writable by the owner only (from the
    first byte: the file is created with that mode, not changed after)."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
