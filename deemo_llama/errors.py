"""User-facing errors: the CLI prints ``error: <message>`` (one line) and exits non-zero."""


class DeemoError(Exception):
    """Base class for errors caused by the user's input or set-up, not by a bug."""

    exit_code = 2


class MediaError(DeemoError):
    """A media file is missing, empty, corrupt, too long, or has no usable stream."""


class AssetError(DeemoError):
    """An embedded model asset is missing or damaged."""

    exit_code = 3
