"""Signing keys: generation, public JWKs, ``kid`` thumbprints and key files.

The key ring in :mod:`realtime.tokens.keyring` holds values; this module makes
them and keeps them on disk.  Everything here is synchronous: the server
calls the file functions in a worker thread, never on the event loop.

On disk (DESIGN.md §6), ``state_dir/keys/`` (mode 0700) holds one pair of
files per key, both mode 0600::

    <kid>.pem    the private key, PKCS#8 PEM, unencrypted
    <kid>.json   {"kid", "alg", "created_at", "retire_at"}

The ``.json`` file is written *after* the ``.pem`` and deleted *before*
it, so it is the commit marker: a crash can leave a lone ``.pem`` (ignored
on load) but never metadata that points at a missing key.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import json
import logging
import math
import os
import re
from pathlib import Path
from typing import Any, Iterator

import attrs
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

log = logging.getLogger("realtime.keys")  # the logger name in log lines (SPEC §2 log_format) predates the move

#: The JWS algorithms we sign with.  RS256 is the default because RFC 9068
#: §2.1 says "JWT access tokens MUST be signed ... Authorization servers
#: and resource servers conforming to this specification MUST include RS256
#: among their supported signature algorithms."
ALGORITHMS: tuple[str, ...] = ("RS256", "ES256", "EdDSA")
RSA_BITS = 2048
KID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
LOCK_FILE = ".lock"

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


@attrs.frozen
class SigningKey:
    """One private signing key and its schedule.

    ``retire_at`` is None while the key is active (or simply not yet
    scheduled); after a rotation it is the moment the last token the key
    signed has expired, after which :meth:`KeyRing.prune` drops it.
    """

    kid: str
    alg: str  # "RS256" | "ES256" | "EdDSA"
    private_key: Any = attrs.field(repr=False)
    created_at: float
    retire_at: float | None = None

    def metadata(self) -> dict[str, Any]:
        """The ``<kid>.json`` document (no key material)."""
        return {"kid": self.kid, "alg": self.alg, "created_at": self.created_at, "retire_at": self.retire_at}


# -- generation, JWK, thumbprint ------------------------------------------------


def check_alg(alg: str) -> str:
    """Refuse anything but our three asymmetric algorithms (no HS*, no none)."""
    if alg not in ALGORITHMS:
        raise ValueError(f"unsupported signing_alg {alg!r}; use one of {', '.join(ALGORITHMS)}")
    return alg


def generate_private_key(alg: str) -> PrivateKey:
    """A fresh key of the type ``alg`` needs: RSA 2048, P-256 or Ed25519."""
    check_alg(alg)
    if alg == "RS256":
        return rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
    if alg == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    return ed25519.Ed25519PrivateKey.generate()


def new_signing_key(alg: str, now: float) -> SigningKey:
    """Generate a key and name it by its RFC 7638 thumbprint."""
    private_key = generate_private_key(alg)
    kid = jwk_thumbprint(public_jwk_members(private_key.public_key()))
    return SigningKey(kid=kid, alg=alg, private_key=private_key, created_at=now, retire_at=None)


def check_key_type(alg: str, private_key: Any) -> None:
    """A key file must hold the kind of key its metadata's ``alg`` signs with.

    Guards against a hand-edited ``.json`` turning an RSA key into an
    "ES256" one, which would publish a JWK that no verifier can use.
    """
    ok = (
        (alg == "RS256" and isinstance(private_key, rsa.RSAPrivateKey) and private_key.key_size >= RSA_BITS)
        or (
            alg == "ES256"
            and isinstance(private_key, ec.EllipticCurvePrivateKey)
            and isinstance(private_key.curve, ec.SECP256R1)
        )
        or (alg == "EdDSA" and isinstance(private_key, ed25519.Ed25519PrivateKey))
    )
    if not ok:
        raise ValueError(f"key is not a valid {alg} key")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _uint_b64(value: int, length: int | None = None) -> str:
    """RFC 7518 §6.3.1/§6.2.1: big-endian octets, minimal (RSA) or fixed (EC)."""
    size = length if length is not None else max(1, (value.bit_length() + 7) // 8)
    return b64url(value.to_bytes(size, "big"))


def public_jwk_members(public_key: Any) -> dict[str, str]:
    """The *required* public members of a key's JWK, nothing else.

    Built from the public key object only, so no private member (``d``,
    ``p``, ``q``, ``dp``, ``dq``, ``qi``) can ever appear in a JWKS.
    """
    if isinstance(public_key, rsa.RSAPublicKey):
        numbers = public_key.public_numbers()
        return {"kty": "RSA", "n": _uint_b64(numbers.n), "e": _uint_b64(numbers.e)}
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        numbers = public_key.public_numbers()
        return {"kty": "EC", "crv": "P-256", "x": _uint_b64(numbers.x, 32), "y": _uint_b64(numbers.y, 32)}
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return {"kty": "OKP", "crv": "Ed25519", "x": b64url(raw)}
    raise TypeError(f"unsupported public key type {type(public_key).__name__}")


def jwk_thumbprint(members: dict[str, str]) -> str:
    """RFC 7638 §3: SHA-256 over the required members, sorted, no whitespace.

    "The JSON object MUST contain no whitespace or line breaks before or
    after any syntactic elements" and "the members MUST be ... in
    lexicographic order".  ``members`` must already be only the required
    ones (:func:`public_jwk_members` guarantees that).
    """
    canonical = json.dumps(members, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return b64url(hashlib.sha256(canonical.encode("ascii")).digest())


def public_jwk(key: SigningKey) -> dict[str, str]:
    """The JWKS entry for a key: public members plus ``kid``, ``alg``, ``use``."""
    jwk = public_jwk_members(key.private_key.public_key())
    jwk.update(kid=key.kid, alg=key.alg, use="sig")
    return jwk


# -- files ----------------------------------------------------------------------


def ensure_dir(keys_dir: Path) -> None:
    """Create the key directory 0700 (and tighten an existing one)."""
    keys_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    if keys_dir.stat().st_mode & 0o077:
        os.chmod(keys_dir, 0o700)


@contextlib.contextmanager
def locked(keys_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on the key directory.

    The server (startup, pruning) and ``realtime key rotate`` may write
    the same directory; the lock keeps two of them from both creating a
    "first" key or deleting what the other just scheduled.
    """
    fd = os.open(keys_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the flock


def write_atomic(path: Path, data: bytes) -> None:
    """temp (0600 from birth) + fsync + rename + fsync(dir): all or nothing."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # O_CREAT's mode only applies to a new file
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_key(keys_dir: Path, key: SigningKey) -> None:
    """Write ``<kid>.pem`` then ``<kid>.json`` (the commit marker)."""
    pem = key.private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    write_atomic(keys_dir / f"{key.kid}.pem", pem)
    write_metadata(keys_dir, key)


def write_metadata(keys_dir: Path, key: SigningKey) -> None:
    write_atomic(keys_dir / f"{key.kid}.json", (json.dumps(key.metadata(), indent=2) + "\n").encode())


def delete_key(keys_dir: Path, kid: str) -> None:
    """Remove ``<kid>.json`` first so a crash leaves only an ignored ``.pem``."""
    (keys_dir / f"{kid}.json").unlink(missing_ok=True)
    (keys_dir / f"{kid}.pem").unlink(missing_ok=True)
    _fsync_dir(keys_dir)


def read_keys(keys_dir: Path) -> list[SigningKey]:
    """Every complete key in ``keys_dir``, oldest first.

    Raises:
        FileNotFoundError: no such directory.
        ValueError: a metadata or PEM file is unreadable or inconsistent;
            the message names the file.
    """
    if not keys_dir.is_dir():
        raise FileNotFoundError(f"{keys_dir}: key directory does not exist")
    keys = [read_key(meta) for meta in sorted(keys_dir.glob("*.json"))]
    known = {key.kid for key in keys}
    for pem in keys_dir.glob("*.pem"):
        if pem.stem not in known:
            log.warning("%s: ignored, no %s.json beside it (an interrupted write?)", pem, pem.stem)
    return sorted(keys, key=lambda key: (key.created_at, key.kid))


def read_key(meta_path: Path) -> SigningKey:
    """One key from ``<kid>.json`` and ``<kid>.pem``; errors name the file."""
    kid = meta_path.stem
    if not KID_RE.match(kid):
        raise ValueError(f"{meta_path}: file name is not a valid kid")
    alg, created_at, retire_at = _read_metadata(meta_path)
    pem_path = meta_path.with_suffix(".pem")
    try:
        private_key = serialization.load_pem_private_key(pem_path.read_bytes(), password=None)
    except FileNotFoundError:
        raise ValueError(f"{pem_path}: missing (its metadata {meta_path.name} exists)") from None
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{pem_path}: not an unencrypted PKCS#8 PEM private key ({exc})") from None
    try:
        check_key_type(alg, private_key)
    except ValueError as exc:
        raise ValueError(f"{pem_path}: {exc}") from None
    if jwk_thumbprint(public_jwk_members(private_key.public_key())) != kid:
        raise ValueError(f"{pem_path}: key does not match its kid (file renamed or replaced?)")
    return SigningKey(kid=kid, alg=alg, private_key=private_key, created_at=created_at, retire_at=retire_at)


def _read_metadata(path: Path) -> tuple[str, float, float | None]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: unreadable key metadata ({exc})") from None
    if not isinstance(doc, dict):
        raise ValueError(f"{path}: key metadata must be a JSON object")
    alg = doc.get("alg")
    if alg not in ALGORITHMS:
        raise ValueError(f"{path}: key 'alg' must be one of {', '.join(ALGORITHMS)}, not {alg!r}")
    created_at = doc.get("created_at")
    if not _is_time(created_at):
        raise ValueError(f"{path}: key 'created_at' must be epoch seconds")
    retire_at = doc.get("retire_at")
    if retire_at is not None and not _is_time(retire_at):
        raise ValueError(f"{path}: key 'retire_at' must be epoch seconds or null")
    return alg, float(created_at), None if retire_at is None else float(retire_at)


def _is_time(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def tighten_modes(keys_dir: Path) -> None:
    """Key files must be 0600; fix any an operator's copy left wider."""
    for path in keys_dir.iterdir():
        if path.suffix in (".pem", ".json") and path.stat().st_mode & 0o077:
            log.warning("%s: mode was wider than 0600; tightened", path)
            os.chmod(path, 0o600)


# -- ring changes on disk ---------------------------------------------------------


def settle(keys_dir: Path, alg: str, *, retire_at: float, now: float) -> list[SigningKey]:
    """Startup: the keys on disk, with an active key of ``alg`` guaranteed.

    Creates the first key, or a new one when ``alg`` differs from the
    active key's; every other unscheduled key (the old alg's, or one left
    by a rotation interrupted between its two writes) gets ``retire_at``.
    With nothing to change it writes nothing, so restarts keep the ``kid``.
    """
    check_alg(alg)
    ensure_dir(keys_dir)
    with locked(keys_dir):
        tighten_modes(keys_dir)
        found = read_keys(keys_dir)
        unscheduled = [key for key in found if key.retire_at is None]
        active = unscheduled[-1] if unscheduled else None
        if active is None or active.alg != alg:
            active = new_signing_key(alg, now)
            write_key(keys_dir, active)
            found.append(active)
        return schedule_others(keys_dir, found, active.kid, retire_at)


def add_active(
    keys_dir: Path, current: list[SigningKey], alg: str, *, retire_at: float, now: float
) -> list[SigningKey]:
    """Rotation: write a new key of ``alg``, then schedule the others.

    The new key's files come first: a crash before the old key's metadata
    is updated leaves two unscheduled keys, which :func:`settle` repairs.
    """
    check_alg(alg)
    ensure_dir(keys_dir)
    with locked(keys_dir):
        new = new_signing_key(alg, now)
        write_key(keys_dir, new)
        return schedule_others(keys_dir, [*current, new], new.kid, retire_at)


def schedule_others(keys_dir: Path, found: list[SigningKey], active_kid: str, retire_at: float) -> list[SigningKey]:
    """Give every unscheduled key but the active one a ``retire_at``, on disk too."""
    result = []
    for key in found:
        if key.retire_at is None and key.kid != active_kid:
            key = attrs.evolve(key, retire_at=retire_at)
            write_metadata(keys_dir, key)
        result.append(key)
    return result


def delete_keys(keys_dir: Path, kids: list[str]) -> None:
    with locked(keys_dir):
        for kid in kids:
            delete_key(keys_dir, kid)
