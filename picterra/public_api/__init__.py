"""Picterra public API v2 (`/public/api/v2/`): what the official `picterra` Python client talks to.

A translation layer only: requests are mapped onto the platform's own models and domain functions
(uploads, `start_training`, `start_detection`), and answers are shaped the way the client expects.
"""
