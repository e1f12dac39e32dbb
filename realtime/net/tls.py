"""TLS contexts for the HTTPS listener, and the self-signed certificate
generated into the state dir when none is configured."""

from __future__ import annotations

import datetime
import ipaddress
import logging
import os
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from realtime.config.settings import Settings

log = logging.getLogger("realtime.tls")

GENERATED_NAME = "selfsigned.pem"


def create_ssl_context(cert: Path, key: Path) -> ssl.SSLContext:
    """A server context with modern defaults; cert and key may be one file.

    Raises ssl.SSLError / OSError when the files are unreadable or do not
    match; the caller reports them with the file name.
    """
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_alpn_protocols(["http/1.1"])
    ctx.options |= ssl.OP_NO_COMPRESSION
    ctx.load_cert_chain(str(cert), str(key))
    return ctx


def build_tls_context(settings: Settings) -> ssl.SSLContext | None:
    """The HTTPS listener's context as ``settings`` say (None without an
    HTTPS listener): the configured certificate, else the generated one.

    Blocking (reads or generates the certificate): call from a worker
    thread, at start and on every reload.
    """
    server = settings.server
    if server.https is None:
        return None
    if server.tls_cert is not None:
        return create_ssl_context(server.tls_cert, server.tls_key or server.tls_cert)
    pem = ensure_self_signed(server.state_dir)
    return create_ssl_context(pem, pem)


def generate_self_signed(hostnames: tuple[str, ...] = ("localhost", "127.0.0.1", "::1"),
                         days: int = 365) -> bytes:
    """A PEM holding a P-256 key and a self-signed certificate for ``hostnames``."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostnames[0])])
    sans: list[x509.GeneralName] = []
    for host in hostnames:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            sans.append(x509.DNSName(host))
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM) + key_pem


def fingerprint(pem_path: Path) -> str:
    cert = x509.load_pem_x509_certificate(pem_path.read_bytes())
    digest = cert.fingerprint(hashes.SHA256())
    return ":".join(f"{b:02X}" for b in digest)


def ensure_self_signed(state_dir: Path) -> Path:
    """Return the generated cert+key PEM in ``state_dir``, creating it once.

    Blocking (file I/O, key generation): call from a worker thread.
    """
    path = state_dir / GENERATED_NAME
    if not path.exists():
        state_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(generate_self_signed())
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        log.info("generated a self-signed certificate %s (sha256 %s)", path, fingerprint(path))
    return path

