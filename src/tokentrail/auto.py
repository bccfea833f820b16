"""Zero-code capture: `import tokentrail.auto` (or `tokentrail run -- python app.py`).

Runs `tokentrail.init()` from the environment and the config file, with every
installed SDK patched — including SDKs the application imports later. A bad
configuration is reported on stderr and on the `tokentrail` logger, and the
application runs on untracked: zero-code capture must never stop the program
it watches.
"""

from __future__ import annotations

import sys

from . import init
from .errors import ConfigError, StoreError

try:
    tracker = init()
except (ConfigError, StoreError, ValueError, OSError) as _exc:
    from .log import logger

    tracker = None
    logger.error("%s — tokentrail is not recording", _exc)
    print(f"{_exc} — tokentrail is not recording", file=sys.stderr)
