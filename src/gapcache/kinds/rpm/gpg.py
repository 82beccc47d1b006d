"""GnuPG for yum repos: upstream repomd signatures, and the site key that signs subset repodata."""

from __future__ import annotations

import subprocess
from pathlib import Path

from ...errors import GapcacheError
from ...gpg import gnupg_home, site_keyring
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


def sign_detached(path: Path, what: str) -> bytes:
    """Sign ``path`` (writing ``path.asc``) with the site key "at" the key's creation time, so the same
    bytes and key give the same signature; returns the armored public key."""
    with gnupg_home(site_keyring()) as env:
        listing = run_tool(["gpg", "--batch", "--with-colons", "--list-secret-keys"], what=what, env=env).stdout
        created = next(line.split(":")[5] for line in listing.decode().splitlines() if line.startswith("sec:"))
        run_tool(["gpg", "--batch", "--yes", "--faked-system-time", f"{created}!", "--detach-sign", "--armor",
                  str(path)], what=what, env=env)  # fmt: skip
        return run_tool(["gpg", "--batch", "--export", "--armor"], what=what, env=env).stdout
