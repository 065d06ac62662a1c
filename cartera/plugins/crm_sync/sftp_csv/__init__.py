"""Creditor assignment files fetched from, and activity exports uploaded to, the creditor's SFTP server."""
