"""Licenses as the content states them, and their SPDX form.

A stated license is kept as written (``License: MIT``, an RPM's ``GPLv2+``); :func:`spdx_expression`
gives the SPDX license expression when the text is one (``packaging.licenses`` knows the SPDX list),
else None — SBOM writers then carry the text as a named or ``LicenseRef-`` license.
"""

from __future__ import annotations

import re

from packaging.licenses import InvalidLicenseExpression, canonicalize_license_expression

NOASSERTION = "NOASSERTION"

# Trove classifiers ("License :: OSI Approved :: MIT License") → SPDX ids, for metadata without a
# License-Expression and with a License field that is empty or a whole license text
CLASSIFIERS = {
    "MIT License": "MIT",
    "MIT No Attribution License (MIT-0)": "MIT-0",
    "Apache Software License": "Apache-2.0",
    "BSD License": "BSD-3-Clause",
    "ISC License (ISCL)": "ISC",
    "Mozilla Public License 2.0 (MPL 2.0)": "MPL-2.0",
    "Python Software Foundation License": "PSF-2.0",
    "GNU General Public License v2 (GPLv2)": "GPL-2.0-only",
    "GNU General Public License v2 or later (GPLv2+)": "GPL-2.0-or-later",
    "GNU General Public License v3 (GPLv3)": "GPL-3.0-only",
    "GNU General Public License v3 or later (GPLv3+)": "GPL-3.0-or-later",
    "GNU Lesser General Public License v2 (LGPLv2)": "LGPL-2.0-only",
    "GNU Lesser General Public License v2 or later (LGPLv2+)": "LGPL-2.0-or-later",
    "GNU Lesser General Public License v3 (LGPLv3)": "LGPL-3.0-only",
    "GNU Lesser General Public License v3 or later (LGPLv3+)": "LGPL-3.0-or-later",
    "GNU Affero General Public License v3": "AGPL-3.0-only",
    "The Unlicense (Unlicense)": "Unlicense",
    "Zope Public License": "ZPL-2.1",
    "Eclipse Public License 2.0 (EPL-2.0)": "EPL-2.0",
    "Boost Software License 1.0 (BSL-1.0)": "BSL-1.0",
}

_MAX_STATED = 200  # longer "license" fields are whole license texts, not names


def clean(text: str | None) -> str | None:
    """A stated license worth reporting: one line, not empty, not UNKNOWN, not a whole license text."""
    if text is None:
        return None
    text = " ".join(text.split())
    if not text or text.upper() in ("UNKNOWN", "NONE", NOASSERTION) or len(text) > _MAX_STATED:
        return None
    return text


def from_classifiers(classifiers: list[str]) -> str | None:
    ids = []
    for c in classifiers:
        parts = [p.strip() for p in c.split("::")]
        if parts[0] != "License" or len(parts) < 2:
            continue
        spdx = CLASSIFIERS.get(parts[-1])
        if spdx and spdx not in ids:
            ids.append(spdx)
    return " OR ".join(ids) if ids else None


_RPM_WORDS = {"and": "AND", "or": "OR", "with": "WITH"}


def spdx_expression(text: str | None) -> str | None:
    """``text`` as a valid SPDX license expression, or None (unknown ids, free text)."""
    if not text or text == NOASSERTION:
        return None
    candidate = re.sub(r"\b(and|or|with)\b", lambda m: _RPM_WORDS[m.group(1)], text)
    try:
        return canonicalize_license_expression(candidate)
    except (InvalidLicenseExpression, ValueError):
        return None


def ref_id(text: str) -> str:
    """A ``LicenseRef-`` id for a license stated in free text (stable for the same text)."""
    slug = re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-")[:60] or "unnamed"
    return f"LicenseRef-{slug}"
