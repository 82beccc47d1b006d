"""GnuPG plumbing shared by ``release`` (gpgv) and ``publish`` (gpg): tools, homes, keyrings."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path

from gapcache.gpg import temp_home as gpg_temp_home
from gapcache.tools import require_tool

from .errors import AptError

KeySource = Path | bytes
ARMOR_BLOCK = re.compile(rb"-----BEGIN PGP PUBLIC KEY BLOCK-----.*?-----END PGP PUBLIC KEY BLOCK-----", re.DOTALL)


@contextlib.contextmanager
def temp_home(copy_from: Path | None = None) -> Iterator[Path]:
    """An isolated GnuPG home (:func:`gapcache.gpg.temp_home`), optionally a copy of ``copy_from``."""
    if copy_from is not None and not copy_from.is_dir():
        raise AptError(f"{copy_from}: GnuPG home not found")
    with gpg_temp_home(copy_from) as home:
        yield home


def gpg_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GPG_")}
    env.update(GNUPGHOME=str(home), LC_ALL="C", TZ="UTC")
    return env


def is_armored(data: bytes) -> bool:
    return b"-----BEGIN PGP" in data[:4096]


def binary_keyrings(keys: KeySource | Sequence[KeySource], workdir: Path) -> list[Path]:
    """Each key (a file path or its bytes; armored or binary) as a binary keyring file in ``workdir``
    (gpgv reads only binary keyrings). Armored files may hold several key blocks."""
    sources: Sequence[KeySource] = [keys] if isinstance(keys, (Path, bytes)) else keys
    if not sources:
        raise AptError("no keyring given to verify against")
    out = []
    for n, src in enumerate(sources):
        what = str(src) if isinstance(src, Path) else f"key #{n + 1}"
        try:
            data = src.read_bytes() if isinstance(src, Path) else src
        except OSError as exc:
            raise AptError(f"{what}: cannot read keyring: {exc.strerror}") from exc
        target = workdir / f"keyring-{n}.gpg"
        if is_armored(data):
            blocks = ARMOR_BLOCK.findall(data)
            if not blocks:
                raise AptError(f"{what}: armored data holds no public key block")
            target.write_bytes(b"".join(dearmor(b, what) for b in blocks))
        else:
            target.write_bytes(data)
        out.append(target)
    return out


def dearmor(block: bytes, what: str) -> bytes:
    gpg = require_tool("gpg", "needed to read armored apt keys")
    with temp_home() as home:
        res = subprocess.run([gpg, "--batch", "--dearmor"], input=block, env=gpg_env(home), capture_output=True,
                             check=False)  # fmt: skip
    if res.returncode != 0 or not res.stdout:
        raise AptError(f"{what}: not a valid armored key ({res.stderr.decode(errors='replace').strip()})")
    return res.stdout
