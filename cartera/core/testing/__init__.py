"""Conformance kit for plugin authors: subclass the suite of your adapter's kind in your tests.

See docs/plugins.md. The suites live in ``cartera.core.testing.<kind>``; :class:`CapturingContext` stands in for
the node when an adapter is exercised on its own.
"""

from cartera.core.testing.context import CapturingContext

__all__ = ["CapturingContext"]
