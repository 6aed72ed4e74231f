"""The throughput-only fast path: raw ASGI front, helper processes and their wire codec.

Nothing outside engine/intake imports this package."""
