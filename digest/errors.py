"""One hierarchy of errors, each with a message an operator can act on."""


class DigestError(Exception):
    """Base for every error the product reports to a person."""

    exit_code = 1


class ConfigError(DigestError):
    """digest.toml, cron.yaml or the environment is missing or wrong."""

    exit_code = 2


class InputError(DigestError):
    """A feed, CSV or other input could not be read at all."""


class NotFoundError(DigestError):
    """An edition, send or subscriber named on the command line does not exist."""


class SendError(DigestError):
    """A send cannot go on (bad credentials, paused after failures, ...)."""
