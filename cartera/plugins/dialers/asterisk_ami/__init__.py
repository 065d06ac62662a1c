"""Asterisk dialer over AMI: Originate, call events, MixMonitor recordings and queue-paced capacity."""
