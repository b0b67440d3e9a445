"""livecode: one stable QR code, a pool of chat groups, atomic allocation in Redis."""

__version__ = "0.1.0"
