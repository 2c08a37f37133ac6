"""Request body parsing that never turns a hostile body into a server error."""

from __future__ import annotations

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

TOO_DEEP = "The JSON body is nested too deeply."


class BoundedJSONParser(JSONParser):
    """DRF's JSON parser, but a body nested deeper than Python's recursion limit (``[[[[…``) is a 400.

    The standard library's decoder recurses once per nesting level and raises RecursionError, which DRF
    does not catch; the request-size limit alone does not stop it (100,000 brackets are 100 KB).
    """

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError as exc:
            raise ParseError(TOO_DEEP) from exc
