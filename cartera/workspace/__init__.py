"""The agents' workspace: dispositions, promises to pay, callbacks, and the agents' pages' live side."""
