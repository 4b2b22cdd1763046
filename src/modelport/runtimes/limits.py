"""Per-request limits, checked from what a request declares before any work is done on it.

Every protocol (TF Serving v1 row and columnar, v2 JSON, the v2 binary extension, gRPC) reads
the sizes a request states (rows, a tensor's shape, an image's header) and asks this module
before it builds per-element objects, decodes an image or calls the model. A request over a limit
is a 400 (gRPC INVALID_ARGUMENT) whose message names the limit, the size asked and the setting
that raises it.

Why these three: a request's cost is not its size on the wire. 100 PNGs of 2000x2000 fit in
650 KB and decode to 400 million pixels (seconds of CPU); 30 MiB of one-character strings become
7.8 million Python objects (about 540 MB).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from modelport.errors import invalid

# Triton's and TF Serving's name for the rows a request (and a batch) may have.
DEFAULT_MAX_BATCH_SIZE = 64
# 64 rows of 1,024 strings each; about 7 MB of Python objects at ~100 bytes per element.
DEFAULT_MAX_BYTES_ELEMENTS = 65_536
# One image at the per-image default (model.yaml `max_pixels`, 40 million), or 64 images of
# 768x768 (37.7 million); about half a second of PNG decoding on one core.
DEFAULT_MAX_REQUEST_PIXELS = 40_000_000
# Strings in a JSON request that are not tensor elements: input names, datatypes, `id`,
# parameters. The pre-parse guard allows this many on top of --max_bytes_elements.
JSON_NAME_ALLOWANCE = 4_096


class TooHeavyForTheLoop(Exception):
    """Raised, before any decoding, by a request prepared on the event loop whose images hold
    more than `RequestLimits.loop_pixels`: the caller prepares it again in its thread pool."""


@dataclass(frozen=True)
class RequestLimits:
    """What one request may ask for; a model's model.yaml `max_batch_size` replaces the server's.

    `loop_pixels` is not a limit on the request: set while a request is being prepared on the
    event loop, it bounds the pixels decoded there (TooHeavyForTheLoop beyond it)."""

    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE
    max_bytes_elements: int = DEFAULT_MAX_BYTES_ELEMENTS
    max_request_pixels: int = DEFAULT_MAX_REQUEST_PIXELS
    loop_pixels: int | None = None

    def for_model(self, max_batch_size: int | None) -> RequestLimits:
        if max_batch_size is None or max_batch_size == self.max_batch_size:
            return self
        return replace(self, max_batch_size=max_batch_size)

    def on_the_loop(self, pixels: int) -> RequestLimits:
        return replace(self, loop_pixels=pixels)

    def check_rows(self, name: str, rows: int) -> None:
        """`rows`: the first dimension of an input whose batch dimension is free (or its images)."""
        if rows > self.max_batch_size:
            raise invalid(
                f"input '{name}' has {rows} rows, more than the limit of {self.max_batch_size} rows "
                "per request (max_batch_size: model.yaml, or the server's --max_batch_size)"
            )

    def check_bytes_elements(self, name: str, count: int) -> None:
        """`count`: the BYTES (string) elements an input's shape declares, before any is built."""
        if count > self.max_bytes_elements:
            raise invalid(
                f"input '{name}' holds {count} BYTES elements, more than the limit of "
                f"{self.max_bytes_elements} per request (--max_bytes_elements)"
            )

    def check_json_strings(self, body: bytes) -> None:
        """Refuse, before parsing, a JSON body that must hold too many strings to be a request
        within --max_bytes_elements. Parsing 30 MiB of `"a",` builds 7.8 million Python strings
        (540 MB, 2.5 s) before any shape could be checked.

        Counting is two C-speed scans. Every JSON string has two unescaped quotes; `\\"` marks
        at most one escaped quote (it may also be an escaped backslash before a closing quote,
        so subtracting it can only undercount). So `(quotes - backslash-quotes) / 2` is a lower
        bound on the strings in the body: a body refused here really holds that many.
        """
        allowed = self.max_bytes_elements + JSON_NAME_ALLOWANCE
        if len(body) < 2 * allowed:  # too short to hold that many strings: skip the scans
            return
        strings = (body.count(b'"') - body.count(b'\\"')) // 2
        if strings > allowed:
            raise invalid(
                f"request body holds at least {strings} JSON strings, more than the limit of "
                f"{self.max_bytes_elements} BYTES elements per request (--max_bytes_elements) "
                f"plus {JSON_NAME_ALLOWANCE} for names"
            )

    def check_pixels(self, name: str, images: int, pixels: int) -> None:
        """`pixels`: the request's images' width x height summed, read from their headers."""
        if pixels > self.max_request_pixels:
            raise invalid(
                f"input '{name}': {images} images hold {pixels} pixels, more than the limit of "
                f"{self.max_request_pixels} pixels per request (--max_request_pixels)"
            )
        if self.loop_pixels is not None and pixels > self.loop_pixels:
            raise TooHeavyForTheLoop
