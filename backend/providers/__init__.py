"""The email platforms: `base.py` (the interface and neutral types), `registry.py` (register, get,
all) and one folder per platform. Nothing outside this package names a platform."""
