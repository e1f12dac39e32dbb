"""``[server] tls_cert`` and ``tls_key``: loaded and matched at load time.

Apart from :mod:`realtime.config.load` because it is the one check that
reads PEM files and asks ``cryptography`` and ``ssl`` about them: a bad
pair is a config error with the file, line and key, not a failure at the
first TLS handshake.
"""

from __future__ import annotations

import ssl
from pathlib import Path

import attrs
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from realtime.config.fields import Source
from realtime.config.settings import ServerSettings

__all__ = ["check_tls"]


def check_tls(source: Source, server: ServerSettings) -> ServerSettings:
    """Cert and key must load and match now, not at the first TLS handshake.

    Either one alone means both live in that one file.
    """
    if server.tls_cert is None and server.tls_key is None:
        return server
    server = attrs.evolve(server, tls_cert=server.tls_cert or server.tls_key, tls_key=server.tls_key or server.tls_cert)
    cert_file, key_file = server.tls_cert, server.tls_key
    assert cert_file is not None and key_file is not None
    cert_key, key_key = ("server", "tls_cert"), ("server", "tls_key")
    cert_pem = _read_pem(source, cert_key, cert_file)
    key_pem = cert_pem if key_file == cert_file else _read_pem(source, key_key, key_file)
    cert = key = None
    if cert_pem is not None:
        try:
            cert = x509.load_pem_x509_certificates(cert_pem)[0]
        except ValueError:
            source.error(cert_key, f"{cert_file}: no PEM certificate found")
    if key_pem is not None:
        try:
            key = serialization.load_pem_private_key(key_pem, password=None)
        except TypeError:
            source.error(key_key, f"{key_file}: the private key is encrypted; an unencrypted key is needed")
        except (ValueError, UnsupportedAlgorithm):
            source.error(key_key, f"{key_file}: no usable PEM private key found")
    if cert is None or key is None:
        return server
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if cert.public_key().public_bytes(*spki) != key.public_key().public_bytes(*spki):
        source.error(key_key, f"{key_file}: the private key does not match the certificate in {cert_file}")
        return server
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert_file, key_file)
    except (ssl.SSLError, OSError) as exc:
        source.error(cert_key, f"{cert_file}: TLS cannot use this certificate: {exc}")
    return server


def _read_pem(source: Source, key: tuple[str, str], file: Path) -> bytes | None:
    try:
        return file.read_bytes()
    except FileNotFoundError:
        source.error(key, f"file not found: {file}")
    except OSError as exc:
        source.error(key, f"cannot read {file}: {exc.strerror or exc}")
    return None
