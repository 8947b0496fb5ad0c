"""Item images for the converters: download each item's image URL into a cache folder.

A download that fails is retried, then reported; it never stops a conversion. Files already in
the cache are not fetched again.
"""

import http.client
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request

from recbole_bbq.data.io import atomic_path

DOWNLOAD_TIMEOUT = 10
RETRY_PAUSE = 0.5
REPORTED_FAILURES = 3
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def image_cache_path(cache_dir, item, url):
    """``<cache_dir>/<item>.<ext>``, the extension taken from the URL (``.jpg`` by default)."""
    ext = os.path.splitext(urllib.parse.urlparse(url).path)[1].lower()
    if not re.fullmatch(r"\.[a-z0-9]{1,5}", ext):
        ext = ".jpg"
    return os.path.join(cache_dir, _UNSAFE.sub("_", item) + ext)


def _fetch(url, path, retries, timeout):
    """Download ``url`` to ``path``; return None on success or the last failure reason."""
    reason = None
    for attempt in range(max(retries, 0) + 1):
        if attempt:
            time.sleep(RETRY_PAUSE * attempt)
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                data = response.read()
            if not data:
                reason = "empty response"
                continue
            with atomic_path(path) as tmp:
                with open(tmp, "wb") as f:
                    f.write(data)
            return None
        except urllib.error.HTTPError as error:
            reason = str(error)
        except urllib.error.URLError as error:
            reason = str(error.reason)
        except (OSError, ValueError, http.client.HTTPException) as error:
            reason = f"{type(error).__name__}: {error}"
    return reason


def download_images(urls, cache_dir, retries=2, timeout=DOWNLOAD_TIMEOUT):
    """Fetch every item's image into ``cache_dir``, skipping files already there.

    Args:
        urls (dict[str, str]): item -> image URL (items without a URL are left out).
        cache_dir (str): Cache folder.
        retries (int): Extra attempts per URL after a failure.
        timeout (float): Seconds per attempt.

    Returns:
        dict: ``downloaded`` and ``cached`` counts and ``failed``, a list of ``(url, reason)``.
    """
    os.makedirs(cache_dir, exist_ok=True)
    report = {"downloaded": 0, "cached": 0, "failed": []}
    for item, url in urls.items():
        path = image_cache_path(cache_dir, item, url)
        if os.path.isfile(path):
            report["cached"] += 1
            continue
        reason = _fetch(url, path, retries, timeout)
        if reason is None:
            report["downloaded"] += 1
        else:
            report["failed"].append((url, reason))
    return report


def download_notes(report, cache_dir):
    """Human-readable lines describing a :func:`download_images` report."""
    failed = report["failed"]
    lines = [
        f"images -> {cache_dir}: {report['downloaded']} downloaded, {report['cached']} already "
        f"cached, {len(failed)} failed"
    ]
    lines += [f"  failed: {url} ({reason})" for url, reason in failed[:REPORTED_FAILURES]]
    if len(failed) > REPORTED_FAILURES:
        lines.append(f"  ... and {len(failed) - REPORTED_FAILURES} more")
    return lines
