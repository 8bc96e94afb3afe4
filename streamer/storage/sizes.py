"""Byte counts for people: the one formatter of sizes in logs and reports."""

from __future__ import annotations

__all__ = ["format_bytes"]

_UNITS = ("KiB", "MiB", "GiB", "TiB")


def format_bytes(n: float) -> str:
    """``n`` bytes in binary units: "512 B", "1.5 KiB", "256.0 MiB", up to TiB.

    Binary (1 KiB = 1024 bytes) because configured sizes are binary in every spelling
    (``memory = "256MB"`` is 256 MiB), so a size shown here reads back as what was
    configured. Below 1 KiB the count is exact; above, one decimal.
    """
    if abs(n) < 1024:
        return f"{n:.0f} B"
    for unit in _UNITS:
        n /= 1024
        if abs(n) < 1024 or unit == _UNITS[-1]:
            return f"{n:.1f} {unit}"
    raise AssertionError("unreachable")
