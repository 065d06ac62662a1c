"""The node's HTTP side: the app (:mod:`cartera.web.app`) and the server thread that runs it."""
