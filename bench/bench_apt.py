"""apt: a dependency-closed subset vs aptly (`mirror create -filter=… -filter-with-deps` + `mirror
update`); `dists/…/InRelease` requests/s vs nginx.

    .venv/bin/python bench/bench_apt.py [--packages 300] [--deps 50] [--kib 256] [--debian] [--no-serve] [--src DIR]

A signed suite repository is built here (dpkg-deb, apt-ftparchive, gpg): PACKAGES packages of KIB
KiB each, `bench0000` depending on DEPS of them; nginx serves it on 127.0.0.1 as the upstream. Both
tools verify the InRelease signature and every .deb; gapcache's time includes writing the new signed
repository and packing the archive, aptly's stops at its pool (publishing would be a third command).
`--debian` adds the same comparison for `jq` (amd64) from the Debian archive the host's apt uses.
Then `dists/stable/InRelease` requests/s: gapcache serve vs nginx serving the same file (--no-serve
skips it). --src DIR runs the gapcache package under DIR (a before/after comparison).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from common import PY, REPO, gapcache_serve, need, nginx, table, wrk

sys.path.insert(0, str(REPO / "tests"))

from aptrepo import host_debian_source, make_key


def build_repo(work: Path, packages: int, deps: int, kib: int) -> tuple[Path, Path]:
    """The upstream tree (www/bench: dists/stable, pool/main) and its binary keyring."""
    www = work / "www/bench"
    keyring = work / "key.gpg"
    if (www / "dists/stable/InRelease").exists():
        return www, keyring
    shutil.rmtree(work, ignore_errors=True)
    home = work / "gnupg"
    _, fpr = make_key(home, "bench <bench@test>")
    env = {**os.environ, "GNUPGHOME": str(home)}
    subprocess.run(["gpg", "--batch", "--yes", "--export", "-o", str(keyring), fpr], env=env, check=True)
    src = work / "src"
    for i in range(packages):
        name = f"bench{i:04d}"
        root = src / name
        (root / "DEBIAN").mkdir(parents=True)
        (root / "opt/bench").mkdir(parents=True)
        (root / "opt/bench" / name).write_bytes(os.urandom(kib * 1024))
        dep = ", ".join(f"bench{j:04d}" for j in range(1, deps + 1)) if i == 0 else ""
        control = f"Package: {name}\nVersion: 1.0\nArchitecture: amd64\nMaintainer: b <b@b>\nDescription: bench\n"
        (root / "DEBIAN/control").write_text(control + (f"Depends: {dep}\n" if dep else ""))
        deb = www / f"pool/main/b/{name}/{name}_1.0_amd64.deb"
        deb.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["dpkg-deb", "--root-owner-group", "-Znone", "--build", str(root), str(deb)], check=True,
                       capture_output=True)  # fmt: skip
    shutil.rmtree(src)
    d = www / "dists/stable/main/binary-amd64"
    d.mkdir(parents=True)
    (d / "Packages").write_bytes(subprocess.run(["apt-ftparchive", "packages", "pool"], cwd=www, check=True,
                                                capture_output=True).stdout)  # fmt: skip
    subprocess.run(["gzip", "-9kn", str(d / "Packages")], check=True)
    rel = www / "dists/stable"
    fields = {"Suite": "stable", "Codename": "stable", "Architectures": "amd64", "Components": "main"}
    opts = [x for k, v in fields.items() for x in ("-o", f"APT::FTPArchive::Release::{k}={v}")]
    release = subprocess.run(["apt-ftparchive", *opts, "release", "."], cwd=rel, check=True, capture_output=True)
    (rel / "Release").write_bytes(release.stdout)
    sign = ["gpg", "--batch", "--yes", "--pinentry-mode", "loopback", "--passphrase", "", "--digest-algo", "SHA512"]
    subprocess.run([*sign, "--clearsign", "-o", str(rel / "InRelease"), str(rel / "Release")], env=env, check=True)
    subprocess.run([*sign, "--detach-sign", "--armor", "-o", str(rel / "Release.gpg"), str(rel / "Release")], env=env,
                   check=True)  # fmt: skip
    subprocess.run(["gpgconf", "--kill", "gpg-agent"], env=env, check=False)
    return www, keyring


def compare(
    work: Path, url: str, suite: str, keyring: Path, pkg: str, rounds: int, src: Path | None = None
) -> tuple[float, float, int, int]:
    """Best-of-``rounds`` seconds for gapcache build and aptly create+update (fresh stores each
    round), and how many .deb files each mirrored."""
    work.mkdir(parents=True, exist_ok=True)
    m = work / "m.yaml"
    base = "    base: [libc6]\n" if pkg == "jq" else ""  # the nodes have libc6; aptly has no such notion
    m.write_text(f"format: 1\napt:\n  - id: bench\n    url: {url}\n    suites: [{suite}]\n    components: [main]\n"
                 f"    architectures: [amd64]\n    keyring: {keyring}\n    mode: packages\n    packages: [{pkg}]\n"
                 + base)  # fmt: skip
    env = {**os.environ, "XDG_CONFIG_HOME": str(work / "config"), "GAPCACHE_BOOTSTRAP": "0"}
    if src is not None:
        env["PYTHONPATH"] = str(src)
    g, a = [], []
    ours = theirs = 0
    for n in range(rounds):
        for x in (work / f"st{n}", work / f"aptly{n}"):
            shutil.rmtree(x, ignore_errors=True)
        t0 = time.perf_counter()
        subprocess.run([PY, "-m", "gapcache", "build", "-f", str(m), "-o", str(work / "a.tar"), "--store",
                        str(work / f"st{n}"), "-q"], check=True, env=env, stderr=subprocess.DEVNULL)  # fmt: skip
        g.append(time.perf_counter() - t0)
        conf = work / f"aptly{n}.conf"
        conf.write_text(f'{{"rootDir": "{work / f"aptly{n}"}", "gpgProvider": "gpg", "downloadConcurrency": 8}}')
        aptly = ["aptly", f"-config={conf}"]
        t0 = time.perf_counter()
        subprocess.run([*aptly, "mirror", "create", "-architectures=amd64", f"-filter={pkg}", "-filter-with-deps",
                        f"-keyring={keyring}", "m", url, suite, "main"], check=True, capture_output=True)  # fmt: skip
        subprocess.run([*aptly, "mirror", "update", f"-keyring={keyring}", "m"], check=True, capture_output=True)
        a.append(time.perf_counter() - t0)
        lock = json.loads((work / "a.tar.lock.json").read_text())
        ours = sum(x["path"].endswith(".deb") for i in lock["items"] for x in i["artifacts"])
        theirs = len(list((work / f"aptly{n}/pool").rglob("*.deb")))
    return min(g), min(a), ours, theirs


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--packages", type=int, default=300)
    ap.add_argument("--deps", type=int, default=50)
    ap.add_argument("--kib", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--debian", action="store_true")
    ap.add_argument("--no-serve", action="store_true", help="skip the InRelease requests/s comparison")
    ap.add_argument("--src", type=Path, help="run the gapcache package under this directory")
    args = ap.parse_args()
    need("aptly", "nginx", "wrk", "dpkg-deb", "apt-ftparchive", "gpg")
    work = REPO / "bench/out/apt"
    www, keyring = build_repo(work, args.packages, args.deps, args.kib)
    total = sum(p.stat().st_size for p in www.rglob("*.deb"))
    rows = []
    with nginx(www.parent, work / "nginx") as port:
        url = f"http://127.0.0.1:{port}/bench"
        g, a, ours, theirs = compare(work / "local", url, "stable", keyring, "bench0000", args.rounds, args.src)
        rows.append((f"subset of {args.deps + 1} of {args.packages} debs ({total / 2**20:.0f} MiB repo), best of "
                     f"{args.rounds}", f"{g:.2f} s ({ours} debs)", f"aptly mirror create+update: {a:.2f} s "
                     f"({theirs} debs)", f"time ratio {g / a:.2f} (≤ 1 is better)"))  # fmt: skip
        ng = 0.0 if args.no_serve else wrk(f"{url}/dists/stable/InRelease", 10)
    if args.debian:
        src = host_debian_source()
        if src is not None:
            deb_keyring = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
            g, a, ours, theirs = compare(work / "debian", src[0], src[1], deb_keyring, "jq", 1, args.src)
            rows.append((f"jq from {src[0]} {src[1]} (amd64; network, 1 round)", f"{g:.2f} s ({ours} debs)",
                         f"aptly mirror create+update: {a:.2f} s ({theirs} debs: no `base:`, so libc6 and its "
                         "closure too)", f"time ratio {g / a:.2f}"))  # fmt: skip
    if args.no_serve:
        print(table("apt repositories", rows))
        return
    m = work / "serve.yaml"
    with nginx(www.parent, work / "nginx2") as port:
        m.write_text(f"format: 1\napt:\n  - id: bench\n    url: http://127.0.0.1:{port}/bench\n    suites: [stable]\n"
                     f"    components: [main]\n    keyring: {keyring}\n")  # fmt: skip
        env = {**os.environ, "XDG_CONFIG_HOME": str(work / "config"), "GAPCACHE_BOOTSTRAP": "0"}
        subprocess.run([PY, "-m", "gapcache", "build", "-f", str(m), "-o", str(work / "full.tar"), "--store",
                        str(work / "st-full"), "-q"], check=True, env=env, stderr=subprocess.DEVNULL)  # fmt: skip
    shutil.rmtree(work / "root", ignore_errors=True)
    subprocess.run([PY, "-m", "gapcache", "load", str(work / "full.tar"), "--root", str(work / "root"), "-q"],
                   check=True, stderr=subprocess.DEVNULL)  # fmt: skip
    with gapcache_serve(work / "root", listener="repos") as sport:
        rps = wrk(f"http://127.0.0.1:{sport}/bench/dists/stable/InRelease", 10)
    rows.append(("dists/stable/InRelease (wrk -t2 -c32)", f"{rps:.0f} req/s", f"nginx {ng:.0f} req/s",
                 f"{rps / ng:.2f}x"))  # fmt: skip
    print(table("apt repositories", rows))


if __name__ == "__main__":
    main()
