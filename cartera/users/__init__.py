"""The node's users: who may sign in to its pages (roles, site and portfolio grants, agents' dialer extensions),
their sessions and the throttling of failed sign-ins."""
