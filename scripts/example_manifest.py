"""Write the built-in example manifest from sources this machine can reach.

The URLs and sha256 digests come from apt's configured sources (``apt-get download
--print-uris``), so the example needs no hard-coded host and works behind any apt mirror; the
Python packages resolve against the index pip on this host is configured with, for this host's
Python and CPU and for an aarch64 node. It grows as content types land.

    python scripts/example_manifest.py OUT.yaml
"""

from __future__ import annotations

import platform
import shlex
import subprocess
import sys
from pathlib import Path

# small packages a DeepOps node typically needs early (jq and its libraries, hostname, ipmitool)
PACKAGES = ["jq", "libjq1", "libonig5", "hostname", "ipmitool"]


def apt_files(packages: list[str]) -> list[dict[str, str]]:
    out = subprocess.run(
        ["apt-get", "download", "--print-uris", *packages], capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        sys.exit(f"apt-get download --print-uris failed (run apt-get update?):\n{out.stderr}")
    entries = []
    for line in out.stdout.splitlines():
        url, _name, _size, checksum = shlex.split(line)
        algo, _, digest = checksum.partition(":")
        entry = {"url": url}
        if algo.upper() == "SHA256":
            entry["sha256"] = digest
        entries.append(entry)
    return entries


def main() -> None:
    target = Path(sys.argv[1])
    files = apt_files(PACKAGES)
    lines = [
        "# gapcache example manifest (generated from this host's apt sources)",
        "format: 1",
        "name: example",
        "files:",
    ]
    for f in files:
        lines.append(f"  - url: {f['url']}")
        if "sha256" in f:
            lines.append(f"    sha256: {f['sha256']}")
    py = f"{sys.version_info.major}.{sys.version_info.minor}"
    arch = platform.machine()
    lines += [
        "python:",
        "  requirements: [requests]",
        "  targets:",
        f"    - {{python: '{py}', platform: manylinux_2_28_{arch}}}   # this host",
        "    - {python: '3.10', platform: manylinux_2_28_aarch64}   # an Ubuntu 22.04 Grace node",
    ]
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("\n".join(lines) + "\n")
    print(f"wrote {target} ({len(files)} files)")


if __name__ == "__main__":
    main()
