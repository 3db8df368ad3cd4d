"""FL-GLM Kit: federated split learning of large language models, small enough to read.

The pieces, in teaching order: :func:`split_model` (notebook 01), the wire and its keys
(:mod:`flglm_kit.wire`, :mod:`flglm_kit.crypto`), and the two parties
(:class:`SplitClient`, :class:`SplitServer`) that train a split model over encrypted bytes.

The names below are imported lazily (PEP 562), so that ``import flglm_kit.client`` loads the
client's side alone: a client process never imports the server, the transport or the attacks.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: public name -> the module that defines it
_EXPORTS: dict[str, str] = {
    "get_device": "flglm_kit.device",
    "quick_mode": "flglm_kit.device",
    "set_seed": "flglm_kit.device",
    "tiny_config": "flglm_kit.models",
    "tiny_model": "flglm_kit.models",
    "load_pretrained": "flglm_kit.pretrained",
    "split_model": "flglm_kit.split",
    "SplitModel": "flglm_kit.split",
    "Spans": "flglm_kit.split",
    "SplitClient": "flglm_kit.client",
    "ServerError": "flglm_kit.client",
    "SplitServer": "flglm_kit.server",
    "InProcessTransport": "flglm_kit.transport",
    "Federation": "flglm_kit.federation",
    "Dashboard": "flglm_kit.widgets",
    "Identity": "flglm_kit.crypto",
    "SecureChannel": "flglm_kit.crypto",
    "PlaintextChannel": "flglm_kit.crypto",
    "ChannelError": "flglm_kit.crypto",
    "Message": "flglm_kit.wire",
    "encode": "flglm_kit.wire",
    "decode": "flglm_kit.wire",
    "ProtocolError": "flglm_kit.wire",
    "WireError": "flglm_kit.wire",
}

__all__ = list(_EXPORTS)

if TYPE_CHECKING:  # for type checkers and IDEs; at run time __getattr__ loads on first use
    from flglm_kit.client import ServerError, SplitClient
    from flglm_kit.crypto import ChannelError, Identity, PlaintextChannel, SecureChannel
    from flglm_kit.device import get_device, quick_mode, set_seed
    from flglm_kit.federation import Federation
    from flglm_kit.models import tiny_config, tiny_model
    from flglm_kit.pretrained import load_pretrained
    from flglm_kit.server import SplitServer
    from flglm_kit.split import SplitModel, Spans, split_model
    from flglm_kit.transport import InProcessTransport
    from flglm_kit.widgets import Dashboard
    from flglm_kit.wire import Message, ProtocolError, WireError, decode, encode


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'flglm_kit' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # cache: the next lookup is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
