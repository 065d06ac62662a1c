"""SMS gateway through Kannel's smsbox: HTTP ``sendsms`` out, delivery reports and MO back to the node's HTTP server."""
