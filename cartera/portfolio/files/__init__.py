"""Creditor CSV files as creditors really send them: layouts, amounts, dates, reading and writing.

Shared by every crm_sync plugin that moves CSV files (``csv`` in local directories, ``sftp_csv`` over SFTP);
the transport only supplies the bytes (an opener) and takes the bytes written.
"""
