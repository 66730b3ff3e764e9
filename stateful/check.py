"""Old import path, kept working: :mod:`kvspec.stateful.runner`.

Bug reports and user code written before kvspec split ``kvspec.stateful`` into packages import
this path (``tests/unit/test_public_api.py`` pins it).
"""

from kvspec.stateful.runner import *  # noqa: F403
from kvspec.stateful.runner import __all__  # noqa: F401
