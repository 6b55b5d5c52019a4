"""Optimizers with torch's names, arguments and update rules:
``mc.optim.SGD``, ``Adam``, ``AdamW``, ``RMSprop``; schedules in
``mc.optim.lr_scheduler``."""
from .optimizer import Optimizer  # noqa: F401
from .sgd import SGD  # noqa: F401
from .adam import Adam, AdamW  # noqa: F401
from .rmsprop import RMSprop  # noqa: F401
from . import lr_scheduler  # noqa: F401
