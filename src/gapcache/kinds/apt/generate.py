"""After fetch: the bytes an apt mirror serves beyond what it fetched (``source: generated``).

``mode: packages``: per suite, new Packages(.gz, .xz) listing the closure's upstream stanzas
byte-exact, a Release with MD5Sum/SHA256 (no Acquire-By-Hash: by-hash paths are not served), signed
as InRelease and Release.gpg with the site key (``publish.publish_repo``: reproducible), and
``key.gpg``, the site key's public part. ``mode: full``: only ``key.gpg``, the upstream keyring as
a binary keyring (what a ``Signed-By:`` file ending in ``.gpg`` must be).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from ...gpg import site_keyring
from ...lock import GENERATED, Artifact, Item
from ...store import Store
from .gpg import binary_keyrings
from .packages import PackageRecord, parse_packages
from .publish import EPOCH_DATE, IndexKey, ReleaseMeta, publish_repo
from .resolve import PREFIX, UPSTREAM_KEYS
from .signing import OpenSigner, Signer, open_signer, public_key

KEY_TYPE = "application/pgp-keys"


def site_signer() -> Signer:
    """The site key (created on first use): its home's one secret key, found when it is opened."""
    return Signer(site_keyring(), "")


def generate(item: Item, store: Store) -> Item:
    repo_id = str(item.resolved["id"])
    top = f"{PREFIX}{repo_id}/"
    keep = [a for a in item.artifacts if a.source != GENERATED]
    out: dict[str, bytes] = {}
    if item.resolved.get("mode") == "packages":
        with open_signer(site_signer()) as signer:  # one GnuPG home for every suite and the key
            out.update(_subset(item, repo_id, signer))
    else:
        upstream = next((a for a in keep if a.path == f"{UPSTREAM_KEYS}{repo_id}/keyring"), None)
        if upstream is not None and upstream.digest:
            with tempfile.TemporaryDirectory(prefix="gapcache-aptkey-") as tmp:
                rings = binary_keyrings(store.path(upstream.digest).read_bytes(), Path(tmp))
                out["key.gpg"] = b"".join(r.read_bytes() for r in rings)
    generated = []
    for path, data in sorted(out.items()):
        media = KEY_TYPE if path == "key.gpg" else "text/plain"
        generated.append(Artifact(path=top + path, source=GENERATED, digest=store.put_bytes(data), size=len(data),
                                  media_type=media))  # fmt: skip
    return item.model_copy(update={"artifacts": keep + generated})


def _subset(item: Item, repo_id: str, signer: OpenSigner) -> dict[str, bytes]:
    """Per suite new Packages and signed Release files, and ``key.gpg``."""
    out: dict[str, bytes] = {}
    by_suite: dict[str, dict[IndexKey, list[PackageRecord]]] = {}
    for key, stanzas in dict(item.resolved.get("indexes", {})).items():
        suite, comp, arch = str(key).split("|")
        data = "".join(s + "\n" for s in stanzas).encode()
        by_suite.setdefault(suite, {})[comp or None, arch] = parse_packages(data, f"{repo_id} {key}")
    releases = dict(item.resolved.get("release", {}))
    for suite, indexes in sorted(by_suite.items()):
        f = dict(releases.get(suite, {}))
        meta = ReleaseMeta(origin=f.get("Origin", "gapcache"), label=f.get("Label", "gapcache"),
                           suite=f.get("Suite"), codename=f.get("Codename"), date=f.get("Date", EPOCH_DATE),
                           description=f.get("Description"))  # fmt: skip
        out.update(publish_repo(indexes, suite, meta, signer))
    out["key.gpg"] = public_key(signer)
    return out
