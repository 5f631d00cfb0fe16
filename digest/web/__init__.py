"""Web: the pages and endpoints every sent email depends on (unsubscribe, SendGrid events).

`create_app(settings)` builds the Starlette app; `digest web` serves it with uvicorn.
"""

from digest.web.app import create_app

__all__ = ["create_app"]
