"""SMS gateway that appends each message to a JSON Lines outbox file (the demo site's gateway)."""
