"""The inventory as an SBOM: SPDX 2.3 JSON and CycloneDX 1.5 JSON.

Every item is a package (SPDX) / component (CycloneDX) with its sha256, size, download location
and purl; the packages inside an item (RPMs of a repo, wheels of a project) are packages the item
CONTAINS (SPDX) / nested components (CycloneDX). A license the content states is its SPDX license
expression when it is one, else carried as text (SPDX ``LicenseRef-`` with the text; CycloneDX a
named license); nothing stated → NOASSERTION (SPDX) / no license (CycloneDX).

The creation time is ``$SOURCE_DATE_EPOCH`` when set (reproducible documents), else now; the
document's namespace and serial number derive from the lock's sha256.
"""

from __future__ import annotations

import os
import time
import uuid
from typing import Any

from .. import __version__
from .collect import Component, Inventory
from .licenses import NOASSERTION, ref_id, spdx_expression

SPDX_PURPOSE = {"image": "CONTAINER", "file": "FILE", "python": "LIBRARY", "chart": "APPLICATION",
                "rpm": "OPERATING_SYSTEM", "apt": "OPERATING_SYSTEM", "git": "SOURCE", "galaxy": "LIBRARY"}  # fmt: skip
CDX_TYPE = {"image": "container", "file": "file", "python": "library", "chart": "application",
            "rpm": "operating-system", "apt": "operating-system", "git": "library", "galaxy": "library"}  # fmt: skip


def created_at() -> str:
    epoch = os.environ.get("SOURCE_DATE_EPOCH", "")
    t = int(epoch) if epoch.isdigit() else int(time.time())
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def _download(source: str | None) -> str:
    return source if source and "://" in source else NOASSERTION


# ---- SPDX 2.3 --------------------------------------------------------------------------------------------


def to_spdx(inv: Inventory) -> dict[str, Any]:
    packages: list[dict[str, Any]] = []
    relationships: list[dict[str, str]] = []
    extracted: dict[str, str] = {}

    def license_field(text: str | None) -> str:
        expr = spdx_expression(text)
        if expr is not None:
            return expr
        if not text:
            return NOASSERTION
        rid = ref_id(text)
        extracted[rid] = text
        return rid

    def package(c: Component, spdx_id: str, purpose: str) -> dict[str, Any]:
        p: dict[str, Any] = {
            "SPDXID": spdx_id, "name": c.name, "downloadLocation": _download(c.source), "filesAnalyzed": False,
            "licenseConcluded": NOASSERTION, "licenseDeclared": license_field(c.license),
            "copyrightText": NOASSERTION, "primaryPackagePurpose": purpose,
            "comment": f"gapcache kind {c.kind}; {c.size} bytes",
        }  # fmt: skip
        if c.version:
            p["versionInfo"] = c.version
        if c.digest:
            p["checksums"] = [{"algorithm": "SHA256", "checksumValue": c.digest.removeprefix("sha256:")}]
        if c.path:
            p["packageFileName"] = c.path
        if c.purl:
            p["externalRefs"] = [{"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl",
                                  "referenceLocator": c.purl}]  # fmt: skip
        return p

    for i, c in enumerate(inv.components, 1):
        sid = f"SPDXRef-Item-{i}"
        packages.append(package(c, sid, SPDX_PURPOSE.get(c.kind, "OTHER")))
        relationships.append({"spdxElementId": "SPDXRef-DOCUMENT", "relationshipType": "DESCRIBES",
                              "relatedSpdxElement": sid})  # fmt: skip
        for j, inner in enumerate(c.packages, 1):
            pid = f"{sid}-{j}"
            packages.append(package(inner, pid, "LIBRARY" if c.kind == "python" else "INSTALL"))
            relationships.append({"spdxElementId": sid, "relationshipType": "CONTAINS", "relatedSpdxElement": pid})
    doc: dict[str, Any] = {
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": f"gapcache inventory {inv.title}",
        "documentNamespace": f"https://gapcache.invalid/spdx/{inv.lock_sha256}",
        "creationInfo": {"created": created_at(), "creators": [f"Tool: gapcache-{__version__}"]},
        "documentDescribes": [f"SPDXRef-Item-{i}" for i in range(1, len(inv.components) + 1)],
        "packages": packages,
        "relationships": relationships,
    }
    if extracted:
        doc["hasExtractedLicensingInfos"] = [
            {"licenseId": rid, "name": text, "extractedText": text} for rid, text in sorted(extracted.items())
        ]
    return doc


# ---- CycloneDX 1.5 ---------------------------------------------------------------------------------------


def _cdx_component(c: Component, ref: str, kind_type: str) -> dict[str, Any]:
    comp: dict[str, Any] = {"type": kind_type, "bom-ref": ref, "name": c.name}
    if c.version:
        comp["version"] = c.version
    if c.digest:
        comp["hashes"] = [{"alg": "SHA-256", "content": c.digest.removeprefix("sha256:")}]
    expr = spdx_expression(c.license)
    if expr is not None:
        comp["licenses"] = [{"expression": expr}]
    elif c.license:
        comp["licenses"] = [{"license": {"name": c.license}}]
    if c.purl:
        comp["purl"] = c.purl
    if c.source and "://" in c.source:
        comp["externalReferences"] = [{"type": "distribution", "url": c.source}]
    props = [{"name": "gapcache:kind", "value": c.kind}, {"name": "gapcache:size", "value": str(c.size)}]
    if c.path:
        props.append({"name": "gapcache:path", "value": c.path})
    comp["properties"] = props
    return comp


def to_cyclonedx(inv: Inventory) -> dict[str, Any]:
    components = []
    for i, c in enumerate(inv.components, 1):
        comp = _cdx_component(c, f"item-{i}", CDX_TYPE.get(c.kind, "file"))
        inner_type = "library" if c.kind in ("python", "rpm", "apt") else "file"
        if c.packages:
            comp["components"] = [_cdx_component(p, f"item-{i}-{j}", inner_type) for j, p in enumerate(c.packages, 1)]
        components.append(comp)
    serial = uuid.uuid5(uuid.NAMESPACE_URL, f"https://gapcache.invalid/cyclonedx/{inv.lock_sha256}")
    return {
        "$schema": "http://cyclonedx.org/schema/bom-1.5.schema.json",
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "serialNumber": f"urn:uuid:{serial}",
        "version": 1,
        "metadata": {
            "timestamp": created_at(),
            "tools": {"components": [{"type": "application", "name": "gapcache", "version": __version__}]},
            "properties": [{"name": "gapcache:lock_sha256", "value": inv.lock_sha256}],
        },
        "components": components,
    }
