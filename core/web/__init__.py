"""The node's HTTP side: the app (:mod:`core.web.app`) and the server thread that runs it."""
