"""GnuPG homes and the site signing key, shared by the kinds that sign what they publish (yum
subset repodata, apt subset Release files). The key stays on the connected side
(``$XDG_CONFIG_HOME/gapcache/keys``); only its public part goes into an archive."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .tools import run_tool


def site_keyring() -> Path:
    """The site signing key's GnuPG home (``$XDG_CONFIG_HOME/gapcache/keys/gnupg``), created once
    (RSA 3072: its signatures are deterministic for a given time, so published bytes reproduce)."""
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "gapcache" / "keys" / "gnupg"
    if not (base / "pubring.kbx").exists():
        with gnupg_home(base, write_back=True) as env:
            run_tool(["gpg", "--batch", "--pinentry-mode", "loopback", "--passphrase", "", "--quick-gen-key",
                      "gapcache site key <gapcache@localhost>", "rsa3072", "sign", "never"],
                     what="the site signing key", env=env)  # fmt: skip
    return base


def site_key_fingerprint() -> str:
    """The fingerprint of the site key (created on first use)."""
    with gnupg_home(site_keyring()) as env:
        listing = run_tool(["gpg", "--batch", "--with-colons", "--list-secret-keys"], what="the site key", env=env)
    rows = [line.split(":") for line in listing.stdout.decode().splitlines()]
    return next(r[9] for r in rows if r[0] == "fpr" and len(r) > 9)


@contextlib.contextmanager
def gnupg_home(source: Path | None, write_back: bool = False) -> Iterator[dict[str, str]]:
    """Run gpg on a copy of ``source`` in a short temporary home (gpg-agent's socket path must fit
    in 108 bytes, which a deep config directory does not); copy changes back when asked."""
    tmp = Path(tempfile.mkdtemp(prefix="gcg.", dir="/tmp"))
    try:
        if source is not None and source.is_dir():
            shutil.copytree(source, tmp, dirs_exist_ok=True, ignore=shutil.ignore_patterns("S.*"))
        os.chmod(tmp, 0o700)
        env = {**os.environ, "GNUPGHOME": str(tmp)}
        yield env
        if write_back and source is not None:
            source.mkdir(parents=True, exist_ok=True, mode=0o700)
            shutil.copytree(tmp, source, dirs_exist_ok=True, ignore=shutil.ignore_patterns("S.*"))
    finally:
        if shutil.which("gpgconf"):
            subprocess.run(["gpgconf", "--kill", "gpg-agent"], env={**os.environ, "GNUPGHOME": str(tmp)},
                           capture_output=True, check=False)  # fmt: skip
        shutil.rmtree(tmp, ignore_errors=True)
