"""The events invoicing consumes and publishes.

The lead's central catalogue (``chargenet.core.events``) already defines both, so this module only
names them for the service instead of keeping a second copy that could drift.
"""

from __future__ import annotations

from chargenet.core.events import InvoiceIssued, SessionRequested, SessionSettled, Topic

CONSUMES = (Topic.SESSIONS.value,)

__all__ = ["CONSUMES", "InvoiceIssued", "SessionRequested", "SessionSettled"]
