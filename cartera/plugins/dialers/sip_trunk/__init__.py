"""SIP trunk dialer on pjsua2: calls straight to a carrier or SBC, answered calls REFERred to the agents' queue."""
