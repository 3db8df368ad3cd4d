"""The one error of :mod:`flglm_kit.crypto`: a peer, frame or handshake that cannot be trusted.

It lives apart so that frames, channels and the handshake can all raise it without importing
each other in a circle. Introduced in notebook 04 (peer clients and key encryption).
"""

from __future__ import annotations

from flglm_kit.wire import ProtocolError

__all__ = ["ChannelError"]


class ChannelError(ProtocolError):
    """Authentication failed, replay, wrong client, bad handshake, another model or split...

    Example:
        >>> issubclass(ChannelError, ProtocolError)
        True
    """
