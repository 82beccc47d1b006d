"""Helm charts: the protocol logic (semver constraints, repository indexes, chart archives, image
discovery) as pure building blocks; the kind glue fetches with the shared downloader and hands
these modules bytes."""
