"""kinds/apt/signing: one temporary GnuPG home per publish, and the signature creation time read from
the packet (what makes the signed Release files reproducible) agreeing with gpg's own reading."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from aptrepo import make_key
from gapcache.kinds.apt import gpg as apt_gpg
from gapcache.kinds.apt import signing
from gapcache.kinds.apt.publish import ReleaseMeta, publish_repo
from gapcache.kinds.apt.signing import Signer, key_times, open_signer, public_key, v4_signature_created

WHEN = 1_900_000_000  # after the key's creation: gpg signs "at" it with --faked-system-time


@pytest.fixture(scope="module")
def signer(tmp_path_factory: pytest.TempPathFactory) -> Signer:
    home = tmp_path_factory.mktemp("aptsign") / "gnupg"
    _, fpr = make_key(home, "gapcache signing test <sign@test>")
    return Signer(home, fpr)


def _gpg_created(path: Path, home: Path) -> int:
    env = {**os.environ, "GNUPGHOME": str(home)}
    out = subprocess.run(["gpg", "--batch", "--list-packets", str(path)], env=env, capture_output=True, text=True,
                         check=True).stdout  # fmt: skip
    m = re.search(r"^:signature packet:.*\n\s+version \d+, created (\d+)", out, re.M)
    assert m, out
    return int(m.group(1))


@pytest.mark.parametrize("mode", ["--clearsign", "--detach-sign"])
def test_creation_time_from_the_packet_is_gpgs(signer: Signer, tmp_path: Path, mode: str) -> None:
    with open_signer(signer) as s:
        (tmp_path / "data").write_bytes(b"Origin: test\n")
        subprocess.run([s.gpg, "--batch", "--yes", "--pinentry-mode", "loopback", "--passphrase", "",
                        "--faked-system-time", f"{WHEN}!", "--armor", mode, "-o", str(tmp_path / "sig"),
                        str(tmp_path / "data")], env=s.env, check=True, capture_output=True)  # fmt: skip
        data = (tmp_path / "sig").read_bytes()
        block = tmp_path / "block.asc"
        block.write_bytes(data[data.find(b"-----BEGIN PGP SIGNATURE-----") :])
        assert v4_signature_created(block.read_bytes()) == _gpg_created(block, s.home) == WHEN


def test_creation_time_of_what_is_not_a_v4_signature_is_none() -> None:
    assert v4_signature_created(b"-----BEGIN PGP SIGNATURE-----\n\nnot base64!\n-----END PGP SIGNATURE-----\n") is None
    assert v4_signature_created(b"-----BEGIN PGP SIGNATURE-----\n\nAAAA\n=AAAA\n-----END PGP SIGNATURE-----\n") is None
    assert v4_signature_created(b"") is None


def test_one_gnupg_home_per_publish(signer: Signer, monkeypatch: pytest.MonkeyPatch) -> None:
    homes: list[Path] = []
    real = apt_gpg.temp_home

    def counting(copy_from: Path | None = None):  # type: ignore[no-untyped-def]
        homes.append(Path(str(copy_from)))
        return real(copy_from)

    monkeypatch.setattr(signing, "temp_home", counting)
    meta = ReleaseMeta(suite="stable", codename="stable", date="Sat, 10 Jun 2023 09:05:43 UTC")
    with open_signer(signer) as s:
        first = publish_repo({}, "stable", meta, s)
        second = publish_repo({}, "testing", ReleaseMeta(suite="testing"), s)
        key = public_key(s)
        assert key_times(s) == (signer.key_id, s.created)
    assert len(homes) == 1, homes
    # the same bytes as with a home per call (reproducible either way)
    assert publish_repo({}, "stable", meta, signer) == first
    assert publish_repo({}, "testing", ReleaseMeta(suite="testing"), signer) == second
    assert public_key(signer) == key


def test_the_homes_only_key_without_naming_it(signer: Signer) -> None:
    fpr, created = key_times(Signer(signer.gnupg_home, ""))
    assert fpr == signer.key_id and created > 0
    assert public_key(Signer(signer.gnupg_home, "")) == public_key(signer)
