"""The local dashboard behind `tokentrail ui`: a starlette app (`server.create_app`) over `tokentrail.report`,
and the page it serves (`static/`, no CDN). Needs the `ui` extra: `pip install 'tokentrail[ui]'`."""
