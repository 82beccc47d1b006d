"""The kinds registry loads a kind's package only when it has work (kinds/__init__.py: LazyKind)."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

from conftest import cli_env
from gapcache.kinds import KINDS


def test_each_lazy_entry_names_its_kind_and_listener() -> None:
    for name, lazy in KINDS.items():
        module, cls = lazy._where
        real = getattr(importlib.import_module(f"gapcache.kinds.{module}"), cls)()
        assert (real.name, real.listener) == (name, lazy.listener), name


def test_a_quiet_files_only_build_loads_no_other_kind_and_no_serving_code(tmp_path: Path) -> None:
    src = tmp_path / "a.txt"
    src.write_text("lazy\n")
    manifest = tmp_path / "m.yaml"
    manifest.write_text(f"format: 1\nfiles:\n  - url: file://{src}\n")
    script = (
        "import json, sys\nfrom gapcache.cli import main\n"
        f"code = main(['build', '-f', {str(manifest)!r}, '-o', {str(tmp_path / 'o.tar')!r}, "
        f"'--store', {str(tmp_path / 'store')!r}, '--no-bootstrap', '-q'])\n"
        "print(json.dumps([code, sorted(m for m in sys.modules if m.startswith('gapcache.kinds.')),\n"
        "  sorted(m for m in ('aiohttp.web', 'cryptography', 'rich', 'gapcache.blobs') if m in sys.modules)]))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=cli_env(), check=True)
    code, loaded, heavy = json.loads(out.stdout.strip().splitlines()[-1])
    assert code == 0, out.stderr
    assert (tmp_path / "o.tar").exists()
    kinds = {m.split(".")[2] for m in loaded}
    assert kinds == {"base", "file"}, loaded  # not apt, rpm, chart, image, python, git, galaxy, bootstrap
    assert heavy == [], heavy  # no serving code, no cryptography (only --sign), no rich (only a terminal's bars)
