"""``import minicnn.nn.functional as F``: every op, torch's names."""
from ..functional import *  # noqa: F401,F403
