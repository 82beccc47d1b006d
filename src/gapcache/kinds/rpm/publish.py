"""A subset's new repodata: createrepo_c (+ modifyrepo_c for modules), repomd.xml signed with the
site key; reproducible (same packages and key → same bytes)."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

from ...lock import GENERATED, Artifact, Item
from ...store import Store
from ...tools import run_tool
from .gpg import sign_detached
from .repomd import decompress, filter_comps, filter_modules

SITE_KEY_NAME = "gapcache-site.pub"
UPSTREAM_MD = "yum-upstream/"  # upstream comps/modules of a subset: fetched and kept, not served


def publish_subset(item: Item, store: Store) -> Item:
    repo_id = str(item.resolved["id"])
    prefix = f"yum/{repo_id}/"
    keep = [a for a in item.artifacts if a.source != GENERATED]
    with tempfile.TemporaryDirectory(prefix="gapcache-createrepo-") as tmp:
        root = Path(tmp) / "repo"
        for a in keep:
            if a.path.startswith(prefix) and a.path.endswith(".rpm") and a.digest:
                target = root / a.path[len(prefix) :]
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(store.path(a.digest), target)
                os.utime(target, (0, 0))  # primary records file times: keep the output reproducible
        cmd = ["createrepo_c", "--quiet", "--no-database", "--revision", "0", "--set-timestamp-to-revision",
               "--simple-md-filenames"]  # fmt: skip
        upstream = {a.path.split("/")[2].split(".")[0]: a for a in keep if a.path.startswith(UPSTREAM_MD) and a.digest}
        pkgs = [str(x) for x in item.resolved.get("packages", [])]
        comps = None
        if "group" in upstream:
            raw = upstream["group"]
            comps = filter_comps(decompress(store.path(str(raw.digest)).read_bytes(), raw.path),
                                 {n.rsplit("-", 2)[0] for n in pkgs})  # fmt: skip
        if comps is not None:
            groupfile = Path(tmp) / "comps.xml"
            groupfile.write_bytes(comps)
            cmd += ["--groupfile", str(groupfile)]
        run_tool([*cmd, str(root)], what=f"{repo_id} repodata")
        modules = None
        if "modules" in upstream:
            raw = upstream["modules"]
            modules = filter_modules(decompress(store.path(str(raw.digest)).read_bytes(), raw.path), set(pkgs))
        if modules is not None:
            modfile = Path(tmp) / "modules.yaml"
            modfile.write_bytes(modules)
            modifyrepo = ["modifyrepo_c", "--mdtype=modules", "--simple-md-filenames"]
            run_tool([*modifyrepo, str(modfile), str(root / "repodata")], what=f"{repo_id} modules")
            # modifyrepo_c stamps its record with the current time; createrepo_c's are all 0 (--revision 0)
            md = root / "repodata/repomd.xml"
            md.write_text(re.sub(r"<timestamp>\d+</timestamp>", "<timestamp>0</timestamp>", md.read_text()))
        pub = sign_detached(root / "repodata/repomd.xml", f"{repo_id} repodata")
        generated = []
        for f in sorted((root / "repodata").iterdir()):
            data = f.read_bytes()
            generated.append(Artifact(path=f"{prefix}repodata/{f.name}", source=GENERATED, digest=store.put_bytes(data),
                                      size=len(data), media_type="application/octet-stream"))  # fmt: skip
        generated.append(Artifact(path=f"yum/gpgkeys/{SITE_KEY_NAME}", source=GENERATED, digest=store.put_bytes(pub),
                                  size=len(pub), media_type="application/pgp-keys"))  # fmt: skip
    keys = [*item.resolved.get("keys", []), SITE_KEY_NAME]
    return item.model_copy(update={"artifacts": keep + generated, "resolved": {**item.resolved, "keys": keys}})
