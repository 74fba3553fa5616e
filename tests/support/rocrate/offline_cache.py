#!/usr/bin/env python3
"""Pre-populate rocrate-validator's HTTP cache (requests-cache, SQLite backend)
with local copies of the JSON-LD contexts, so that
`rocrate-validator validate --offline` never needs the network.

Usage:
    offline_cache.py CACHE_NAME URL=FILE [URL=FILE ...]

CACHE_NAME is the requests-cache *name* used by the validator, i.e. the value
passed to `rocrate-validator validate --cache-path CACHE_NAME`; the SQLite file
is CACHE_NAME + ".sqlite". Without --cache-path the validator uses
"$XDG_CACHE_HOME/rocrate-validator/http_cache" (or ~/.cache/... when
XDG_CACHE_HOME is unset).

The responses are stored through a CachedSession configured exactly like
rocrate_validator.utils.http.HttpRequester (backend="sqlite", expire_after=-1,
allowable_methods=("GET",), allowable_codes=(200, 302, 404)); a transport
adapter mounted on the session serves the local file instead of going to the
network, so requests-cache computes the cache key (method + normalised URL +
body + verify flag + serializer) and serialises the entry itself, as it would
for a real fetch.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import requests
from requests.adapters import HTTPAdapter
from requests_cache import CachedSession
from urllib3 import HTTPResponse


class LocalFileAdapter(HTTPAdapter):
    """Answer GET <url> with the bytes of a local file (200, application/ld+json),
    built through requests' own HTTPAdapter.build_response from a urllib3
    HTTPResponse, i.e. the same object shape a real network fetch produces."""

    def __init__(self, mapping: dict[str, Path]):
        super().__init__()
        self.mapping = mapping

    def send(self, request, **kwargs):
        path = self.mapping.get(request.url)
        if path is None:
            raise requests.ConnectionError(f"{request.url} is not provided offline")
        body = path.read_bytes()
        # The RO-Crate 1.1 "File Descriptor JSON-LD format" check requires
        # Content-Type application/ld+json (or application/json). No Vary
        # header: the validator's differing Accept headers must not matter.
        raw = HTTPResponse(
            body=io.BytesIO(body),
            headers={"Content-Type": "application/ld+json", "Content-Length": str(len(body))},
            status=200,
            reason="OK",
            preload_content=False,
            decode_content=False,
            request_method="GET",
            request_url=request.url,
        )
        return self.build_response(request, raw)


def main(argv: list[str]) -> int:
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    cache_name = argv[1]
    mapping: dict[str, Path] = {}
    for arg in argv[2:]:
        url, _, file = arg.partition("=")
        if not file or not Path(file).is_file():
            print(f"bad argument {arg!r}: expected URL=EXISTING_FILE", file=sys.stderr)
            return 2
        mapping[url] = Path(file)

    Path(cache_name).parent.mkdir(parents=True, exist_ok=True)
    session = CachedSession(
        cache_name=cache_name,
        backend="sqlite",
        expire_after=-1,
        allowable_methods=("GET",),
        allowable_codes=(200, 302, 404),
    )
    adapter = LocalFileAdapter(mapping)
    for url in mapping:
        session.mount(url, adapter)
    for url in mapping:
        # force_refresh: overwrite any stale entry for this URL
        r = session.get(url, headers={"Accept": "application/ld+json, application/json"}, force_refresh=True)
        r.raise_for_status()
        r.json()  # must be valid JSON
        assert session.cache.contains(url=url), url
        print(f"cached {url} <- {mapping[url]} ({len(r.content)} bytes)")
    session.close()

    # Check: an offline (only_if_cached) session, as used by --offline, hits.
    check = CachedSession(cache_name=cache_name, backend="sqlite", expire_after=-1,
                          allowable_methods=("GET",), allowable_codes=(200, 302, 404))
    check.settings.only_if_cached = True
    for url in mapping:
        r = check.get(url, headers={"Accept": "application/ld+json, application/json, */*;q=0.1"},
                      allow_redirects=True)
        assert r.status_code == 200 and r.from_cache, (url, r.status_code)
    check.close()
    print(f"cache file: {check.cache.db_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
