"""Web: the pages and endpoints every sent email depends on (unsubscribe, SendGrid events,
the web copy), and the newsroom's own pages behind a password (editor, sends).

`create_app(settings)` builds the Starlette app; `digest web` serves it with uvicorn.
"""

from digest.web.app import create_app

__all__ = ["create_app"]
