"""Debian/apt repositories (issue 11): the protocol logic, as pure building blocks.

``release`` verifies and parses (In)Release files and picks index files; ``packages`` parses
Packages indexes; ``closure`` runs apt's own solver in an isolated configuration; ``publish``
writes a signed, reproducible subset repository; ``sources`` renders deb822 ``.sources`` files.
These modules import nothing from gapcache but ``gapcache.errors`` and each other.
"""
