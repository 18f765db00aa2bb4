"""Schemathesis hooks for the contract test (loaded through SCHEMATHESIS_HOOKS).

A component upload is `application/wasm`: raw bytes, sent as they are, the
way schemathesis already sends `application/octet-stream`.
"""

import schemathesis

schemathesis.serializer.alias("application/wasm", "application/octet-stream")
