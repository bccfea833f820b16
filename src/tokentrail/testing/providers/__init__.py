"""One module per provider the fake speaks besides OpenAI and Anthropic.

Each module adds its routes with `_wire.add_route(matches, handler, error)` when
imported (the package imports them all, so the HTTP server serves every
provider), and defines `client(fake, asynchronous, **kwargs)`: a real client
of that provider's SDK on the fake's in-process transport.
"""

from __future__ import annotations

import importlib
import pkgutil

for _info in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_info.name}")
