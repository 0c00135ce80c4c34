"""The enrollment QR code, rendered server-side as an SVG data URI (CSP: img-src data:)."""

from __future__ import annotations

import segno


def qr_data_uri(text: str) -> str:
    return segno.make(text, error="m").svg_data_uri(scale=5, border=4, dark="#000", light="#fff")


def grouped(secret: str, size: int = 4) -> str:
    """``JBSWY3DP…`` shown as ``JBSW Y3DP …`` (authenticator apps ignore the spaces)."""
    return " ".join(secret[i : i + size] for i in range(0, len(secret), size))
