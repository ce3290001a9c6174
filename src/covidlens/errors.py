"""The one exception type a user sees.

Anything raised as :class:`CovidlensError` carries a sentence meant for the person at the keyboard:
what is wrong and what to do. The CLI prints it without a traceback and exits non-zero; the library
lets it propagate so callers can catch it.
"""


class CovidlensError(Exception):
    """A problem with the user's input, data or environment, described in one sentence."""
