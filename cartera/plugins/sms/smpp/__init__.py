"""SMS gateway over SMPP 3.4 (smpplib): one bound transceiver session, delivery receipts and MO included."""
