"""Errors of over-the-air updates, under the one tree of ``edgeship.errors``::

    EdgeshipError
     └── UpdateError              an update could not be published, fetched, verified or installed
          ├── PublishError        the publisher refused (version not newer, bad bundle, bad key)
          ├── TrustError          signed metadata or a downloaded file failed verification
          ├── TransferError       the repository could not be reached or a download broke off
          ├── StoreError          the device store cannot be read or written (disk full, locked)
          └── StateError          a transition the state machine does not allow ("expected X, got Y")

TUF's own exceptions are translated at the boundary (``raise TrustError(...) from exc``), so the
user reads what happened (expired metadata: a freeze attack or a publisher that stopped
refreshing) and the TUF exception stays in the chain.
"""

from __future__ import annotations

from ..errors import EdgeshipError, InputError


class UpdateError(EdgeshipError):
    """Base of every OTA error."""


class PublishError(UpdateError, InputError):
    """The publisher refused the request; nothing in the repository changed."""


class TrustError(UpdateError):
    """Metadata or a file failed TUF verification (signature, expiry, rollback, hash, length)."""


class TransferError(UpdateError):
    """The repository could not be reached, or a download ended early (it resumes next time)."""


class StoreError(UpdateError):
    """The device store cannot be read or written."""


class StateError(UpdateError):
    """A state machine transition that is not allowed from the current state."""


__all__ = ["PublishError", "StateError", "StoreError", "TransferError", "TrustError", "UpdateError"]
