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


def short_tempdir() -> str:
    """Where GnuPG homes go: the temporary directory (``--tmpdir``/TMPDIR) when an agent socket in
    it fits in the 108 bytes a socket path may have, else /tmp."""
    base = tempfile.gettempdir()
    return base if len(base) <= 60 else "/tmp"  # noqa: S108 - only a base for mkdtemp (private, 0700)


@contextlib.contextmanager
def temp_home(copy_from: Path | None = None, *, write_back: bool = False) -> Iterator[Path]:
    """An isolated GnuPG home with a short path (:func:`short_tempdir`), optionally a copy of
    ``copy_from`` (sockets and lock files left out), copied back when asked. Any agent started in
    it is stopped at the end."""
    ignore = shutil.ignore_patterns("S.*", "*.lock")
    tmp = Path(tempfile.mkdtemp(prefix="gcg.", dir=short_tempdir()))
    try:
        if copy_from is not None and copy_from.is_dir():
            shutil.copytree(copy_from, tmp, dirs_exist_ok=True, ignore=ignore)
        os.chmod(tmp, 0o700)
        yield tmp
        if write_back and copy_from is not None:
            copy_from.mkdir(parents=True, exist_ok=True, mode=0o700)
            shutil.copytree(tmp, copy_from, dirs_exist_ok=True, ignore=ignore)
    finally:
        if shutil.which("gpgconf"):
            subprocess.run(["gpgconf", "--kill", "gpg-agent"], env={**os.environ, "GNUPGHOME": str(tmp)},
                           capture_output=True, check=False)  # fmt: skip
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def gnupg_home(source: Path | None, write_back: bool = False) -> Iterator[dict[str, str]]:
    """The environment to run gpg in a :func:`temp_home` copy of ``source``."""
    with temp_home(source, write_back=write_back) as home:
        yield {**os.environ, "GNUPGHOME": str(home)}
