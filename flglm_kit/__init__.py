"""FL-GLM Kit: federated split learning of large language models, small enough to read.

The pieces, in teaching order: :func:`split_model` (notebook 01), the wire and its keys
(:mod:`flglm_kit.wire`, :mod:`flglm_kit.crypto`), and the two parties
(:class:`SplitClient`, :class:`SplitServer`) that train a split model over encrypted bytes.
"""

from flglm_kit.client import ServerError, SplitClient
from flglm_kit.crypto import ChannelError, Identity, PlaintextChannel, SecureChannel
from flglm_kit.device import get_device, quick_mode, set_seed
from flglm_kit.models import tiny_config, tiny_model
from flglm_kit.pretrained import load_pretrained
from flglm_kit.server import SplitServer
from flglm_kit.split import SplitModel, Spans, split_model
from flglm_kit.transport import InProcessTransport
from flglm_kit.wire import Message, ProtocolError, WireError, decode, encode

__version__ = "0.1.0"

__all__ = [
    "get_device",
    "quick_mode",
    "set_seed",
    "tiny_config",
    "tiny_model",
    "load_pretrained",
    "split_model",
    "SplitModel",
    "Spans",
    "SplitClient",
    "SplitServer",
    "ServerError",
    "InProcessTransport",
    "Identity",
    "SecureChannel",
    "PlaintextChannel",
    "ChannelError",
    "Message",
    "encode",
    "decode",
    "ProtocolError",
    "WireError",
]
