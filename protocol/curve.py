"""Optional CurveZMQ authentication and encryption.

Keys are z85-encoded (40 ASCII bytes) and stored in the certificate files ``zmq.auth`` reads and writes
(``name.key`` holds the public key, ``name.key_secret`` both). The learner is the CURVE server on all three
sockets; an authenticator thread (``zmq.auth.thread.ThreadAuthenticator``, one per zmq.Context) accepts only
clients whose public key lies in a directory of ``*.key`` files. A peer without an authorised key fails the
handshake: it can neither push segments nor receive policies.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator


@dataclasses.dataclass(frozen=True, repr=False)
class CurveKeyPair:
    """A z85-encoded CURVE key pair (``repr`` hides the secret so it never lands in a log)."""

    public: bytes
    secret: bytes

    def __repr__(self) -> str:
        return f"CurveKeyPair(public={self.public!r}, secret=<hidden>)"


@dataclasses.dataclass(frozen=True)
class CurveServer:
    """CURVE settings for a binding (learner) socket."""

    keys: CurveKeyPair


@dataclasses.dataclass(frozen=True)
class CurveClient:
    """CURVE settings for a connecting (actor) socket: its own keys and the server's public key."""

    keys: CurveKeyPair
    server_public: bytes


def _require_curve() -> None:
    if not zmq.has("curve"):
        raise RuntimeError("this libzmq was built without CURVE support")


def generate_keypair() -> CurveKeyPair:
    """A fresh key pair in memory."""
    _require_curve()
    public, secret = zmq.curve_keypair()
    return CurveKeyPair(public=public, secret=secret)


def write_keypair(directory: str | Path, name: str) -> tuple[Path, Path]:
    """Create ``directory/name.key`` (public) and ``directory/name.key_secret`` (both keys); returns the paths."""
    _require_curve()
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    public_file, secret_file = zmq.auth.create_certificates(str(directory), name)
    return Path(public_file), Path(secret_file)


def load_keypair(secret_file: str | Path) -> CurveKeyPair:
    """Both keys from a ``.key_secret`` file."""
    public, secret = zmq.auth.load_certificate(str(secret_file))
    if secret is None:
        raise ValueError(f"{secret_file} holds no secret key (use the .key_secret file)")
    return CurveKeyPair(public=public, secret=secret)


def load_public_key(key_file: str | Path) -> bytes:
    """The public key from a ``.key`` or ``.key_secret`` file."""
    public, _ = zmq.auth.load_certificate(str(key_file))
    return public


def apply_curve(sock: zmq.Socket, curve: CurveServer | CurveClient) -> None:
    """Configure CURVE on a socket; must happen before bind/connect."""
    _require_curve()
    sock.curve_secretkey = curve.keys.secret
    sock.curve_publickey = curve.keys.public
    if isinstance(curve, CurveServer):
        sock.curve_server = True
    else:
        sock.curve_serverkey = curve.server_public


def start_authenticator(ctx: zmq.Context, authorized_keys_dir: str | Path) -> ThreadAuthenticator:
    """Start the ZAP handler for ``ctx`` that admits only the public keys found in ``authorized_keys_dir``
    (every ``*.key`` file there). Call ``.stop()`` on the result before terminating the context."""
    _require_curve()
    directory = Path(authorized_keys_dir)
    if not directory.is_dir():
        raise FileNotFoundError(f"authorised keys directory {directory} does not exist")
    auth = ThreadAuthenticator(ctx)
    auth.start()
    auth.configure_curve(domain="*", location=str(directory))
    return auth
