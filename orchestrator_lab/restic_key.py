"""Give the lab's restic repository a key that is cheap to open.

restic calibrates its key derivation (scrypt) to about half a second of CPU per invocation, and the lab
runs restic three times per host: 600 invocations, five minutes of CPU, for a 200-host lab. That cost
protects weak passwords; the lab's is 32 random bytes, so stretching it adds nothing. restic has no
option for the scrypt cost (0.14), so the lab writes one more key file itself, in the key format of
restic's design document ("Keys, Encryption and MAC": scrypt -> 32-byte AES-256-CTR key, then the
Poly1305-AES key k || r; data = IV || ciphertext || MAC over the master key JSON), and removes the
calibrated key with restic itself, through the new key: restic refuses a key it cannot open, so a
mistake here fails `lab up` instead of leaving an unreadable repository.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
from cryptography.hazmat.primitives.poly1305 import Poly1305

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**10, 8, 1


def key_file(master_key: dict, password: bytes) -> bytes:
    """A restic key file that unlocks `master_key` (as `restic cat masterkey` prints it) with `password`."""
    salt = os.urandom(64)
    derived = Scrypt(salt=salt, length=64, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P).derive(password)
    encryption_key, mac_k, mac_r = derived[:32], derived[32:48], derived[48:64]
    iv = os.urandom(16)
    plaintext = json.dumps(master_key).encode()
    ciphertext = Cipher(algorithms.AES(encryption_key), modes.CTR(iv)).encryptor().update(plaintext)
    # Poly1305-AES: the one-time key is r || AES_k(nonce); the nonce is the IV.
    s = Cipher(algorithms.AES(mac_k), modes.ECB()).encryptor().update(iv)
    tag = Poly1305.generate_tag(mac_r + s, ciphertext)
    document = {
        "created": datetime.now(UTC).isoformat(),
        "username": "orchestrator-lab",
        "hostname": "lab",
        "kdf": "scrypt",
        "N": SCRYPT_N,
        "r": SCRYPT_R,
        "p": SCRYPT_P,
        "salt": base64.b64encode(salt).decode(),
        "data": base64.b64encode(iv + ciphertext + tag).decode(),
    }
    return json.dumps(document).encode()


def add_key(repository: Path, master_key: dict, password: bytes) -> str:
    """Store the key file under its storage ID (sha256 of its content), as restic does; returns the ID."""
    raw = key_file(master_key, password)
    key_id = hashlib.sha256(raw).hexdigest()
    path = repository / "keys" / key_id
    path.write_bytes(raw)
    os.chmod(path, 0o400)
    return key_id
