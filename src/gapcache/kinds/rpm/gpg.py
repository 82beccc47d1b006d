"""GnuPG for yum repos: upstream repomd signatures, and the site key that signs subset repodata."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from ...errors import GapcacheError
from ...tools import require_tool, run_tool


def verify_signature(data: bytes, signature: bytes, keys: list[bytes], what: str) -> None:
    """Check a detached signature with gpg in a throw-away keyring holding only ``keys``."""
    gpg = require_tool("gpg", "needed to check repository signatures")
    with gnupg_home(None) as env:
        home = env["GNUPGHOME"]
        for k in keys:
            subprocess.run([gpg, "--batch", "--quiet", "--import"], input=k, env=env, capture_output=True, check=False)
        (Path(home) / "data").write_bytes(data)
        (Path(home) / "data.asc").write_bytes(signature)
        res = subprocess.run(
            [gpg, "--batch", "--verify", str(Path(home) / "data.asc"), str(Path(home) / "data")],
            env=env, capture_output=True, text=True, check=False,
        )  # fmt: skip
        if res.returncode != 0:
            raise GapcacheError(f"{what}: bad signature ({res.stderr.strip().splitlines()[-1] if res.stderr else ''})")


def site_keyring() -> Path:
    """The site signing key's GnuPG home (``$XDG_CONFIG_HOME/gapcache/keys/gnupg``), created once."""
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "gapcache" / "keys" / "gnupg"
    if not (base / "pubring.kbx").exists():
        with gnupg_home(base, write_back=True) as env:
            run_tool(["gpg", "--batch", "--pinentry-mode", "loopback", "--passphrase", "", "--quick-gen-key",
                      "gapcache site key <gapcache@localhost>", "rsa3072", "sign", "never"],
                     what="the site signing key", env=env)  # fmt: skip
    return base


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


def sign_detached(path: Path, what: str) -> bytes:
    """Sign ``path`` (writing ``path.asc``) with the site key "at" the key's creation time, so the same
    bytes and key give the same signature; returns the armored public key."""
    with gnupg_home(site_keyring()) as env:
        listing = run_tool(["gpg", "--batch", "--with-colons", "--list-secret-keys"], what=what, env=env).stdout
        created = next(line.split(":")[5] for line in listing.decode().splitlines() if line.startswith("sec:"))
        run_tool(["gpg", "--batch", "--yes", "--faked-system-time", f"{created}!", "--detach-sign", "--armor",
                  str(path)], what=what, env=env)  # fmt: skip
        return run_tool(["gpg", "--batch", "--export", "--armor"], what=what, env=env).stdout
