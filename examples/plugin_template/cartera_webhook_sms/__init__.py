"""SMS gateway for Cartera that POSTs each message as JSON to a vendor's HTTP endpoint."""
