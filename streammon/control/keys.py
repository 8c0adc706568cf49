"""Ed25519 keys per principal: who signs commands and route state, who trusts whom.

Every signer is a *principal* with its own key pair: ``decider`` (the worker),
``actuator`` (signs the route state it writes to Redis), and one per operator
(``operator``, ``operator-alice`` ...). A command's ``issued_by`` is the principal whose
key signed it; a verifier accepts it only if ``issued_by`` names a trusted principal and
one of that principal's trusted public keys verifies the signature. Several public keys
may be trusted per principal at once, so keys rotate without downtime: add the new
``.pub`` everywhere, switch the signer, then remove the old ``.pub``.

Routers and the actuator hold only public keys: a serving node (or anyone else who can
write the control topic or Redis) cannot produce a valid command or route state.

On disk (``streammon keys new PRINCIPAL --dir DIR``), one hex line per file::

    DIR/PRINCIPAL.KID.key   private seed (mode 0600): only on the process signing as PRINCIPAL
    DIR/PRINCIPAL.KID.pub   public key: copy to every process that verifies PRINCIPAL

``KID`` is the first 8 hex digits of the SHA-256 of the public key. Processes find their
keys in ``$STREAMMON_KEY_DIR``. Under ``streammon dev``, the demo and tests,
:func:`dev_keyring` derives fixed, public development keys; they are refused unless
the keyring says ``dev=True``.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from streammon.errors import CommandError, ConfigError

ACTUATOR = "actuator"
DECIDER = "decider"
OPERATOR = "operator"
DEV_PRINCIPALS = (DECIDER, OPERATOR, ACTUATOR)
KEY_DIR_ENV = "STREAMMON_KEY_DIR"
_PRINCIPAL = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
_SEED_BYTES = 32
FIX = (f"create keys with `streammon keys new PRINCIPAL --dir DIR` (PRINCIPAL: {DECIDER}, "
       f"{ACTUATOR}, {OPERATOR}) and set {KEY_DIR_ENV}=DIR; for development only, "
       "run under `streammon dev up`")


@lru_cache(maxsize=256)
def _private(seed: bytes) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(seed)


@lru_cache(maxsize=256)
def _public(raw: bytes) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(raw)


def public_bytes(seed: bytes) -> bytes:
    """Return the raw 32-byte public key of a 32-byte private seed."""
    return _private(seed).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def key_id(public: bytes) -> str:
    """Return a short, stable name for a public key (8 hex digits of its SHA-256)."""
    return hashlib.sha256(public).hexdigest()[:8]


def check_principal(name: str) -> str:
    """Return ``name`` if it is a valid principal, else raise ConfigError saying the rule."""
    if not _PRINCIPAL.match(name):
        raise ConfigError(f"principal {name!r} must match {_PRINCIPAL.pattern} "
                          "(lower-case letters, digits, '-' or '_')")
    return name


@dataclass(frozen=True)
class Signer:
    """One principal's private key."""

    principal: str
    seed: bytes = field(repr=False)

    def sign(self, data: bytes) -> str:
        """Return the hex Ed25519 signature of ``data``."""
        return _private(self.seed).sign(data).hex()

    @property
    def public(self) -> bytes:
        """The raw public key."""
        return public_bytes(self.seed)


@dataclass(frozen=True, kw_only=True)
class Keyring:
    """The keys one process holds: private seeds it signs with, public keys it trusts.

    ``operator`` names the principal that operator commands from this process sign as.
    ``dev`` marks the fixed development keys; no production setting sets it.
    """

    signing: Mapping[str, bytes] = field(default_factory=dict, repr=False)
    trusted: Mapping[str, tuple[bytes, ...]] = field(default_factory=dict)
    operator: str = OPERATOR
    dev: bool = False

    @property
    def empty(self) -> bool:
        """True when the keyring holds no key at all."""
        return not self.signing and not self.trusted

    def signer(self, principal: str) -> Signer:
        """Return ``principal``'s signer or raise ConfigError saying how to make the key."""
        seed = self.signing.get(principal)
        if seed is None:
            raise ConfigError(f"no private key for principal {principal!r}: {FIX}")
        return Signer(principal, seed)

    def require_trust(self, what: str, principals: tuple[str, ...] = ()) -> None:
        """Raise ConfigError (naming the fix) unless public keys are trusted for ``what``."""
        missing = [p for p in principals if not self.trusted.get(p)]
        if not self.trusted or missing:
            need = ", ".join(missing) or "any principal"
            raise ConfigError(f"{what} refuses to start: no trusted public key for {need}; "
                              f"{FIX}")

    def verify(self, principal: str, data: bytes, sig_hex: str) -> None:
        """Raise CommandError unless a trusted key of ``principal`` signed ``data``."""
        publics = self.trusted.get(principal, ())
        if not publics:
            raise CommandError(f"untrusted principal {principal!r} - at `$.issued_by`")
        try:
            sig = bytes.fromhex(sig_hex)
        except ValueError:
            raise CommandError("signature is not hex - at `$.sig`") from None
        for raw in publics:
            try:
                _public(raw).verify(sig, data)
            except InvalidSignature:
                continue
            return
        raise CommandError(f"signature does not verify under {principal!r}'s trusted keys"
                           " - at `$.sig`")


def dev_seed(principal: str) -> bytes:
    """Return the fixed development seed of ``principal`` (public knowledge: dev only)."""
    return hashlib.sha256(f"streammon-dev-key:{principal}".encode()).digest()


def dev_keyring(principals: tuple[str, ...] = DEV_PRINCIPALS) -> Keyring:
    """Return the development keyring: every dev principal signs and is trusted."""
    seeds = {p: dev_seed(p) for p in principals}
    return Keyring(signing=seeds, trusted={p: (public_bytes(s),) for p, s in seeds.items()},
                   dev=True)


def new_key(principal: str, directory: str | Path) -> tuple[Path, Path]:
    """Write a fresh key pair for ``principal`` into ``directory``; return (.key, .pub)."""
    check_principal(principal)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    seed = os.urandom(_SEED_BYTES)
    public = public_bytes(seed)
    stem = f"{principal}.{key_id(public)}"
    private_path, public_path = directory / f"{stem}.key", directory / f"{stem}.pub"
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(seed.hex() + "\n")
    public_path.write_text(public.hex() + "\n")
    return private_path, public_path


def _read_hex(path: Path, size: int) -> bytes:
    try:
        raw = bytes.fromhex(path.read_text().strip())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read key file {path}: {exc}") from exc
    if len(raw) != size:
        raise ConfigError(f"key file {path} holds {len(raw)} bytes, expected {size}: "
                          "make it with `streammon keys new`")
    return raw


def load_keyring(directory: str | Path, *, operator: str = OPERATOR) -> Keyring:
    """Read every ``*.key`` and ``*.pub`` in ``directory``; raise ConfigError on a bad file.

    A private key's own public key is trusted too, so a signer verifies what it signs.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise ConfigError(f"{KEY_DIR_ENV}={directory} is not a directory: {FIX}")
    signing: dict[str, bytes] = {}
    trusted: dict[str, list[bytes]] = {}
    for path in sorted(directory.iterdir()):
        principal = check_principal(path.name.split(".", 1)[0])
        if path.suffix == ".key":
            signing[principal] = _read_hex(path, _SEED_BYTES)
            public = public_bytes(signing[principal])
        elif path.suffix == ".pub":
            public = _read_hex(path, 32)
        else:
            continue
        if public not in trusted.setdefault(principal, []):
            trusted[principal].append(public)
    return Keyring(signing=signing, trusted={p: tuple(k) for p, k in trusted.items()},
                   operator=check_principal(operator))
